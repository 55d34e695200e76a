"""The delegation figures of `python -m e2e.bench`: how fast a device's decision reaches the MCP call waiting for
it, what a decision costs the server, and how many waiting calls one server process holds.

On a live server with a paired companion and an MCP session (plain httpx JSON-RPC):

1. latency: one at a time, a `tools/call delegation_request` waiting for approval (JSON reply); the device sees it
   pending on its event stream and approves it; latency = from the moment the decision request is sent to the
   moment the waiting call's reply has arrived.
2. concurrency: many waiting calls at once; once the device has seen them pending, it approves them all (32
   decisions in flight); for each call, the time from its own decision to its reply; the server's CPU per
   decision (its `/proc` CPU time before and after the approvals) and its peak RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import resource
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from e2e.harness import (
    HTTP_TIMEOUT,
    Browser,
    Companion,
    LiveServer,
    Pkce,
    authorization_url,
    exchange_code,
    mcp_initialize,
    query_of,
    register_client,
)
from vouchsim.companion.core.client import DeviceApiClient
from vouchsim.companion.core.errors import CompanionError
from vouchsim.companion.core.keystore import Keystore
from vouchsim.companion.core.schemas import Delegation

AUDIENCE = "aud_test_payments"
SCOPES = ["payments.identity", "payments.prepare"]
SEEN_TIMEOUT = 30.0  # seconds for one delegation to show up on the device (latency phase)
REPLY_TIMEOUT = 30.0  # seconds for a waiting call to answer after its decision (latency phase)
WAIT_SECONDS = 50.0  # the calls' wait budget (the tool's maximum)
# The burst's decisions go through this many clients of the same device, a few connections each: httpx checks every
# pooled connection for expiry before each request, so one client with 32 connections spent a fifth of the loader's
# CPU on that scan alone, and the loader (at 94 % of its core) measured its own queue.
DECIDERS = 8
# httpcore's pool looks at every connection it holds for each request it places, so a single client holding a
# thousand waiting calls spends the benchmark's CPU (not the server's) quadratically: the waiting calls are
# spread over clients of this many connections each.
CALLS_PER_CLIENT = 25


# --- small helpers -------------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary_ms(values: list[float]) -> str:
    ms = [value * 1000 for value in values]
    return (
        f"p50 {percentile(ms, 50):7.1f}  p90 {percentile(ms, 90):7.1f}  p99 {percentile(ms, 99):7.1f}  "
        f"max {max(ms, default=float('nan')):7.1f} ms  (n={len(ms)})"
    )


def status_kib(pid: int, field_name: str) -> int:
    """A `/proc/<pid>/status` memory line (VmRSS, VmHWM) in KiB; -1 when it cannot be read."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return -1


def open_sockets(pid: int) -> int:
    """How many sockets the process holds (its listening socket included); -1 when unreadable."""
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return -1
    count = 0
    for fd in fds:
        with contextlib.suppress(OSError):  # closed meanwhile
            count += os.readlink(fd).startswith("socket:")
    return count


def established_to(port: int) -> int:
    """ESTABLISHED TCP connections whose local end is 127.0.0.1:`port` (the server's side of each)."""
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            parts = line.split()
            if len(parts) > 3 and parts[3] == "01" and int(parts[1].rsplit(":", 1)[1], 16) == port:
                count += 1
    return count


