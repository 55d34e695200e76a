"""A Vouchsim server as a child process: `python -m vouchsim.server serve` on a loopback port (a free one unless
given), with an SQLite file in a state directory unless another database is given, logging to a file there; ready
once `/healthz` answers. The demo, the side-car, the pytest plugin and the e2e suite all start theirs with this, and
none of them imports another: the server is reached over its port only.

Stopping is guarded three ways so no server outlives its parent: `stop()` in the caller's `finally`, an `atexit`
hook, and (`exit_on_termination`, for a command's own process) SIGTERM / SIGHUP turned into `SystemExit` so those
unwind through the `finally` too. On Linux the child also asks the kernel to kill it if the parent dies without any
of those running (`PR_SET_PDEATHSIG`), which covers a SIGKILL.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import Final, Protocol

import httpx

STARTUP_TIMEOUT: Final = 90.0  # migrations included; a shared CI runner under load took 40 s (an exit is seen at once)
STOP_TIMEOUT: Final = 10.0
LOG_FILE: Final = "server.log"
DATABASE_FILE: Final = "vouchsim.db"
_PR_SET_PDEATHSIG: Final = 1


class ServerStartError(RuntimeError):
    """The server exited or did not answer /healthz in time; the message quotes the end of its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def die_with_parent() -> None:
    """Ask the kernel to send this process SIGTERM when the thread that forked it ends (runs in the child, after
    the fork); a no-op where that cannot be asked."""
    with contextlib.suppress(OSError):  # not glibc Linux: the other guards still apply
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without `VOUCHSIM_*` settings (a developer's VOUCHSIM_ISSUER would change every URL;
    the caller chooses port, database and issuer), plus `extra`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("VOUCHSIM_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class ChildProcess(Protocol):
    """What ServerProcess uses of its process: `subprocess.Popen`'s, which the e2e suite's forked servers offer too."""

    @property
    def pid(self) -> int: ...
    @property
    def returncode(self) -> int | None: ...
    def poll(self) -> int | None: ...
    def wait(self, timeout: float | None = None) -> int: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...


class ServerProcess:
    startup_timeout: float = STARTUP_TIMEOUT  # seconds to answer /healthz (a benchmark on a busy machine waits longer)

    def __init__(
        self,
        state_dir: Path,
        *,
        port: int | None = None,
        database_url: str | None = None,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
    ) -> None:
        """`database_url` defaults to an SQLite file in `state_dir`, `log_path` to `server.log` there; `env`
        adds `VOUCHSIM_*` settings of the caller's (any of this process's own are left out)."""
        self.state_dir = state_dir
        self.port = port or free_port()
        self.log_path = log_path or state_dir / LOG_FILE
        self.database_url = database_url or f"sqlite+aiosqlite:///{state_dir / DATABASE_FILE}"
        self.env = dict(env or {})
        self.process: ChildProcess | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def mcp_url(self) -> str:
        return f"{self.base_url}/mcp"

    def start(self, on_progress: Callable[[str], None] | None = None) -> ServerProcess:
        """Start the process and wait until it answers /healthz; ServerStartError (after stopping it) if not.
        `on_progress` gets each line the server logs while it starts (what it is doing during those seconds)."""
        self.launch()
        return self.wait_until_ready(on_progress)

    def launch(self) -> ServerProcess:
        """Start the process without waiting: the caller can do its own start-up meanwhile (the demo imports its
        TUI and agent while the server imports its own), then `wait_until_ready()`."""
        # -P: nothing from the working directory on sys.path, so a project's own `server/` or `vouchsim/` folder
        # cannot stand in for ours.
        command = [sys.executable, "-P", "-m", "vouchsim.server", *self.serve_arguments()]
        atexit.register(self.stop)
        # PR_SET_PDEATHSIG fires when the thread that forked exits: only tie it to the main thread.
        guard = sys.platform == "linux" and threading.current_thread() is threading.main_thread()
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # noqa: S603  # our own interpreter, fixed arguments
                command,
                env=clean_environment(self.env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=die_with_parent if guard else None,
            )
        return self

    def serve_arguments(self) -> list[str]:
        """What follows `python -P -m vouchsim.server`."""
        return [
            "serve",
            *("--host", "127.0.0.1", "--port", str(self.port), "--database-url", self.database_url),
            *("--log-level", "info"),
        ]

    def wait_until_ready(self, on_progress: Callable[[str], None] | None = None) -> ServerProcess:
        """Wait until the launched process answers /healthz; ServerStartError (after stopping it) if it does not."""
        try:
            self._wait_until_healthy(on_progress)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_healthy(self, on_progress: Callable[[str], None] | None) -> None:
        assert self.process is not None
        deadline = time.monotonic() + self.startup_timeout
        shown = 0
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if on_progress is not None:
                    lines = self.log_lines()
                    for line in lines[shown:]:
                        on_progress(line)
                    shown = len(lines)
                if self.process.poll() is not None:
                    raise ServerStartError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    if http.get(f"{self.base_url}/healthz").status_code == 200:
                        if on_progress is not None:
                            for line in self.log_lines()[shown:]:
                                on_progress(line)
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)  # bounded: at most startup_timeout in all
        raise ServerStartError(
            f"the server did not answer /healthz within {self.startup_timeout:g} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        """Terminate, then kill after STOP_TIMEOUT. Idempotent."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(STOP_TIMEOUT)

    def log_lines(self) -> list[str]:
        """The complete lines of the log so far."""
        try:
            text = self.log_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return []
        return text.splitlines()[: text.count("\n")]

    def log_tail(self, lines: int = 20) -> str:
        return "\n".join(self.log_lines()[-lines:])


def exit_on_termination() -> None:
    """Turn SIGTERM and SIGHUP (a closed terminal) into SystemExit, so `finally` blocks stop the server.
    For a command's own process (main thread only); tests that start a ServerProcess leave their signals alone."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
