"""Benchmark (not a test): `tools/call identity_get` requests per second on `/mcp`, for each protocol era, measured in
the same run against the same server.

    uv run python -m e2e.bench_mcp [--duration 10] [--connections 16] [--rounds 3] [--loader auto|wrk|python]

It starts a live server (`python -m vouchsim.server serve`, one process, SQLite in a temp dir by default), gets an
access token once through the real pairing flow, opens a 2025-11-25 session (`initialize`), checks that one
request of each era answers the identity, then loads the server with `tools/call identity_get`, alternating
between the eras for `--rounds` rounds so both see the same machine:

- legacy: 2025-11-25 with its `Mcp-Session-Id` (the session looked up, from the cache, on every request);
- modern: 2026-07-28, stateless (`_meta` envelope, `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`).

The load comes from wrk (Debian's package) when it is installed, else from a Python load generator; either way the
loader's own CPU share is printed beside the server's, so a loader that is the bottleneck shows. Responses that are
not 200 are counted and make the run fail. Everything talks to 127.0.0.1 only, every run is bounded, and the server
is stopped at the end whatever happens. `measure()` is the reusable part (a later `python -m e2e.bench` calls it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from e2e.bench_delegations import access_token, machine, tree_cpu_seconds
from e2e.harness import HTTP_TIMEOUT, Companion, Databases, LiveServer

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
ERAS = ("modern", "legacy")
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "vouchsim-bench", "version": "0"},
}


@dataclass(frozen=True)
class Load:
    """One era's request: what wrk (or the Python loader) sends again and again."""

    era: str
    body: bytes
    headers: dict[str, str]


@dataclass
class Round:
    era: str
    requests_per_second: float
    requests: int
    non_200: int
    server_cpu_seconds: float
    elapsed: float
    loader_cpu_share: float  # of one core

    @property
    def per_server_cpu_second(self) -> float:
        """Requests per second of server CPU: what the path costs, whatever else the machine is doing."""
        return self.requests / max(self.server_cpu_seconds, 1e-9)


@dataclass
class Figures:
    rounds: list[Round] = field(default_factory=list)

    def median(self, era: str) -> float:
        return statistics.median(r.requests_per_second for r in self.rounds if r.era == era)

    def median_per_cpu_second(self, era: str) -> float:
        return statistics.median(r.per_server_cpu_second for r in self.rounds if r.era == era)


def loads(token: str, session_id: str) -> dict[str, Load]:
    call = {"name": "identity_get", "arguments": {}}
    common = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"}
    legacy = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": call}
    modern = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {**call, "_meta": MODERN_META}}
    return {
        "legacy": Load(
            "legacy",
            json.dumps(legacy).encode(),
            {**common, "MCP-Protocol-Version": LEGACY, "Mcp-Session-Id": session_id},
        ),
        "modern": Load(
            "modern",
            json.dumps(modern).encode(),
            {**common, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "identity_get"},
        ),
    }