def cpu_seconds(pid: int) -> float:
    """User + system CPU time the process has used so far (`/proc/<pid>/stat`); NaN when unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (with --workers, the server's worker processes)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return [pid]
    return [pid, *(descendant for child in children for descendant in process_tree(int(child)))]


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(member) for member in process_tree(pid))


def server_figures(server: LiveServer) -> str:
    """Memory, sockets and CPU of the server's processes, summed (peak RSS: the sum of each one's peak)."""
    assert server.process is not None
    tree = process_tree(server.process.pid)
    rss = sum(status_kib(member, "VmRSS") for member in tree) / 1024
    peak = sum(status_kib(member, "VmHWM") for member in tree) / 1024
    sockets = sum(open_sockets(member) for member in tree)
    return (
        f"server RSS {rss:.1f} MiB (peak so far {peak:.1f} MiB), sockets {sockets}, "
        f"established connections {established_to(server.port)}, CPU used {tree_cpu_seconds(tree[0]):.1f} s"
    )


def peak_rss_mib(server: LiveServer) -> float:
    assert server.process is not None
    return sum(status_kib(member, "VmHWM") for member in process_tree(server.process.pid)) / 1024


@dataclass
class CpuMeter:
    """The share of one core a process (and its workers) used between `start` and `stop`."""

    pid: int
    _cpu: float = 0.0
    _wall: float = 0.0

    _own: float = 0.0

    def start(self) -> None:
        self._cpu, self._wall, self._own = tree_cpu_seconds(self.pid), time.perf_counter(), time.process_time()

    def cpu(self) -> float:
        """Server CPU seconds since `start`."""
        return tree_cpu_seconds(self.pid) - self._cpu

    def own_share(self) -> float:
        """The share of one core this (the benchmark's) process used since `start`."""
        return (time.process_time() - self._own) / max(time.perf_counter() - self._wall, 1e-9)

    def share(self) -> str:
        cpu, wall = tree_cpu_seconds(self.pid) - self._cpu, time.perf_counter() - self._wall
        own = time.process_time() - self._own
        return (
            f"{cpu:.1f} s CPU in {wall:.1f} s ({100 * cpu / max(wall, 1e-9):.0f}% of one core; "
            f"this benchmark process {100 * own / max(wall, 1e-9):.0f}%)"
        )


class DatabaseObserver:
    """Counts this phase's delegations by status straight in the database (out of band: the device API lists
    only the newest 100, so it cannot tell when 1,000 are pending). Read-only; SQLite file or PostgreSQL."""

    QUERY = "SELECT status, count(*) FROM delegations WHERE purpose LIKE {} GROUP BY status"

    def __init__(self, database_url: str) -> None:
        self.url = database_url

    async def count(self, prefix: str) -> dict[str, int]:
        if self.url.startswith("sqlite"):
            return await asyncio.to_thread(self._sqlite, prefix)
        import asyncpg

        dsn = self.url.replace("postgresql+asyncpg://", "postgresql://")
        connection = await asyncpg.connect(dsn)
        try:
            rows = await connection.fetch(self.QUERY.format("$1"), prefix + "%")
        finally:
            await connection.close()
        return {row[0]: row[1] for row in rows}

    def _sqlite(self, prefix: str) -> dict[str, int]:
        import sqlite3

        path = self.url.split(":///", 1)[1]
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return dict(connection.execute(self.QUERY.format("?"), (prefix + "%",)).fetchall())
        finally:
            connection.close()


def raise_fd_limit(wanted: int) -> str:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    return f"file descriptors: soft limit {soft} (hard {hard}); the server inherits it"


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"{platform.system()} {platform.release()}, {os.cpu_count()} CPU ({model}), "
        f"Python {platform.python_version()}, load average {load}"
    )


# --- the agent: MCP over plain httpx --------------------------------------------------------------------------


@dataclass
class McpSession:
    url: str
    access_token: str
    session_id: str = ""
    protocol_version: str = "2025-06-18"
    next_id: int = 1

    def headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.access_token}",
            "Accept": "application/json",
            "Content-Type": "application/json",
            "MCP-Protocol-Version": self.protocol_version,
            "Mcp-Session-Id": self.session_id,
        }

    async def open(self, http: httpx.AsyncClient) -> None:
        response = await mcp_initialize(http, self.url, self.access_token)
        if response.status_code != 200:
            raise RuntimeError(f"initialize answered {response.status_code}: {response.text}")
        self.session_id = response.headers["mcp-session-id"]
        self.protocol_version = response.json()["result"]["protocolVersion"]
        initialized = {"jsonrpc": "2.0", "method": "notifications/initialized"}
        response = await http.post(self.url, json=initialized, headers=self.headers())
        if response.status_code != 202:
            raise RuntimeError(f"notifications/initialized answered {response.status_code}: {response.text}")

    async def request_delegation(self, http: httpx.AsyncClient, purpose: str) -> tuple[float, dict[str, Any]]:
        """A waiting `delegation_request`; (the moment its reply had arrived, the tool's structured result)."""
        self.next_id += 1
        message = {
            "jsonrpc": "2.0",
            "id": self.next_id,
            "method": "tools/call",
            "params": {
                "name": "delegation_request",
                "arguments": {
                    "audienceId": AUDIENCE,
                    "purpose": purpose,
                    "scopes": SCOPES,
                    "waitForApproval": True,
                    "timeoutSeconds": WAIT_SECONDS,
                },
            },
        }
        response = await http.post(self.url, json=message, headers=self.headers())
        arrived = time.perf_counter()
        if response.status_code != 200:
            raise RuntimeError(f"tools/call answered {response.status_code}: {response.text[:300]}")
        body = response.json()
        if "error" in body:
            raise RuntimeError(f"tools/call failed: {body['error']}")
        result = body["result"]
        if result.get("isError"):
            raise RuntimeError(f"delegation_request is a tool error: {result['content']}")
        structured: dict[str, Any] = result["structuredContent"]
        return arrived, structured


