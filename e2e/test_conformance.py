"""The official MCP conformance suite (`@modelcontextprotocol/conformance`, pinned in e2e/node) against a live
server: the `server` scenarios that concern Vouchsim for 2026-07-28, and `--requirements 2025-11-25` for the legacy
era. The suite cannot do OAuth, so it talks to a small loopback proxy (e2e/bearer_proxy.py) that adds a real
access token, minted through the pairing flow, and keeps `Host` and `Origin` as sent (the DNS-rebinding checks need
them untouched).

Every check must pass except those listed in e2e/conformance-expected-failures.yml, each with its reason: checks
that need the reference server's `test_*` fixtures, and the prompts and resources parts of `caching` (Vouchsim
declares neither). A listed check that passes fails the test too, so the list stays honest.
"""

from __future__ import annotations

import functools
import json
import re
import selectors
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import anyio
import httpx
import pytest
import yaml

from e2e.harness import REPO, Browser, Companion, LiveServer, ServerFactory, clean_environment, free_port
from e2e.node_clients import installed_package, newer_node
from e2e.test_oauth_negative_flows import authorize, tokens_for

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

EXPECTED_FAILURES = Path(__file__).resolve().parent / "conformance-expected-failures.yml"
SCENARIO_TIMEOUT_MS = 60_000
RUN_TIMEOUT = 600  # seconds for one run of the suite

MODERN_SCENARIOS = ["server-stateless", "tools-list", "caching", "http-header-validation", "dns-rebinding-protection"]


@pytest.fixture(scope="module")
def live_server(servers: ServerFactory) -> LiveServer:
    """This module's server keeps its issuer whatever `Host` the suite sends through the proxy."""
    return servers.start(fixed_issuer=True)


@dataclass(frozen=True)
class Check:
    scenario: str
    id: str
    status: str  # SUCCESS, FAILURE, WARNING, SKIPPED, INFO
    message: str

    @property
    def key(self) -> str:
        return f"{self.scenario}/{self.id}"


@dataclass
class Proxy:
    url: str
    process: subprocess.Popen[str]


@pytest.fixture
async def access_token(live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, companion: Companion) -> str:
    """A token of a client paired through the real flow (the suite cannot do OAuth itself)."""
    done = await authorize(http, live_server.base_url, browser, companion)
    token: str = (await tokens_for(http, live_server.base_url, done))["access_token"]
    return token


@pytest.fixture
def proxy(live_server: LiveServer, access_token: str, tmp_path: Path) -> Iterator[Proxy]:
    """The bearer proxy in front of the live server, in its own process, stopped at the end."""
    token_file = tmp_path / "token"
    token_file.write_text(access_token)
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "e2e.bearer_proxy",
        "--listen",
        f"127.0.0.1:{port}",
        "--target",
        live_server.base_url,
        "--token-file",
        str(token_file),
    ]
    process = subprocess.Popen(command, cwd=REPO, env=clean_environment(), stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        with selectors.DefaultSelector() as selector:
            selector.register(process.stdout, selectors.EVENT_READ)
            assert selector.select(timeout=20), "the bearer proxy did not start within 20 s"
        line = process.stdout.readline()
        assert line.startswith("proxy listening on"), line
        yield Proxy(f"http://127.0.0.1:{port}/mcp", process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
        if process.stdout is not None:
            process.stdout.close()


def run_suite(url: str, output: Path, *selection: str) -> list[Check]:
    """`conformance server --url URL SELECTION…` with Node 22; every check it recorded, from its result files."""
    script = installed_package("@modelcontextprotocol/conformance") / "dist" / "index.js"
    command = [str(newer_node()), str(script), "server", "--url", url, "-o", str(output)]
    command += [*selection, "--timeout", str(SCENARIO_TIMEOUT_MS)]
    done = subprocess.run(
        command, cwd=REPO, env=clean_environment(), capture_output=True, text=True, timeout=RUN_TIMEOUT, check=False
    )
    (output / "stdout.txt").write_text(done.stdout + "\n--- stderr ---\n" + done.stderr)
    checks = list(_checks(output))
    assert checks, (
        f"the suite recorded no checks (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    )
    return checks


def _checks(output: Path) -> Iterator[Check]:
    for path in sorted(output.rglob("checks.json")):
        scenario = re.sub(r"-\d{4}-\d{2}-\d{2}T[\d-]+Z?$", "", path.parent.name.removeprefix("server-"))
        for check in json.loads(path.read_text()):
            message = check.get("errorMessage") or check.get("description") or ""
            yield Check(scenario, check["id"], check["status"], message)


def expected_failures() -> dict[str, str]:
    """`scenario/check-id` → the reason it cannot pass against any server but the reference one."""
    data = yaml.safe_load(EXPECTED_FAILURES.read_text()) or {}
    reasons: dict[str, str] = {}
    for scenario, checks in (data.get("expected_failures") or {}).items():
        for check_id, reason in checks.items():
            assert isinstance(reason, str) and reason.strip(), f"{scenario}/{check_id} needs its reason"
            reasons[f"{scenario}/{check_id}"] = reason
    return reasons


def judge(checks: list[Check], allowed: dict[str, str]) -> None:
    failed = {check.key: check for check in checks if check.status == "FAILURE"}
    unexpected = [f"{key}: {check.message}" for key, check in sorted(failed.items()) if key not in allowed]
    assert not unexpected, "conformance checks failed:\n" + "\n".join(unexpected)
    ran = {check.key for check in checks}
    now_passing = [key for key in allowed if key in ran and key not in failed]
    assert not now_passing, "listed as expected failures but passed (remove them):\n" + "\n".join(now_passing)


def summary(checks: list[Check]) -> str:
    return "\n".join(f"{check.status:8} {check.key}  {check.message[:160]}" for check in checks)


@pytest.mark.requirement(
    "MCP-2026-CONFORMANCE",
    "MCP-2026-HEADER-VALIDATION",
    "MCP-2026-STATELESS",
    "MCP-2026-DISCOVER",
    "MCP-2026-RESULT-TYPE",
)
async def test_the_conformance_suite_passes_for_2026_07_28(proxy: Proxy, tmp_path: Path) -> None:
    checks: list[Check] = []
    for scenario in MODERN_SCENARIOS:
        output = tmp_path / scenario
        output.mkdir()
        selection = ("--scenario", scenario, "--spec-version", "2026-07-28", "--suite", "all")
        checks += await anyio.to_thread.run_sync(functools.partial(run_suite, proxy.url, output, *selection))
    print(summary(checks))
    judge(checks, expected_failures())


@pytest.mark.requirement("MCP-2026-CONFORMANCE", "MCP-2026-DUAL-ERA")
async def test_the_conformance_suite_passes_for_the_2025_11_25_requirements(proxy: Proxy, tmp_path: Path) -> None:
    checks = await anyio.to_thread.run_sync(lambda: run_suite(proxy.url, tmp_path, "--requirements", "2025-11-25"))
    print(summary(checks))
    judge(checks, expected_failures())
