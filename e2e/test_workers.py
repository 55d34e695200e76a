"""`vouchsim serve --workers N`: several server processes on one port, over PostgreSQL.

Calls wait in whichever process accepted their connection, and decisions land in whichever process accepted the
device's: LISTEN/NOTIFY carries the wake-up between them. On SQLite (an in-process event bus) more than one
worker is refused before anything starts.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import anyio
import pytest

from e2e.harness import REPO, Browser, Companion, LiveServer, ServerFactory, clean_environment, free_port
from e2e.test_delegation_flow import PAYMENTS, agent, structured, verify_delegation_token

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

WORKERS = 2
CALLS = 12  # waiting at once, over as many connections: the kernel hands them to both workers
DECIDE_WITHIN = 30.0


@pytest.fixture(scope="module")
def live_server(servers: ServerFactory) -> LiveServer:
    if servers.databases.backend != "postgres":
        pytest.skip("more than one worker needs PostgreSQL (the SQLite refusal is tested below)")
    return servers.start({"VOUCHSIM_WORKERS": str(WORKERS)})


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
