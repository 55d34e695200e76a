"""`python -m MODULE ARGS` for the e2e suite, forked from a process that imported the server and the companion once.

The suite starts about fifty live servers and a hundred companion commands. As new interpreters, a server spent
about 1.0 s of CPU importing before it bound its port and a companion command about 0.3 s (measured on 2 cores,
2026-12-06): a fifth of the suite's CPU. multiprocessing's forkserver imports `PRELOAD` once per pytest worker and
forks a child per command, which starts in milliseconds.

The child is what `python -P -m MODULE ARGS` would be: `runpy` runs the module's `__main__` as `-m` does, with the
environment, working directory, `sys.path` (`-P`'s, read from the interpreter) and standard streams the new
interpreter would have had, its `atexit` hooks run at the end, and its exit status is SystemExit's code or minus the
signal that ended it. It is still a process of its own, reached over its port or its streams. What differs is only
that the modules were imported before the fork. The tests of the commands themselves (`vouchsim serve` in
`e2e/test_readme_recipes.py`, the demo, the side-car, the pytest plugin, the package namespace) start new
interpreters, so the entry points stay proven.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import multiprocessing
import os
import runpy
import signal
import subprocess
import sys
from collections.abc import Mapping
from functools import cache
from multiprocessing.process import BaseProcess
from pathlib import Path

import anyio

from vouchsim.companion.server_process import die_with_parent

# Imported once by the fork server, so that its children find them loaded. A module missing here is imported by the
# child itself (the fork server skips what fails to import), only slower. "__main__": the parent's main script
# (`.venv/bin/pytest` in a serial run; an xdist worker has none), which multiprocessing otherwise runs again, as
# `__mp_main__`, in every child.
PRELOAD = ("__main__", "vouchsim.server.cli", "vouchsim.server.app", "uvicorn", "vouchsim.companion.cli", "e2e.forked")

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(list(PRELOAD))
# The environment variables that change what `site` puts on `sys.path`: a child's is read under its own.
_PATH_SETTINGS = ("PYTHONPATH", "PYTHONHOME", "PYTHONNOUSERSITE", "PYTHONUSERBASE", "HOME")


class ForkedProcess:
    """The parent's handle on a forked command: the part of `subprocess.Popen` that the harness uses."""

    def __init__(self, process: BaseProcess, args: list[str]) -> None:
        self._process = process
        self.args = args

    @property
    def pid(self) -> int:
        pid = self._process.pid
        assert pid is not None
        return pid

    @property
    def returncode(self) -> int | None:
        return self._process.exitcode

    @property
    def sentinel(self) -> int:
        """A file descriptor that becomes readable once the process has ended."""
        return self._process.sentinel

    def poll(self) -> int | None:
        return self._process.exitcode

    def wait(self, timeout: float | None = None) -> int:
        self._process.join(timeout)
        if (code := self._process.exitcode) is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0)
        return code

    def send_signal(self, signum: int) -> None:
        if self._process.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def start(
    module: str,
    args: list[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    stdout: Path,
    stderr: Path | None = None,
    safe_path: bool = True,
) -> ForkedProcess:
    """Fork `python [-P] -m MODULE ARGS`, its stdin /dev/null, its stdout written to the file `stdout` and its stderr
    to `stderr` (the same file when None)."""
    path_settings = tuple((name, env[name]) for name in _PATH_SETTINGS if name in env)
    sys_path = ([] if safe_path else [str(cwd)]) + _isolated_sys_path(path_settings)
    process = _context.Process(
        target=_become,
        args=(module, args, dict(env), str(cwd), sys_path, str(stdout), str(stderr) if stderr else None),
        name=f"{module} {args[0] if args else ''}".strip(),
    )
    process.start()
    return ForkedProcess(process, [sys.executable, *(["-P"] if safe_path else []), "-m", module, *args])


async def wait(process: ForkedProcess) -> int:
    """Wait without blocking the event loop (the sentinel is readable once the process has ended)."""
    while process.poll() is None:
        await anyio.wait_readable(process.sentinel)
    return process.wait()


@cache
def _isolated_sys_path(path_settings: tuple[tuple[str, str], ...]) -> list[str]:
    """`sys.path` of `python -P` under these settings: the interpreter's own and the environment's, without the working
    directory or pytest's additions."""
    shown = subprocess.run(
        [sys.executable, "-P", "-c", "import json, sys; print(json.dumps(sys.path))"],
        env=dict(path_settings),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    path: list[str] = json.loads(shown.stdout)
    return path


def _become(
    module: str, args: list[str], env: dict[str, str], cwd: str, sys_path: list[str], stdout: str, stderr: str | None
) -> None:
    """In the forked child: become the new interpreter that `python -m MODULE ARGS` would have started."""
    die_with_parent()  # when the fork server goes (its pytest worker did), so does this child
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(env)
    _redirect(0, os.devnull, os.O_RDONLY)
    _redirect(1, stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    if stderr is None:
        os.dup2(1, 2)
    else:
        _redirect(2, stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    sys.stdout = _text_stream(1, errors="strict", unbuffered=unbuffered)
    sys.stderr = _text_stream(2, errors="backslashreplace", unbuffered=True)  # as CPython's stderr: line by line
    sys.path[:] = sys_path
    sys.argv = [module, *args]
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        atexit._run_exitfuncs()  # an interpreter's exit runs them; multiprocessing's child ends with os._exit


def _redirect(fd: int, path: str, flags: int) -> None:
    opened = os.open(path, flags, 0o644)
    os.dup2(opened, fd)
    os.close(opened)


def _text_stream(fd: int, *, errors: str, unbuffered: bool) -> io.TextIOWrapper:
    raw = io.FileIO(fd, "w", closefd=False)
    if unbuffered:
        return io.TextIOWrapper(raw, encoding="utf-8", errors=errors, line_buffering=True, write_through=True)
    return io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8", errors=errors)
