"""The processes a benchmark measures, pinned to core 0 with `taskset` (when there is one) while the load generator
runs on core 1, so neither steals the other's CPU and every figure is comparable within one run."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from e2e.bench.loader import Job, Result
from e2e.harness import REPO, LiveServer
from vouchsim.companion.server_process import clean_environment, free_port

SERVER_CORE = 0
LOADER_CORE = 1


def pinned(core: int) -> list[str]:
    """`taskset -c CORE` when taskset exists and the machine has that core; nothing otherwise."""
    if shutil.which("taskset") is None or (os.cpu_count() or 1) <= core:
        return []
    return ["taskset", "-c", str(core)]


def pinning() -> str:
    if not pinned(LOADER_CORE):
        return "not pinned (no taskset, or one core): server and loader share the CPU"
    return f"server pinned to core {SERVER_CORE}, load generator to core {LOADER_CORE} (taskset)"


class BenchServer(LiveServer):
    """`python -m vouchsim.server serve`, pinned to the server's core, logging warnings only (no access log line per
    request: the issue's figures were taken without one)."""

    startup_timeout = 180.0  # one core, shared with whatever else the machine runs
    # Throughput, not the rate limits (server.edge): those are off.
    RATE_LIMITS_OFF = {
        "VOUCHSIM_RATE_LIMIT_MCP": "0",
        "VOUCHSIM_RATE_LIMIT_REGISTRATIONS": "0",
        "VOUCHSIM_RATE_LIMIT_PAIRINGS": "0",
        "VOUCHSIM_RATE_LIMIT_PAIRING_CODES": "0",
    }

    def start(self, on_progress: Callable[[str], None] | None = None) -> BenchServer:
        super().start(on_progress)
        return self

    def launch(self) -> BenchServer:
        command = [*pinned(SERVER_CORE), sys.executable, "-P", "-m", "vouchsim.server", "serve"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--database-url", self.database_url]
        command += ["--log-level", "warning"]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(  # our own interpreter, fixed arguments
                command,
                env=clean_environment({**self.RATE_LIMITS_OFF, **self.env}),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        return self


class HelloWorld:
    """The Litestar hello-world (e2e/bench/baseline.py) under the same uvicorn, on the server's core."""

    def __init__(self, log_path: Path) -> None:
        self.port = free_port()
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> HelloWorld:
        command = [*pinned(SERVER_CORE), sys.executable, "-m", "uvicorn", "e2e.bench.baseline:app"]
        command += ["--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning", "--no-access-log"]
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                command, cwd=REPO, env=clean_environment(), stdin=subprocess.DEVNULL, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the hello-world did not start: {self.log_path.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (`/proc/<pid>/stat`), its threads included (ended ones too)."""
    return _stat_seconds(Path(f"/proc/{pid}/stat"))


def loop_cpu_seconds(pid: int) -> float:
    """The CPU time of the process's main thread alone, where uvicorn runs the event loop."""
    return _stat_seconds(Path(f"/proc/{pid}/task/{pid}/stat"))


def _stat_seconds(stat: Path) -> float:
    fields = stat.read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class ServerCpu:
    """The server's CPU seconds during a load: in all, and on threads other than the event loop's (work handed to a
    worker thread, as Authlib's grants once were, and the thread hops with it)."""

    total: float
    off_loop: float

    @classmethod
    def between(cls, before: tuple[float, float], after: tuple[float, float]) -> ServerCpu:
        total = after[0] - before[0]
        return cls(total, max(total - (after[1] - before[1]), 0.0))


def cpu_reading(pid: int) -> tuple[float, float]:
    """The process's CPU and its event loop thread's, read together."""
    return cpu_seconds(pid), loop_cpu_seconds(pid)


def load(job: Job, pid: int) -> tuple[Result, ServerCpu]:
    """Run the load generator (its own process, pinned to the loader's core) against the process `pid`:
    the loader's result and the server's CPU meanwhile."""
    command = [*pinned(LOADER_CORE), sys.executable, "-m", "e2e.bench.loader"]
    before = cpu_reading(pid)
    done = subprocess.run(
        command,
        input=json.dumps(job.__dict__),
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=job.duration + 120,
        check=False,
    )
    server_cpu = ServerCpu.between(before, cpu_reading(pid))
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed: {done.stderr[-2000:]}")
    return Result(**json.loads(done.stdout)), server_cpu
