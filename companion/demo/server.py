"""The demo's server: `python -m vouchsim.server serve` on a free loopback port and an SQLite file in the demo's
state directory, logging to a file there. Started before the TUI, stopped after it, always.

Stopping is guarded three ways so no server outlives the demo: `stop()` in the runner's `finally`, an
`atexit` hook, and (`exit_on_termination`) SIGTERM / SIGHUP turned into `SystemExit` so those unwind
through the `finally` too.
On Linux the child also asks the kernel to kill it if the demo dies without any of those running
(`PR_SET_PDEATHSIG`), which covers a SIGKILL.
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
from collections.abc import Mapping
from pathlib import Path
from types import FrameType
from typing import Final

import httpx

STARTUP_TIMEOUT: Final = 30.0  # migrations included
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


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(OSError):  # not glibc Linux: the other guards still apply
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This environment without `VOUCHSIM_*` settings (a developer's VOUCHSIM_ISSUER would change every URL;
    the caller chooses port, database and issuer), plus `extra`."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("VOUCHSIM_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra or {})
    return env


class DemoServer:
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
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> DemoServer:
        """Start the process and wait until it answers /healthz; ServerStartError (after stopping it) if not."""
        command = [sys.executable, "-m", "vouchsim.server", "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--database-url", self.database_url, "--log-level", "info"]
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
                preexec_fn=_die_with_parent if guard else None,
            )
        try:
            self._wait_until_healthy()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_healthy(self) -> None:
        assert self.process is not None
        deadline = time.monotonic() + STARTUP_TIMEOUT
        with httpx.Client(timeout=2.0) as http:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise ServerStartError(f"the server exited with {self.process.returncode}:\n{self.log_tail()}")
                try:
                    if http.get(f"{self.base_url}/healthz").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)  # bounded: at most STARTUP_TIMEOUT in all
        raise ServerStartError(f"the server did not answer /healthz within {STARTUP_TIMEOUT:g} s:\n{self.log_tail()}")

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

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def exit_on_termination() -> None:
    """Turn SIGTERM and SIGHUP (a closed terminal) into SystemExit, so `finally` blocks stop the server.
    For the demo's own process (main thread only); tests that start a DemoServer leave their signals alone."""
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _exit_on_signal)


def _exit_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)