# --- the device: what it sees pending ------------------------------------------------------------------------


@dataclass
class DeviceWatcher:
    """The device's event stream, kept open (reconnected if it drops): every pending delegation it announces,
    by purpose (each benchmark call asks with a purpose of its own)."""

    api: DeviceApiClient
    pending: dict[str, Delegation] = field(default_factory=dict)
    reconnects: int = 0
    _condition: asyncio.Condition = field(default_factory=asyncio.Condition)
    _task: asyncio.Task[None] | None = None
    _opened: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self._opened.wait(), SEEN_TIMEOUT)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _run(self) -> None:
        while True:
            try:
                async with contextlib.aclosing(self.api.stream_delegations(on_open=self._opened.set)) as events:
                    async for delegation in events:
                        await self.note([delegation])
            except CompanionError as error:
                print(f"  (device stream dropped: {error}; reconnecting)", file=sys.stderr)
            self.reconnects += 1
            await asyncio.sleep(0.2)

    async def note(self, delegations: Iterable[Delegation]) -> None:
        async with self._condition:
            for delegation in delegations:
                if delegation.status == "pending":
                    self.pending.setdefault(delegation.purpose, delegation)
            self._condition.notify_all()

    async def poll(self) -> None:
        """Also read the pending list (the newest 100 only: the API's cap)."""
        await self.note(await self.api.delegations("pending"))

    async def wait_until(self, predicate: Callable[[], bool], timeout: float) -> bool:  # noqa: ASYNC109
        try:
            async with self._condition:
                await asyncio.wait_for(self._condition.wait_for(predicate), timeout)
        except TimeoutError:
            return False
        return True

    async def wait_for(self, purpose: str, timeout: float) -> Delegation:  # noqa: ASYNC109
        if not await self.wait_until(lambda: purpose in self.pending, timeout):
            raise TimeoutError(f"the device did not see {purpose!r} pending within {timeout} s")
        return self.pending[purpose]

    def count(self, prefix: str) -> int:
        return sum(1 for purpose in self.pending if purpose.startswith(prefix))


# --- setup: a server, a device, a token -----------------------------------------------------------------------


async def access_token(base_url: str, companion: Companion, work_dir: Path) -> str:
    """Through the real flow once: registration, PKCE, the pairing page and the companion's CLI, the exchange."""
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as http:
        client = await register_client(http, base_url, client_name="Vouchsim benchmark agent")
        pkce = Pkce.new()
        url = authorization_url(base_url, client, pkce)
        async with Browser(base_url, work_dir) as browser:
            location = await browser.authorize(url, companion)
        redirect = query_of(location)
        if redirect.get("state") != query_of(url)["state"] or "code" not in redirect:
            raise RuntimeError(f"unexpected redirect: {location}")
        response = await exchange_code(http, base_url, client, redirect["code"], pkce.verifier)
        if response.status_code != 200:
            raise RuntimeError(f"token exchange answered {response.status_code}: {response.text}")
        token: str = response.json()["access_token"]
        return token


@contextlib.asynccontextmanager
async def agent_client(connections: int) -> AsyncIterator[httpx.AsyncClient]:
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    timeout = httpx.Timeout(connect=30.0, read=WAIT_SECONDS + 30.0, write=30.0, pool=WAIT_SECONDS + 30.0)
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as http:
        yield http


# --- phase 1: latency -----------------------------------------------------------------------------------------


async def latency_phase(
    server: LiveServer, mcp: McpSession, watcher: DeviceWatcher, count: int, tag: str
) -> dict[str, float]:
    print(f"\n[1] latency: {count} delegations, one at a time (decision → waiting call's reply)")
    latencies: list[float] = []
    round_trips: list[float] = []
    failures = 0
    assert server.process is not None
    meter = CpuMeter(server.process.pid)
    meter.start()
    async with agent_client(4) as http:
        for i in range(count):
            purpose = f"bench {tag} latency #{i}: identify the user for a test payment"
            call = asyncio.create_task(mcp.request_delegation(http, purpose))
            try:
                delegation = await watcher.wait_for(purpose, SEEN_TIMEOUT)
                sent = time.perf_counter()
                await watcher.api.decide(delegation, "approve")
                decided = time.perf_counter()
                arrived, result = await asyncio.wait_for(call, REPLY_TIMEOUT)
            except (TimeoutError, RuntimeError, CompanionError, httpx.HTTPError) as error:
                failures += 1
                print(f"  #{i} failed: {error!r}", file=sys.stderr)
                call.cancel()
                with contextlib.suppress(BaseException):
                    await call
                continue
            finally:
                watcher.pending.pop(purpose, None)
            if result.get("status") != "approved" or not result.get("token"):
                failures += 1
                print(f"  #{i}: the call answered {result.get('status')!r}", file=sys.stderr)
                continue
            latencies.append(arrived - sent)
            round_trips.append(decided - sent)
            if (i + 1) % 50 == 0:
                print(f"  … {i + 1} done")
    print(f"  decision sent → waiting call's reply: {summary_ms(latencies)}")
    print(f"  decision POST round trip alone:     {summary_ms(round_trips)}")
    print(f"  failures: {failures}; server {meter.share()}")
    return {
        "count": count,
        "failures": failures,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "decision_rtt_p50_ms": percentile(round_trips, 50) * 1000,
        # request, pending event, decision and reply together
        "server_cpu_ms_per_delegation": 1000 * meter.cpu() / max(count - failures, 1),
    }


