"""`python -m e2e.bench`: run every figure, print the table, save the JSON (see the package's docstring)."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import math
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from e2e.bench import delegations, flow, mcp, token
from e2e.bench.servers import BenchServer, HelloWorld, pinning
from e2e.harness import HTTP_TIMEOUT, Companion, Databases


@dataclass(frozen=True)
class Sizes:
    duration: float  # seconds per load round
    rounds: int
    connections: int
    delegations: int  # one at a time
    concurrent: int  # waiting at once
    codes: int
    flows: int
    qr: int


FULL = Sizes(duration=8.0, rounds=3, connections=32, delegations=200, concurrent=1000, codes=300, flows=30, qr=50)
QUICK = Sizes(duration=0.5, rounds=1, connections=4, delegations=3, concurrent=10, codes=5, flows=2, qr=2)


def _met(value: float, goal: float, *, at_most: bool) -> str:
    if math.isnan(value):
        return "n/a"
    return "yes" if (value <= goal if at_most else value >= goal) else "NO"


class Report:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.figures: dict[str, Any] = {}

    def row(self, figure: str, value: str, goal: str = "", met: str = "") -> None:
        self.rows.append({"figure": figure, "value": value, "goal": goal, "met": met})

    def table(self) -> str:
        lines = ["| figure | measured | goal | met |", "|---|---|---|---|"]
        lines += [f"| {r['figure']} | {r['value']} | {r['goal']} | {r['met']} |" for r in self.rows]
        return "\n".join(lines)


def _mcp_rows(report: Report, backend: str, rounds: mcp.Rounds) -> None:
    """Two ratios to the hello-world: of req/s (meaningful when both servers used their whole core) and of server
    CPU per request (what the req/s ratio would be at one full core each; it holds on a machine busy with other
    work, where neither server gets its core). The goal is checked on the CPU ratio; both are shown."""
    hello, hello_cpu = rounds.median("hello"), rounds.median_cpu_us("hello")
    for era, label in (("legacy", "2025-11-25 + session"), ("modern", "2026-07-28 stateless")):
        rate, cpu = rounds.median(era), rounds.median_cpu_us(era)
        ratio, cpu_ratio = rate / hello, hello_cpu / cpu
        report.row(
            f"`/mcp` identity_get, {label}, {backend}",
            f"{cpu:.0f} µs server CPU/req = **{cpu_ratio:.2f}** of hello-world's; {rate:,.0f} req/s = {ratio:.2f}",
            "≥ 0.50",
            _met(cpu_ratio, 0.50, at_most=False),
        )
    report.row(
        f"Litestar hello-world (JSON POST), {backend} run",
        f"{hello_cpu:.0f} µs server CPU/req; {hello:,.0f} req/s",
        "1.00",
    )
    loader = max(rounds.max_loader_share(what) for what in ("hello", "legacy", "modern"))
    report.figures[f"mcp_{backend}"] = {
        "hello_per_s": hello,
        "legacy_per_s": rounds.median("legacy"),
        "modern_per_s": rounds.median("modern"),
        "legacy_ratio": rounds.median("legacy") / hello,
        "modern_ratio": rounds.median("modern") / hello,
        "legacy_cpu_ratio": hello_cpu / rounds.median_cpu_us("legacy"),
        "modern_cpu_ratio": hello_cpu / rounds.median_cpu_us("modern"),
        "hello_cpu_us": rounds.median_cpu_us("hello"),
        "legacy_cpu_us": rounds.median_cpu_us("legacy"),
        "modern_cpu_us": rounds.median_cpu_us("modern"),
        "loader_max_share": loader,
        "server_max_share": max(rounds.max_server_share(what) for what in ("hello", "legacy", "modern")),
        "rounds": [r.__dict__ for r in rounds.rounds],
    }


# The issue's goals were set on a machine where the hello-world took about 82 µs of CPU per request (12,200 req/s at
# one core); these machines differ run to run by up to twice that. Server CPU per decision is also given in
# hello-world requests measured in the same run, which compares across them (the 2 ms goal: about 24).
ISSUE_HELLO_CPU_US = 1e6 / 12_200


def _delegation_rows(
    report: Report, backend: str, figures: dict[str, dict[str, float]], hello_cpu_us: float | None
) -> None:
    report.figures[f"delegations_{backend}"] = figures
    if "latency" in figures:
        latency = figures["latency"]
        report.row(
            f"decision → waiting reply, one at a time, {backend}",
            f"p50 {latency['p50_ms']:.1f} / p99 {latency['p99_ms']:.1f} ms (n={latency['count']:.0f})",
            "≤ 5 / ≤ 25 ms",
            "yes" if latency["p50_ms"] <= 5 and latency["p99_ms"] <= 25 else "NO",
        )
    if "concurrency" in figures:
        burst = figures["concurrency"]
        in_hello = ""
        if hello_cpu_us:
            burst["hello_requests_per_decision"] = burst["server_cpu_ms_per_decision"] * 1000 / hello_cpu_us
            in_hello = (
                f" = {burst['hello_requests_per_decision']:.1f} hello-world requests' CPU (the issue's machine: "
                f"{burst['hello_requests_per_decision'] * ISSUE_HELLO_CPU_US / 1000:.2f} ms)"
            )
        report.row(
            f"server CPU per decision and its reply ({burst['in_flight']:.0f} in flight), {backend}",
            f"{burst['server_cpu_ms_per_decision']:.2f} ms ({burst['decisions_per_s']:.0f} decisions/s){in_hello}",
            "≤ 2 ms",
            _met(burst["server_cpu_ms_per_decision"], 2.0, at_most=True),
        )
        report.row(
            f"{burst['count']:.0f} waiting calls approved {burst['in_flight']:.0f} at a time, {backend}",
            f"{burst['within_1s']:.0f}/{burst['count']:.0f} within 1 s of their decision "
            f"(p99 {burst['reply_p99_ms']:.0f} ms); RSS peak {burst['rss_peak_mib']:.0f} MiB",
            "all; RSS ≤ 150 MB",
            "yes" if burst["within_1s"] >= burst["count"] and burst["rss_peak_mib"] <= 150 * 1e6 / 2**20 else "NO",
        )


def _run_backend(
    report: Report,
    backend: str,
    database_url: str,
    hello: HelloWorld,
    sizes: Sizes,
    work_dir: Path,
    *,
    only: str = "all",
) -> None:
    print(f"\n== {backend}: {database_url}")
    server = BenchServer(database_url, work_dir / f"server-{backend}.log").start()
    try:
        print(f"server pid {server.process.pid if server.process else '?'} on {server.base_url}")
        hello_cpu_us = None
        if only != "decisions":
            loads = asyncio.run(mcp.prepare(server, work_dir))
            print("[/mcp] tools/call identity_get, interleaved with the hello-world:")
            rounds = mcp.measure(
                server, hello, loads, duration=sizes.duration, connections=sizes.connections, rounds=sizes.rounds
            )
            _mcp_rows(report, backend, rounds)
            hello_cpu_us = rounds.median_cpu_us("hello")
        if only == "mcp":
            return
        figures = asyncio.run(
            delegations.measure(server, work_dir, delegations=sizes.delegations, concurrent=sizes.concurrent)
        )
        _delegation_rows(report, backend, figures, hello_cpu_us)
        if backend == "SQLite" and only == "all":
            _token(report, server, sizes, work_dir, rounds.median("hello"))
    finally:
        server.stop()
        if (found := server.tracebacks()) is not None:
            raise RuntimeError(f"the {backend} server logged a traceback or a 5xx answer:\n{found[:3000]}")


def _token(report: Report, server: BenchServer, sizes: Sizes, work_dir: Path, hello: float) -> None:
    print("\n[token] code exchange and refresh rotation:")

    async def jobs() -> tuple[Any, Any]:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=HTTP_TIMEOUT) as device_http:
            companion = await Companion.enrol(work_dir / "companion-token", device_http, name="token bench phone")
            return await token.prepare(server, companion, sizes.codes, min(sizes.connections, 8))

    exchange, refresh = asyncio.run(jobs())
    figures = token.measure(server, exchange, refresh, sizes.duration)
    values = figures.as_dict()
    report.figures["token"] = {**values, "hello_per_s": hello}
    hello_cpu_ms = report.figures["mcp_SQLite"]["hello_cpu_us"] / 1000
    for what, key in (("code exchange", "exchange"), ("refresh", "refresh")):
        rate, cpu = values[f"{key}_per_s"], values[f"{key}_server_cpu_ms"]
        off_loop, share = values[f"{key}_off_loop_cpu_ms"], values[f"{key}_loader_share"]
        print(
            f"  {what}: {rate:.0f}/s, {cpu:.2f} ms server CPU each ({1000 * off_loop:.0f} µs of it off the event "
            f"loop's thread), loader {100 * share:.0f}%"
        )
        report.row(
            f"token endpoint: {what}, SQLite",
            f"{cpu:.2f} ms server CPU/req = **{hello_cpu_ms / cpu:.3f}** of hello-world's; "
            f"{rate:,.0f} req/s = {rate / hello:.3f}; off the event loop's thread: {1000 * off_loop:.0f} µs/req",
            "measure",
        )


def _flow(report: Report, sizes: Sizes, work_dir: Path) -> None:
    print("\n[flow] the whole flow in one process:")
    database = f"sqlite+aiosqlite:///{work_dir / 'flow.db'}"
    figures = {**asyncio.run(flow.measure(database, work_dir, sizes.flows)), **flow.qr_times(sizes.qr)}
    report.figures["flow"] = figures
    print(f"  {figures}")
    report.row(
        "whole flow in process (DCR → … → tools/call), SQLite",
        f"p50 {figures['p50_ms']:.0f} ms (p90 {figures['p90_ms']:.0f}, n={figures['count']:.0f})",
        "≤ 150 ms",
        _met(figures["p50_ms"], 150, at_most=True),
    )
    qr = figures["qr_render_p50_ms"] + figures["qr_decode_p50_ms"]
    report.row(
        "QR render + decode",
        f"{qr:.1f} ms (render {figures['qr_render_p50_ms']:.1f}, decode {figures['qr_decode_p50_ms']:.1f})",
        "≤ 30 ms",
        _met(qr, 30, at_most=True),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m e2e.bench", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny counts: a smoke run (make test), not figures")
    parser.add_argument("--postgres", metavar="ADMIN_URL", help="also on PostgreSQL (a fresh database, dropped after)")
    parser.add_argument("--json", type=Path, default=Path("bench-result.json"), help="where to save the figures")
    parser.add_argument(
        "--only",
        choices=["mcp", "decisions", "all"],
        default="all",
        help="mcp: the /mcp figures only; decisions: the delegation figures only",
    )
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    started = datetime.datetime.now(datetime.UTC)
    print(f"machine: {delegations.machine()}")
    print(f"{pinning()}; loader: raw asyncio sockets, keep-alive, {sizes.connections} connections")
    print(delegations.raise_fd_limit(sizes.concurrent * 2 + 512))
    report = Report()
    with tempfile.TemporaryDirectory(prefix="vouchsim-bench-") as tmp:
        work_dir = Path(tmp)
        hello = HelloWorld(work_dir / "hello.log").start()
        try:
            backends = [("SQLite", Databases("sqlite", work_dir))]
            if args.postgres:
                backends.append(("PostgreSQL", Databases("postgres", work_dir, args.postgres)))
            for backend, databases in backends:
                try:
                    _run_backend(report, backend, databases.new(), hello, sizes, work_dir, only=args.only)
                finally:
                    databases.drop_all()
        finally:
            hello.stop()
        if args.only == "all":
            _flow(report, sizes, work_dir)
    loader_share = max(
        [value["loader_max_share"] for key, value in report.figures.items() if key.startswith("mcp_")], default=0.0
    )
    # The decisions' loader (the device, the agent's 1,000 calls) runs in this process, on its own core.
    decisions_share = max(
        [
            value["concurrency"]["loader_share"]
            for key, value in report.figures.items()
            if key.startswith("delegations_") and "concurrency" in value
        ],
        default=0.0,
    )
    if decisions_share:
        print(f"\ndecisions' load generator (this process): at most {100 * decisions_share:.0f}% of its core")
    loader_share = max(loader_share, decisions_share)
    verdict = (
        "the load generator was not the bottleneck"
        if loader_share < 0.9
        else "the load generator may have been the bottleneck: read the ratios with care"
    )
    print(f"\nload generator: at most {100 * loader_share:.0f}% of its core ({verdict})")
    header = (
        f"{os.cpu_count()} cores, {started:%Y-%m-%d}, {'quick smoke run' if args.quick else 'full run'}; "
        f"{pinning()}; loader at most {100 * loader_share:.0f}% of its core"
    )
    print(f"\n{header}\n\n{report.table()}")
    result = {
        "date": started.isoformat(timespec="seconds"),
        "machine": delegations.machine(),
        "cores": os.cpu_count(),
        "quick": args.quick,
        "pinning": pinning(),
        "loader_max_share": loader_share,
        "rows": report.rows,
        "figures": report.figures,
    }
    args.json.write_text(json.dumps(result, indent=1, default=str))
    print(f"\nsaved: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
