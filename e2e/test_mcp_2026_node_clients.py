"""The TypeScript SDK v2 client (`@modelcontextprotocol/client` 2.4.0, pinned in e2e/node) against a live server,
through the whole OAuth and pairing flow (e2e/node/ts_sdk_v2_client.mjs is the agent; the test is the person):

- with the SDK's 2026 negotiation (`versionNegotiation: {mode: "auto"}`) it probes `server/discover` and ends up
  on 2026-07-28, statelessly, and a delegation_request waits for the device as a blocking call;
- declaring the Tasks extension, the same delegation_request comes back as a task at once, which it polls with
  `tasks/get` (the client's generic request method: 2.4.0 does not export its Tasks client extension yet) at the
  pollIntervalMs the server gives, until the device approves and the task holds the approved result;
- without the option, 2.4.0's own default is the 2025 handshake (`mode` defaults to "legacy" in that release),
  which still ends on 2025-11-25 with a session.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
import pytest

from e2e.harness import Browser, Companion, LiveServer, free_port
from e2e.node_clients import (
    NODE_PROJECT,
    approving,
    installed_package,
    json_lines_process,
    node_executable,
    sandbox_environment,
)
from e2e.test_delegation_flow import PAYMENTS, verify_delegation_token

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

MODERN = "2026-07-28"
TOOLS = ["identity_get", "delegation_request", "delegation_status", "delegation_revoke"]
STEP_TIMEOUT = 30.0
TEST_TIMEOUT = 90.0


async def run_v2_client(
    live_server: LiveServer,
    browser: Browser,
    companion: Companion,
    tmp_path: Path,
    *,
    negotiation: str,
    tasks: bool = False,
    delegation: dict[str, Any] | None = None,
) -> Any:
    node = node_executable()
    installed_package("@modelcontextprotocol/client")
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    arguments = delegation or {**PAYMENTS, "timeoutSeconds": 20}
    command: list[str | Path] = [
        *(node, NODE_PROJECT / "ts_sdk_v2_client.mjs", "--server", live_server.mcp_url),
        *("--redirect-url", redirect_uri, "--delegation", json.dumps(arguments)),
        *("--negotiation", negotiation, "--timeout", str(TEST_TIMEOUT)),
        *(["--tasks"] if tasks else []),
    ]
    with anyio.fail_after(TEST_TIMEOUT):
        async with json_lines_process(
            "ts_sdk_v2_client", command, sandbox_environment(tmp_path / "home", node), tmp_path
        ) as agent:
            authorize = await agent.expect("authorize", STEP_TIMEOUT)
            location = await browser.authorize(authorize["url"], companion)
            await agent.send({"type": "redirect", "location": location})
            await agent.expect("identity", STEP_TIMEOUT)
            async with approving(companion):  # delegation_request is on its way
                await agent.expect("delegation", STEP_TIMEOUT)
            await agent.expect("done", STEP_TIMEOUT)
            assert await agent.exit_code(STEP_TIMEOUT) == 0, agent.report()
    return agent


def mcp_requests(agent: Any) -> list[dict[str, Any]]:
    return [m for m in agent.of_type("http") if m["path"] == "/mcp" and m["status"] != 401]


@pytest.mark.requirement("TS-SDK-V2-2026", "MCP-2026-DISCOVER", "MCP-2026-STATELESS", "DELEGATION-APPROVE")
async def test_typescript_sdk_v2_negotiates_2026_and_gets_a_delegation(
    live_server: LiveServer, browser: Browser, companion: Companion, tmp_path: Path
) -> None:
    agent = await run_v2_client(live_server, browser, companion, tmp_path, negotiation="auto")
    [connected] = agent.of_type("connected")
    assert connected["protocol_version"] == MODERN, agent.report()
    assert connected["discover"]["supportedVersions"] == [MODERN]
    assert connected["discover"]["capabilities"]["extensions"] == {"io.modelcontextprotocol/tasks": {}}
    assert agent.of_type("tools")[0]["names"] == TOOLS
    [identity] = agent.of_type("identity")
    assert identity["result"]["structuredContent"]["issuer"] == live_server.base_url
    [delegation] = agent.of_type("delegation")
    approved = delegation["result"]["structuredContent"]
    assert approved["status"] == "approved", agent.report()
    await verify_delegation_token(live_server, approved["token"], "aud_test_payments")
    # Every authorized request was a 2026-07-28 one, and no session was ever minted or sent.
    requests = mcp_requests(agent)
    assert requests and {m["protocol_version"] for m in requests} == {MODERN}, requests
    assert not [m for m in requests if m["session"]], requests


@pytest.mark.requirement("TS-SDK-V2-2026", "MCP-2026-TASKS")
async def test_typescript_sdk_v2_polls_a_delegation_task_until_the_device_approves(
    live_server: LiveServer, browser: Browser, companion: Companion, tmp_path: Path
) -> None:
    agent = await run_v2_client(live_server, browser, companion, tmp_path, negotiation="auto", tasks=True)
    assert agent.of_type("connected")[0]["protocol_version"] == MODERN
    [created] = agent.of_type("task")
    task = created["result"]
    assert task["resultType"] == "task" and task["status"] == "working", task
    assert task["taskId"].startswith("vtk_") and 0 < task["pollIntervalMs"] <= 2000
    polls = [m["result"] for m in agent.of_type("poll")]
    assert polls and polls[-1]["status"] == "completed", polls
    # (The client's decoder consumes each poll's resultType, "complete"; the HTTP tests see it on the wire.)
    assert all(p["taskId"] == task["taskId"] for p in polls)
    assert all(p["status"] == "working" for p in polls[:-1])
    [delegation] = agent.of_type("delegation")
    result = delegation["result"]  # the completed task's result: the CallToolResult the blocking call gives
    assert result["resultType"] == "complete" and result["isError"] is False
    approved = result["structuredContent"]
    assert approved["status"] == "approved"
    await verify_delegation_token(live_server, approved["token"], "aud_test_payments")
    assert not [m for m in mcp_requests(agent) if m["session"]]


@pytest.mark.requirement("TS-SDK-V2-2026", "MCP-2026-DUAL-ERA")
async def test_typescript_sdk_v2_without_the_option_keeps_the_2025_handshake(
    live_server: LiveServer, browser: Browser, companion: Companion, tmp_path: Path
) -> None:
    agent = await run_v2_client(live_server, browser, companion, tmp_path, negotiation="default")
    assert agent.of_type("connected")[0]["protocol_version"] == "2025-11-25", agent.report()
    assert agent.of_type("delegation")[0]["result"]["structuredContent"]["status"] == "approved"
    assert {m["session"] for m in mcp_requests(agent)} - {None}, "a 2025 session was opened and used"
