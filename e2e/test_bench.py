"""The benchmark's smoke run: `python -m e2e.bench --quick` works from end to end and reports every figure. It checks
that the benchmark runs (real server, real loader, real companion), never how fast anything is."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.harness import REPO
from vouchsim.companion.server_process import clean_environment

pytestmark = pytest.mark.e2e

FIGURES = (
    "`/mcp` identity_get, 2025-11-25 + session, SQLite",
    "`/mcp` identity_get, 2026-07-28 stateless, SQLite",
    "Litestar hello-world (JSON POST), SQLite run",
    "decision → waiting reply, one at a time, SQLite",
    "server CPU per decision and its reply (32 in flight), SQLite",
    "token endpoint: code exchange, SQLite",
    "token endpoint: refresh, SQLite",
    "whole flow in process (DCR → … → tools/call), SQLite",
    "QR render + decode",
)


@pytest.mark.requirement("BENCH-SMOKE")
def test_the_quick_benchmark_prints_and_saves_every_figure(tmp_path: Path) -> None:
    saved = tmp_path / "bench.json"
    done = subprocess.run(
        [sys.executable, "-m", "e2e.bench", "--quick", "--json", str(saved)],
        cwd=REPO,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for figure in FIGURES:
        assert f"| {figure} |" in done.stdout, figure
    assert "load generator: at most" in done.stdout
    result = json.loads(saved.read_text())
    assert result["quick"] is True and result["cores"] >= 1
    assert set(FIGURES) <= {row["figure"] for row in result["rows"]}
    figures = result["figures"]
    assert figures["mcp_SQLite"]["legacy_per_s"] > 0 and figures["mcp_SQLite"]["modern_per_s"] > 0
    assert figures["mcp_SQLite"]["hello_per_s"] > 0
    assert figures["delegations_SQLite"]["latency"]["failures"] == 0
    assert (
        figures["delegations_SQLite"]["concurrency"]["replies"] == figures["delegations_SQLite"]["concurrency"]["count"]
    )
    assert figures["delegations_SQLite"]["concurrency"]["hello_requests_per_decision"] > 0
    assert "hello-world requests' CPU (the issue's machine: " in done.stdout
    assert figures["token"]["exchanges"] > 0 and figures["token"]["refreshes"] > 0
    assert figures["token"]["exchange_off_loop_cpu_ms"] >= 0 and figures["token"]["refresh_off_loop_cpu_ms"] >= 0
    assert "off the event loop's thread: " in done.stdout
    assert figures["flow"]["p50_ms"] > 0 and figures["flow"]["qr_decode_p50_ms"] > 0
