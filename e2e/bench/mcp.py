"""The `/mcp` figures of `python -m e2e.bench`: `tools/call identity_get` requests per second, per protocol era,
beside the Litestar hello-world, interleaved round by round so all of them see the same machine.

- legacy: 2025-11-25 with its `Mcp-Session-Id` (the session looked up, from the cache, on every request);
- modern: 2026-07-28, stateless (`_meta` envelope, `MCP-Protocol-Version`, `Mcp-Method`, `Mcp-Name`).

The token is a real one (the pairing flow, once); every request carries a unique JSON-RPC id; answers that are not
200 make the run fail. The server's CPU per request comes from `/proc`, so the figure means something even when
the machine is busy with other work.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from e2e.bench.delegations import access_token
from e2e.bench.loader import Job
from e2e.bench.servers import BenchServer, HelloWorld, load
from e2e.harness import HTTP_TIMEOUT, Companion

MODERN = "2026-07-28"
LEGACY = "2025-11-25"
MODERN_META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "vouchsim-bench", "version": "0"},
}
ID = 918273645  # replaced by the loader with a unique id per request


@dataclass
class Round:
    what: str  # hello | legacy | modern
    per_second: float
    requests: int
    server_cpu_seconds: float
    elapsed: float
    loader_cpu_share: float

    @property
    def server_cpu_us(self) -> float:
        """Server CPU per request, in microseconds: what the path costs, whatever else the machine does."""
        return 1e6 * self.server_cpu_seconds / max(self.requests, 1)


@dataclass
class Rounds:
    rounds: list[Round] = field(default_factory=list)

    def median(self, what: str) -> float:
        return statistics.median(r.per_second for r in self.rounds if r.what == what)

    def median_cpu_us(self, what: str) -> float:
        return statistics.median(r.server_cpu_us for r in self.rounds if r.what == what)

    def max_loader_share(self, what: str) -> float:
        return max(r.loader_cpu_share for r in self.rounds if r.what == what)

    def max_server_share(self, what: str) -> float:
        return max(r.server_cpu_seconds / r.elapsed for r in self.rounds if r.what == what)


def bodies(session_id: str, token: str) -> dict[str, tuple[str, dict[str, str]]]:
    call = {"name": "identity_get", "arguments": {}}
    common = {"Authorization": f"Bearer {token}", "Content-Type": "application/json", "Accept": "application/json"}
    legacy = {"jsonrpc": "2.0", "id": ID, "method": "tools/call", "params": call}
    modern = {"jsonrpc": "2.0", "id": ID, "method": "tools/call", "params": {**call, "_meta": MODERN_META}}
    return {
        "legacy": (
            json.dumps(legacy),
            {**common, "MCP-Protocol-Version": LEGACY, "Mcp-Session-Id": session_id},
        ),
        "modern": (
            json.dumps(modern),
            {**common, "MCP-Protocol-Version": MODERN, "Mcp-Method": "tools/call", "Mcp-Name": "identity_get"},
        ),
    }


async def open_session(http: httpx.AsyncClient, url: str, token: str) -> str:
    initialize = {
        "jsonrpc": "2.0",
        "id": 0,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
    }
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json, text/event-stream"}
    response = await http.post(url, json=initialize, headers=headers)
    response.raise_for_status()
    session_id = response.headers["mcp-session-id"]
    done = {"jsonrpc": "2.0", "method": "notifications/initialized"}
    await http.post(url, json=done, headers={**headers, "Mcp-Session-Id": session_id, "MCP-Protocol-Version": LEGACY})
    return session_id


async def check(http: httpx.AsyncClient, url: str, era: str, body: str, headers: dict[str, str]) -> None:
    """One request of this era answers the identity (and the modern one as 2026-07-28 does), or the run stops."""
    response = await http.post(url, content=body.replace(str(ID), "1"), headers=headers)
    result = response.json().get("result", {}) if response.status_code == 200 else {}
    if "subject" not in result.get("structuredContent", {}):
        raise RuntimeError(f"{era}: unexpected answer {response.status_code}: {response.text[:300]}")
    if (era == "modern") != (result.get("resultType") == "complete"):
        raise RuntimeError(f"{era}: answered in the wrong era: {response.text[:300]}")


async def prepare(server: BenchServer, work_dir: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """A token through the real pairing flow, a 2025 session, and one checked request of each era."""
    async with httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT) as device_http:
        companion = await Companion.enrol(
            work_dir / f"companion-mcp-{server.port}", device_http, name="benchmark phone"
        )
        token = await access_token(server.base_url, companion, work_dir)
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        session_id = await open_session(http, server.mcp_url, token)
        loads = bodies(session_id, token)
        for era, (body, headers) in loads.items():
            await check(http, server.mcp_url, era, body, headers)
    return loads


def measure(
    server: BenchServer,
    hello: HelloWorld,
    loads: dict[str, tuple[str, dict[str, str]]],
    *,
    duration: float,
    connections: int,
    rounds: int,
    with_hello: bool = True,
) -> Rounds:
    """`rounds` rounds of hello-world, legacy and modern, in a rotating order."""
    assert server.process is not None and hello.process is not None
    jobs: dict[str, tuple[Job, int]] = {
        era: (
            Job("127.0.0.1", server.port, "/mcp", headers, connections, duration, body=body.replace(str(ID), "__ID__")),
            server.process.pid,
        )
        for era, (body, headers) in loads.items()
    }
    if with_hello:
        hello_body = '{"jsonrpc": "2.0", "id": __ID__, "method": "hello"}'
        hello_job = Job("127.0.0.1", hello.port, "/hello", {"Content-Type": "application/json"}, connections, duration)
        hello_job.body = hello_body
        jobs["hello"] = (hello_job, hello.process.pid)
    order = list(jobs)
    figures = Rounds()
    for index in range(rounds):
        for what in order[index % len(order) :] + order[: index % len(order)]:
            job, pid = jobs[what]
            result, used = load(job, pid)
            server_cpu = used.total
            if result.not_ok or result.errors:
                raise RuntimeError(f"{what}: {result.not_ok} answers not 200 ({result.first_failure}) {result.errors}")
            one = Round(what, result.per_second, result.requests, server_cpu, result.elapsed, result.cpu_share)
            figures.rounds.append(one)
            print(
                f"  round {index + 1} {what:6}: {one.per_second:7.0f} req/s, "
                f"server {100 * server_cpu / one.elapsed:3.0f}% of a core ({one.server_cpu_us:5.0f} µs CPU per "
                f"request), loader {100 * one.loader_cpu_share:3.0f}%"
            )
    return figures