async def open_session(http: httpx.AsyncClient, url: str, token: str) -> str:
    initialize = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {
            "protocolVersion": LEGACY,
            "capabilities": {},
            "clientInfo": {"name": "vouchsim-bench", "version": "0"},
        },
    }
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    response = await http.post(url, json=initialize, headers=headers)
    response.raise_for_status()
    session_id = response.headers["mcp-session-id"]
    done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    await http.post(url, json=done, headers={**headers, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": LEGACY})
    return session_id


async def check(http: httpx.AsyncClient, url: str, load: Load) -> None:
    """One request of this era answers the identity (and the modern one as 2026-07-28 does), or the run stops."""
    response = await http.post(url, content=load.body, headers=load.headers)
    result = response.json().get("result", {}) if response.status_code == 200 else {}
    if "subject" not in result.get("structuredContent", {}):
        raise RuntimeError(f"{load.era}: unexpected answer {response.status_code}: {response.text[:300]}")
    if (load.era == "modern") != (result.get("resultType") == "complete"):
        raise RuntimeError(f"{load.era}: answered in the wrong era: {response.text[:300]}")


# --- loaders ----------------------------------------------------------------------------------------------------


def _lua(load: Load) -> str:
    lines = ['wrk.method = "POST"', f"wrk.body = [==[{load.body.decode()}]==]"]
    lines += [f'wrk.headers["{name}"] = [==[{value}]==]' for name, value in load.headers.items()]
    return "\n".join(lines) + "\n"


def run_wrk(url: str, load: Load, duration: float, connections: int, work_dir: Path) -> tuple[int, float, int, float]:
    """wrk with one thread (the other core is the server's): requests, elapsed seconds, non-2xx, its CPU seconds."""
    script = work_dir / f"{load.era}.lua"
    script.write_text(_lua(load))
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    command = ["wrk", "-t1", f"-c{connections}", f"-d{duration:g}s", "--latency", "-s", str(script), url]
    done = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    found = re.search(r"(\d+) requests in ([\d.]+)(m?s)", done.stdout)
    if found is None:
        raise RuntimeError(f"cannot read wrk's output:\n{done.stdout}")
    elapsed = float(found.group(2)) / (1000 if found.group(3) == "ms" else 1)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", done.stdout)
    errors = re.search(r"Socket errors: (.*)", done.stdout)
    if errors:
        print(f"    wrk socket errors: {errors.group(1)}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return int(found.group(1)), elapsed, int(bad.group(1)) if bad else 0, cpu


async def _python_load(url: str, load: Load, duration: float, connections: int) -> tuple[int, float, int, float]:
    """A Python load generator: `connections` keep-alive connections, each sending back to back."""
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    counts = {"ok": 0, "bad": 0}
    cpu_before, started = time.process_time(), time.perf_counter()
    deadline = started + duration
    async with httpx.AsyncClient(limits=limits, timeout=HTTP_TIMEOUT) as http:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                response = await http.post(url, content=load.body, headers=load.headers)
                counts["ok" if response.status_code == 200 else "bad"] += 1

        await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    return counts["ok"] + counts["bad"], elapsed, counts["bad"], time.process_time() - cpu_before


def run_python(
    url: str, load: Load, duration: float, connections: int, _work_dir: Path
) -> tuple[int, float, int, float]:
    return asyncio.run(_python_load(url, load, duration, connections))


# --- the measurement --------------------------------------------------------------------------------------------


def measure(
    server: LiveServer,
    token: str,
    session_id: str,
    *,
    duration: float,
    connections: int,
    rounds: int,
    loader: str,
    work_dir: Path,
) -> Figures:
    """Alternate the eras `rounds` times against `server`; each round's rate, errors and CPU shares."""
    run = run_wrk if loader == "wrk" else run_python
    assert server.process is not None
    figures = Figures()
    by_era = loads(token, session_id)
    for index in range(rounds):
        for era in ERAS if index % 2 == 0 else reversed(ERAS):
            cpu_before = tree_cpu_seconds(server.process.pid)
            requests, elapsed, non_200, loader_cpu = run(server.mcp_url, by_era[era], duration, connections, work_dir)
            server_cpu = tree_cpu_seconds(server.process.pid) - cpu_before
            result = Round(era, requests / elapsed, requests, non_200, server_cpu, elapsed, loader_cpu / elapsed)
            figures.rounds.append(result)
            print(
                f"  round {index + 1} {era:6}: {result.requests_per_second:7.0f} req/s ({requests} requests, "
                f"{non_200} not 200); server {100 * server_cpu / elapsed:.0f}% of a core, "
                f"{result.per_server_cpu_second:.0f} req per CPU-second; loader {100 * result.loader_cpu_share:.0f}% "
                "of a core"
            )
            if non_200:
                raise RuntimeError(f"{era}: {non_200} answers were not 200: the figures would be meaningless")
    return figures


async def prepare(server: LiveServer, work_dir: Path) -> tuple[str, str]:
    """A token through the real pairing flow, a 2025 session, and one checked request of each era."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT) as device_http:
        companion = await Companion.enrol(work_dir / "companion", device_http, name="benchmark phone")
        token = await access_token(server, companion, work_dir)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        session_id = await open_session(http, server.mcp_url, token)
        for load in loads(token, session_id).values():
            await check(http, server.mcp_url, load)
    return token, session_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.bench_mcp", description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per era per round")
    parser.add_argument("--connections", type=int, default=16, help="concurrent keep-alive connections")
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each measures both eras, in turn")
    parser.add_argument("--loader", choices=["auto", "wrk", "python"], default="auto", help="wrk if installed")
    parser.add_argument("--database-url", help="the server's database (default: SQLite in a temp dir)")
    args = parser.parse_args(argv)
    loader = args.loader if args.loader != "auto" else ("wrk" if shutil.which("wrk") else "python")
    if loader == "wrk" and shutil.which("wrk") is None:
        raise SystemExit("bench_mcp: wrk is not installed (apt-get install wrk), or use --loader python")

    print(f"machine: {machine()}")
    print(
        f"loader: {loader}, {args.connections} connections, {args.duration:g} s per era per round, {args.rounds} rounds"
    )
    with tempfile.TemporaryDirectory(prefix="vouchsim-bench-mcp-") as tmp:
        work_dir = Path(tmp)
        databases = Databases("sqlite", work_dir, "")
        server: LiveServer | None = None
        try:
            database_url = args.database_url or databases.new()
            # No access log line per request, and no per-token rate limit: this measures throughput, not the limit.
            env = {"VOUCHSIM_LOG_LEVEL": "warning", "VOUCHSIM_RATE_LIMIT_MCP": "0"}
            server = LiveServer(database_url, work_dir / "server.log", env).start()
            print(f"server: {server.base_url} (pid {server.process.pid if server.process else '?'}), {database_url}")
            token, session_id = asyncio.run(prepare(server, work_dir))
            figures = measure(
                server,
                token,
                session_id,
                duration=args.duration,
                connections=args.connections,
                rounds=args.rounds,
                loader=loader,
                work_dir=work_dir,
            )
            modern, legacy = figures.median("modern"), figures.median("legacy")
            modern_cpu, legacy_cpu = figures.median_per_cpu_second("modern"), figures.median_per_cpu_second("legacy")
            print(
                f"\ntools/call identity_get, median of {args.rounds} rounds ({loader}, {args.connections} connections):"
            )
            print(f"  2026-07-28 (stateless):      {modern:7.0f} req/s, {modern_cpu:5.0f} req per server CPU-second")
            print(f"  2025-11-25 (Mcp-Session-Id): {legacy:7.0f} req/s, {legacy_cpu:5.0f} req per server CPU-second")
            print(f"  modern / legacy:             {modern / legacy:7.2f}        {modern_cpu / legacy_cpu:5.2f}")
            return 0
        finally:
            if server is not None:
                server.stop()
                if (found := server.tracebacks()) is not None:
                    print(f"\nthe server logged a traceback or a 5xx answer:\n{found[:3000]}", file=sys.stderr)
            databases.drop_all()


if __name__ == "__main__":
    sys.exit(main())
