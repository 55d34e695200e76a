"""The testbed controls against a live `vouchsim serve --testbed`, with clients no one here wrote: a drop fault
that the MCP Python SDK surfaces as a transport error, a waiting delegation_request answered when the clock
expires it, a reset between two runs, the TypeScript SDK facing a 503 with Retry-After at the token endpoint, the
journal followed live, and `vouchsim testbed …` on the command line. (The SDK's recovery after a clock move and
the journal of that run: e2e/test_oauth_sdk_flow.py. Two workers: e2e/test_workers.py.)"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest

from e2e.harness import REPO, Browser, Companion, LiveServer, ServerFactory, clean_environment, free_port
from e2e.node_clients import NODE_PROJECT, installed_package, json_lines_process, node_executable, sandbox_environment
from e2e.test_delegation_flow import PAYMENTS, agent, structured
from vouchsim.companion.core.testbed import TestbedClient

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.postgres]  # on PostgreSQL too (e2e/conftest.py)

TOKEN = "e2e-testbed-token-0123456789"
TESTBED = {"VOUCHSIM_TESTBED": "1", "VOUCHSIM_TESTBED_TOKEN": TOKEN}
STEP = 30.0  # seconds for one step (a hang guard: none takes more than a few)


@pytest.fixture(scope="module")
def live_server(servers: ServerFactory) -> LiveServer:
    return servers.start(TESTBED)


@pytest.fixture
async def testbed(live_server: LiveServer) -> AsyncIterator[TestbedClient]:
    """The controls, left as found: no fault and real time after each test."""
    async with TestbedClient.connect(live_server.base_url, TOKEN) as client:
        try:
            yield client
        finally:
            await client.remove_faults()
            await client.reset_clock()


def transport_errors(error: BaseException) -> list[BaseException]:
    """The httpx2 transport errors inside `error` (an exception group, a chain)."""
    found: list[BaseException] = []
    pending = [error]
    while pending:
        current = pending.pop()
        if isinstance(current, httpx2.TransportError):
            found.append(current)
        if isinstance(current, BaseExceptionGroup):
            pending.extend(current.exceptions)
        pending.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    return found


@pytest.mark.requirement("TESTBED-FAULT-DROP", "MCP-SDK-OAUTH-CLIENT")
async def test_a_drop_fault_on_mcp_surfaces_as_a_transport_error_in_the_sdk(
    live_server: LiveServer, browser: Browser, companion: Companion, testbed: TestbedClient
) -> None:
    caught: BaseException | None = None
    try:
        with anyio.fail_after(STEP):
            async with agent(live_server, browser, companion) as session:
                assert structured(await session.call_tool("identity_get", {}))["subject"]
                fault = await testbed.add_fault(
                    match={"kind": "mcp", "mcp_method": "tools/call", "tool": "identity_get"}, action={"drop": True}
                )
                await session.call_tool("identity_get", {})
    except BaseException as error:  # how the SDK surfaces it is the point: checked below
        caught = error
    assert caught is not None and transport_errors(caught), repr(caught)
    [dropped] = [entry for entry in await testbed.journal(kind="mcp") if entry.fault == fault.id]
    assert dropped.status is None and dropped.summary["name"] == "identity_get"
    assert (await testbed.faults())[0].remaining == 0


@pytest.mark.requirement("TESTBED-CLOCK-DELEGATION-EXPIRY", "MCP-TOOLS-CALL")
async def test_a_waiting_delegation_request_is_answered_when_the_clock_expires_it(
    live_server: LiveServer, browser: Browser, companion: Companion, testbed: TestbedClient
) -> None:
    answers: list[dict[str, Any]] = []
    async with agent(live_server, browser, companion) as session:

        async def ask() -> None:
            arguments = {**PAYMENTS, "timeoutSeconds": 45}
            answers.append(structured(await session.call_tool("delegation_request", arguments)))

        with anyio.fail_after(STEP):  # without the clock's help the call would wait its 45 s
            async with anyio.create_task_group() as calls, aclosing(companion.api.stream_delegations()) as shown:
                calls.start_soon(ask)
                pending = await anext(shown)  # the call's delegation, live on the device
                assert pending.status == "pending"
                await testbed.advance(301)  # past the delegation's 300 s
    [answer] = answers
    assert answer["status"] == "expired" and "token" not in answer


@pytest.mark.requirement("TESTBED-RESET")
async def test_a_reset_between_two_runs_leaves_nothing_of_the_first(
    live_server: LiveServer, browser: Browser, companion: Companion, testbed: TestbedClient
) -> None:
    kids = {key["kid"] for key in (await companion.api._http.get("/.well-known/jwks.json")).json()["keys"]}
    # The first run: a client authorized through the device, a fault, a moved clock.
    async with agent(live_server, browser, companion) as session:
        assert structured(await session.call_tool("identity_get", {}))["clientId"]
    [first_client] = {c.client_id for c in await companion.api.connections()}
    await testbed.add_fault(match={"kind": "revoke"}, action={"status": 500}, times=None)
    await testbed.advance(60)
    assert await testbed.journal(client_id=first_client)

    await testbed.reset()

    # The second run starts from nothing.
    assert await testbed.journal() == [] and await testbed.faults() == []
    assert (await testbed.clock()).offset_seconds == 0
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=30) as http:
        page = await http.get("/oauth/authorize", params={"client_id": first_client, "response_type": "code"})
        assert page.status_code == 400 and "client" in page.text.lower()  # unknown now
        assert {key["kid"] for key in (await http.get("/.well-known/jwks.json")).json()["keys"]} == kids
    listed = await anyio.run_process(
        [sys.executable, "-m", "vouchsim.companion", "connections", "--state", str(companion.state_dir)],
        check=False,
        env=clean_environment(),
    )
    assert listed.returncode == 1 and b"no longer trusted" in listed.stderr, listed.stderr  # the device is gone
    after = [(entry.kind, entry.status) for entry in await testbed.journal()]
    assert after == [("authorize", 400), ("discovery", 200), ("device", 401)]  # this run's requests only


@pytest.mark.requirement("TESTBED-JOURNAL-FLOW")
async def test_the_journal_can_be_followed_live(live_server: LiveServer, testbed: TestbedClient) -> None:
    last = await testbed.journal(limit=1)
    seen: list[str] = []
    async with (
        httpx.AsyncClient(base_url=live_server.base_url) as http,
        aclosing(testbed.follow(since=last[-1].id if last else 0, kind="discovery", wait=10)) as entries,
    ):
        with anyio.fail_after(STEP):
            await http.get("/.well-known/oauth-authorization-server")
            await http.get("/.well-known/jwks.json")
            async for entry in entries:
                seen.append(entry.path)
                if len(seen) == 2:
                    break
    assert seen == ["/.well-known/oauth-authorization-server", "/.well-known/jwks.json"]


@pytest.mark.requirement("TESTBED-FAULT-RETRY-AFTER", "TS-SDK-OAUTH-CLIENT")
async def test_the_typescript_sdk_sees_a_503_with_retry_after_at_the_token_endpoint(
    live_server: LiveServer, browser: Browser, companion: Companion, testbed: TestbedClient, tmp_path: Path
) -> None:
    node = node_executable()
    installed_package("@modelcontextprotocol/sdk")
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    delegation = {**PAYMENTS, "waitForApproval": False}
    command: list[str | Path] = [
        *(node, NODE_PROJECT / "ts_sdk_client.mjs", "--server", live_server.mcp_url, "--retry-token"),
        *("--redirect-url", redirect_uri, "--delegation", json.dumps(delegation), "--timeout", "60"),
    ]
    fault = await testbed.add_fault(
        match={"kind": "token", "grant_type": "authorization_code"}, action={"status": 503, "retry_after": 1}
    )
    with anyio.fail_after(60):
        async with json_lines_process(
            "ts_sdk_client", command, sandbox_environment(tmp_path / "home", node), tmp_path
        ) as client:
            authorize = await client.expect("authorize", STEP)
            location = await browser.authorize(authorize["url"], companion)
            await client.send({"type": "redirect", "location": location})
            retried = await client.expect("token_retried", STEP)
            await client.expect("done", STEP)
            assert await client.exit_code(STEP) == 0, client.report()
    assert retried == {"type": "token_retried", "error": "TemporarilyUnavailableError", "retry_after": 1}
    tokens = [(m["status"], m["retry_after"]) for m in client.of_type("http") if m["path"] == "/oauth/token"]
    assert tokens == [(503, "1"), (200, None)], client.report()
    [refused] = [entry for entry in await testbed.journal(kind="token") if entry.fault == fault.id]
    assert (refused.status, refused.summary["error"]) == (503, "temporarily_unavailable")


@pytest.mark.requirement("TESTBED-TOKEN")
async def test_without_a_token_the_server_makes_one_and_prints_it_once(servers: ServerFactory) -> None:
    server = await anyio.to_thread.run_sync(lambda: servers.start({"VOUCHSIM_TESTBED": "1"}))
    printed = re.findall(r"testbed controls: (\S+) \(bearer token: (\S+)\)", server.log())
    assert len(printed) == 1, server.log()
    [(url, token)] = printed
    assert url == f"{server.base_url}/testbed/" and len(token) >= 32
    async with TestbedClient.connect(server.base_url, token) as testbed:
        assert (await testbed.clock()).offset_seconds == 0
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/testbed/clock")).status_code == 401
        assert token not in (await http.get("/schema/openapi.json")).text


@pytest.mark.requirement("TESTBED-CLI")
async def test_the_cli_drives_a_live_server(live_server: LiveServer, testbed: TestbedClient) -> None:
    env = clean_environment({"VOUCHSIM_SERVER_URL": live_server.base_url, "VOUCHSIM_TESTBED_TOKEN": TOKEN})

    async def vouchsim(*args: str, environ: dict[str, str] = env) -> tuple[int, str, str]:
        with anyio.fail_after(STEP):
            done = await anyio.run_process(
                [sys.executable, "-m", "vouchsim.server", "testbed", *args], check=False, cwd=REPO, env=environ
            )
        return done.returncode, done.stdout.decode(), done.stderr.decode()

    code, out, err = await vouchsim("fault", "add", "--kind", "discovery", "--status", "503", "--times", "2")
    assert code == 0, err
    fault_id = out.strip()
    code, out, _ = await vouchsim("fault", "list", "--json")
    assert [(f["id"], f["remaining"]) for f in json.loads(out)["faults"]] == [(fault_id, 2)]
    async with httpx.AsyncClient(base_url=live_server.base_url) as http:
        assert (await http.get("/.well-known/jwks.json")).status_code == 503
    code, out, _ = await vouchsim("journal", "--kind", "discovery", "--limit", "1", "--json")
    [entry] = json.loads(out)["entries"]
    assert (entry["status"], entry["fault"]) == (503, fault_id)
    code, out, _ = await vouchsim("journal", "--kind", "discovery", "--limit", "1")
    assert f"[fault {fault_id}]" in out and "503" in out
    assert (await vouchsim("fault", "rm", fault_id))[0] == 0 and await testbed.faults() == []
    code, out, _ = await vouchsim("clock", "advance", "3600")
    assert code == 0 and "+3600 s from real time" in out
    assert (await testbed.clock()).offset_seconds == 3600
    assert (await vouchsim("clock", "reset"))[0] == 0 and (await testbed.clock()).offset_seconds == 0
    code, out, _ = await vouchsim("reset")
    assert code == 0 and await testbed.journal() == []
    code, _, err = await vouchsim(
        "clock", "--server", live_server.base_url, "--testbed-token", "wrong", environ=clean_environment()
    )
    assert code == 1 and err.count("\n") == 1 and "refused the testbed token" in err
