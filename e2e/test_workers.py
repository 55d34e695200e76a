"""`vouchsim serve --workers N`: several server processes on one port, over PostgreSQL.

Calls wait in whichever process accepted their connection, and decisions land in whichever process accepted the
device's: LISTEN/NOTIFY carries the wake-up between them. The testbed's clock offset and faults, kept in the
database and announced the same way, hold on every worker. On SQLite (an in-process event bus) more than one
worker is refused before anything starts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from e2e.harness import REPO, Browser, Companion, LiveServer, ServerFactory, clean_environment, free_port
from e2e.test_delegation_flow import PAYMENTS, agent, structured, verify_delegation_token
from vouchsim.companion.core.testbed import TestbedClient

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.postgres]  # on PostgreSQL too (e2e/conftest.py)

WORKERS = 2
TESTBED_TOKEN = "e2e-testbed-token-of-the-workers"
TESTBED = {"VOUCHSIM_TESTBED": "1", "VOUCHSIM_TESTBED_TOKEN": TESTBED_TOKEN}
INSTANCE = "vouchsim-testbed-instance"
CALLS = 12  # waiting at once, over as many connections: the kernel hands them to both workers
DECIDE_WITHIN = 30.0


@pytest.fixture(scope="module")
def live_server(servers: ServerFactory) -> LiveServer:
    if servers.databases.backend != "postgres":
        pytest.skip("more than one worker needs PostgreSQL (the SQLite refusal is tested below)")
    return servers.start({"VOUCHSIM_WORKERS": str(WORKERS), **TESTBED})


def worker_processes(server: LiveServer) -> list[int]:
    """The server process's children that run the app: uvicorn's supervisor spawns one per worker
    (`multiprocessing.spawn`; multiprocessing's resource tracker is a child too, but not a worker)."""
    assert server.process is not None
    children = Path(f"/proc/{server.process.pid}/task/{server.process.pid}/children").read_text().split()
    return [int(pid) for pid in children if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]


@pytest.mark.requirement("SERVE-WORKERS", "DELEGATION-APPROVE", "DELEGATION-TOKEN-JWKS")
async def test_waiting_calls_are_woken_whichever_worker_holds_them(
    live_server: LiveServer, browser: Browser, companion: Companion
) -> None:
    assert len(worker_processes(live_server)) == WORKERS
    answers: dict[int, dict[str, object]] = {}
    async with agent(live_server, browser, companion) as session:

        async def ask(n: int) -> None:
            purpose = f"{PAYMENTS['purpose']} (call {n})"
            answers[n] = structured(
                await session.call_tool("delegation_request", {**PAYMENTS, "purpose": purpose, "timeoutSeconds": 40})
            )

        async with anyio.create_task_group() as calls:
            for n in range(CALLS):
                calls.start_soon(ask, n)
            # The device, on connections of its own, approves each call once it is pending.
            with anyio.fail_after(DECIDE_WITHIN):
                decided: set[str] = set()
                while len(decided) < CALLS:
                    for delegation in await companion.api.delegations("pending"):
                        if delegation.delegation_id not in decided:
                            await companion.api.decide(delegation, "approve")
                            decided.add(delegation.delegation_id)
                    await anyio.sleep(0.1)  # polling the device's list: bounded by DECIDE_WITHIN

    assert sorted(answers) == list(range(CALLS))
    assert {answer["status"] for answer in answers.values()} == {"approved"}, answers
    assert {answer["delegationId"] for answer in answers.values()} == decided
    for answer in answers.values():
        await verify_delegation_token(live_server, str(answer["token"]), "aud_test_payments")
    assert len(worker_processes(live_server)) == WORKERS  # none died on the way


async def on_each_worker(server: LiveServer, path: str, *, attempts: int = 400) -> dict[str, dict[str, Any]]:
    """`GET path` of the testbed controls, answered by each worker (a new connection each time, so the kernel
    hands them to both), by the instance that answered."""
    answers: dict[str, dict[str, Any]] = {}
    for _ in range(attempts):
        async with httpx.AsyncClient(base_url=server.base_url) as http:
            response = await http.get(path, headers={"Authorization": f"Bearer {TESTBED_TOKEN}"})
        assert response.status_code == 200, response.text
        answers.setdefault(response.headers[INSTANCE], response.json())
        if len(answers) == WORKERS:
            return answers
    pytest.fail(f"{attempts} new connections reached only {sorted(answers)}")


@pytest.mark.requirement("TESTBED-WORKERS", "SERVE-WORKERS")
async def test_every_worker_follows_the_testbed_clock_and_faults(live_server: LiveServer) -> None:
    async with TestbedClient.connect(live_server.base_url, TESTBED_TOKEN) as testbed:
        await testbed.reset()
        moved = await testbed.advance(3600)  # answered once both workers applied it
        clocks = await on_each_worker(live_server, "/testbed/clock")
        assert {answer["offset_seconds"] for answer in clocks.values()} == {moved.offset_seconds} == {3600}

        fault = await testbed.add_fault(match={"kind": "discovery"}, action={"status": 503}, times=5)
        statuses = []
        for _ in range(16):  # new connections: both workers answer some
            async with httpx.AsyncClient(base_url=live_server.base_url) as http:
                statuses.append((await http.get("/.well-known/jwks.json")).status_code)
        assert sorted(statuses) == [200] * 11 + [503] * 5  # five firings in all, whichever worker fired them
        [listed] = await testbed.faults()
        assert (listed.id, listed.remaining, listed.fired) == (fault.id, 0, 5)

        journals = await on_each_worker(live_server, "/testbed/journal?kind=discovery")
        per_worker = [answer["entries"] for answer in journals.values()]
        assert all(per_worker), journals  # each worker journals the requests it served
        assert sum(len(entries) for entries in per_worker) == 16
        assert sum(entry["fault"] == fault.id for entries in per_worker for entry in entries) == 5

        await testbed.reset()  # on every worker: journals, faults and clock
        after = await on_each_worker(live_server, "/testbed/journal")
        assert [answer["entries"] for answer in after.values()] == [[], []]
        clocks = await on_each_worker(live_server, "/testbed/clock")
        assert {answer["offset_seconds"] for answer in clocks.values()} == {0}


@pytest.mark.requirement("SERVE-WORKERS")
def test_more_than_one_worker_on_sqlite_is_refused(tmp_path: Path) -> None:
    database = f"sqlite+aiosqlite:///{tmp_path / 'vouchsim.db'}"
    command = [sys.executable, "-m", "vouchsim.server", "serve", "--workers", "2", "--database-url", database]
    done = subprocess.run(
        [*command, "--port", str(free_port())],
        cwd=REPO,
        env=clean_environment(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "more than one needs PostgreSQL" in done.stderr, done.stderr
    assert not (tmp_path / "vouchsim.db").exists()  # refused before anything was created