# --- phase 2: concurrency -------------------------------------------------------------------------------------


async def concurrency_phase(
    server: LiveServer,
    observer: DatabaseObserver,
    mcp: McpSession,
    watcher: DeviceWatcher,
    deciders: list[DeviceApiClient],
    count: int,
    in_flight: int,
    tag: str,
) -> dict[str, float]:
    print(f"\n[2] concurrency: {count} waiting delegation_request calls at once, then all approved")
    prefix = f"bench {tag} burst #"
    purposes = [f"{prefix}{i}: identify the user for a test payment" for i in range(count)]
    replies: dict[str, tuple[float, dict[str, Any]]] = {}
    errors: dict[str, str] = {}
    decided_at: dict[str, float] = {}
    decision_rtt: list[float] = []
    decision_failures: list[str] = []

    async def call(http: httpx.AsyncClient, purpose: str) -> None:
        try:
            replies[purpose] = await mcp.request_delegation(http, purpose)
        except (RuntimeError, httpx.HTTPError, ValueError) as error:
            errors[purpose] = f"{error.__class__.__name__}: {error}"

    gate = asyncio.Semaphore(in_flight)
    turns = iter(range(count * 2))

    async def approve(delegation: Delegation) -> None:
        async with gate:
            sent = time.perf_counter()
            try:
                await deciders[next(turns) % len(deciders)].decide(delegation, "approve")
            except CompanionError as error:
                decision_failures.append(f"{delegation.purpose[:24]}…: {error}")
                return
            decided_at[delegation.purpose] = sent
            decision_rtt.append(time.perf_counter() - sent)

    assert server.process is not None
    meter = CpuMeter(server.process.pid)
    print(f"  before: {server_figures(server)}")
    async with contextlib.AsyncExitStack() as clients:
        https = [
            await clients.enter_async_context(agent_client(CALLS_PER_CLIENT))
            for _ in range(-(-count // CALLS_PER_CLIENT))
        ]
        started = time.perf_counter()
        meter.start()
        calls = [asyncio.create_task(call(https[i % len(https)], purpose)) for i, purpose in enumerate(purposes)]
        try:
            pending = 0
            while time.perf_counter() - started < WAIT_SECONDS / 2 and not all(task.done() for task in calls):
                pending = (await observer.count(prefix)).get("pending", 0)
                if pending >= count:
                    break
                await asyncio.sleep(0.1)
            created_after = time.perf_counter() - started
            print(
                f"  {pending}/{count} pending in the database after {created_after:.2f} s "
                f"({pending / max(created_after, 1e-9):.0f} requests/s; server {meter.share()})"
            )
            print(f"  the device's stream had announced {watcher.count(prefix)}/{count} of them")
            print(f"  peak (all waiting): {server_figures(server)}; calls already answered: {len(replies)}")
            meter.start()

            # Approve everything seen, then whatever the pending list (newest 100) still shows, until every
            # call of this phase is decided or answered.
            approving = time.perf_counter()
            deadline = started + WAIT_SECONDS - 2
            done: set[str] = set()
            while time.perf_counter() < deadline:
                batch = [
                    delegation
                    for purpose, delegation in list(watcher.pending.items())
                    if purpose.startswith(prefix) and purpose not in done
                ]
                done.update(delegation.purpose for delegation in batch)
                await asyncio.gather(*(approve(delegation) for delegation in batch))
                if len(done) >= count or all(task.done() for task in calls):
                    break
                if not batch:
                    await watcher.poll()
                    if not any(p.startswith(prefix) and p not in done for p in watcher.pending):
                        await asyncio.sleep(0.05)
            approved_in = time.perf_counter() - approving
            approval_cpu, loader_share = meter.cpu(), meter.own_share()
            print(
                f"  {len(decided_at)} decisions sent in {approved_in:.2f} s "
                f"({len(decided_at) / max(approved_in, 1e-9):.0f}/s, {in_flight} in flight); "
                f"decision POST round trip: {summary_ms(decision_rtt)}; server {meter.share()}"
            )
            if decision_failures:
                print(f"  {len(decision_failures)} decisions failed, e.g. {decision_failures[0]}")
            _, unfinished = await asyncio.wait(calls, timeout=REPLY_TIMEOUT)
            if unfinished:
                print(f"  {len(unfinished)} calls still had no reply {REPLY_TIMEOUT:.0f} s after the decisions")
        finally:
            for task in calls:
                task.cancel()
            await asyncio.gather(*calls, return_exceptions=True)
        last_reply = max((arrived for arrived, _ in replies.values()), default=float("nan"))
        last_decision = max(decided_at.values(), default=float("nan"))
        print(f"  after: {server_figures(server)}")

    for purpose in purposes:
        watcher.pending.pop(purpose, None)
    statuses: dict[str, int] = {}
    for _, result in replies.values():
        statuses[result.get("status", "?")] = statuses.get(result.get("status", "?"), 0) + 1
    latencies = [
        replies[purpose][0] - decided_at[purpose]
        for purpose in purposes
        if purpose in replies and purpose in decided_at and replies[purpose][1].get("status") == "approved"
    ]
    within = sum(1 for value in latencies if value <= 1.0)
    print(f"  replies: {len(replies)}/{count} ({', '.join(f'{k} {v}' for k, v in sorted(statuses.items()))})")
    if errors:
        sample = next(iter(errors.values()))
        print(f"  calls that failed: {len(errors)}, e.g. {sample[:200]}")
    print(f"  own decision sent → reply: {summary_ms(latencies)}")
    print(f"  within 1 s of their decision: {within}/{count}")
    print(f"  last decision sent → last reply: {(last_reply - last_decision) * 1000:.1f} ms")
    return {
        "count": count,
        "in_flight": in_flight,
        "replies": len(replies),
        "within_1s": within,
        "reply_p50_ms": percentile(latencies, 50) * 1000,
        "reply_p99_ms": percentile(latencies, 99) * 1000,
        "decisions_per_s": len(decided_at) / max(approved_in, 1e-9),
        "server_cpu_ms_per_decision": 1000 * approval_cpu / max(len(decided_at), 1),
        "loader_share": loader_share,
        "rss_peak_mib": peak_rss_mib(server),
    }


# --- main -----------------------------------------------------------------------------------------------------


async def measure(
    server: LiveServer, work_dir: Path, *, delegations: int, concurrent: int, in_flight: int = 32
) -> dict[str, dict[str, float]]:
    """Both phases on `server`: a companion enrolled, a token through the real pairing flow, an MCP session."""
    tag = secrets.token_hex(3)
    figures: dict[str, dict[str, float]] = {}
    limits = httpx.Limits(max_connections=in_flight + 8)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT, limits=limits) as device_http:
        companion = await Companion.enrol(work_dir / f"companion-{tag}", device_http, name="benchmark phone")
        token = await access_token(server.base_url, companion, work_dir)
        mcp = McpSession(server.mcp_url, token)
        async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
            await mcp.open(http)
        print(f"paired; MCP session open (protocol {mcp.protocol_version}); {server_figures(server)}")
        watcher = DeviceWatcher(companion.api)
        await watcher.start()
        try:
            if delegations > 0:
                figures["latency"] = await latency_phase(server, mcp, watcher, delegations, tag)
            if concurrent > 0:
                observer = DatabaseObserver(server.database_url)
                async with contextlib.AsyncExitStack() as clients:
                    per_client = httpx.Limits(max_connections=-(-in_flight // DECIDERS) + 1)
                    deciders = [
                        DeviceApiClient(
                            await clients.enter_async_context(
                                httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT, limits=per_client)
                            ),
                            Keystore(companion.state_dir),
                        )
                        for _ in range(DECIDERS)
                    ]
                    for decider in deciders:
                        decider.identity()  # the key read from the state directory now, not during the burst
                    figures["concurrency"] = await concurrency_phase(
                        server, observer, mcp, watcher, deciders, concurrent, in_flight, tag
                    )
        finally:
            await watcher.stop()
        if watcher.reconnects > 1:
            print(f"(the device stream reconnected {watcher.reconnects - 1} times)")
    return figures
