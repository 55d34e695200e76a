"""2026-07-28 on the wire of a real server (uvicorn, a real socket): a client that hangs up cancels its waiting
call, whether the reply would have been JSON or an SSE stream (basic/transports/streamable-http, "Cancellation")."""

from __future__ import annotations

import json
from typing import Any

import anyio
import httpx
import pytest

from e2e.harness import Browser, Companion, LiveServer
from e2e.test_delegation_flow import PAYMENTS
from e2e.test_oauth_negative_flows import authorize, tokens_for

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.postgres]  # on PostgreSQL too (e2e/conftest.py)

MODERN = "2026-07-28"
META = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {},
    "io.modelcontextprotocol/clientInfo": {"name": "vouchsim-e2e", "version": "0"},
}


def modern_call(name: str, arguments: dict[str, Any], **meta: Any) -> dict[str, Any]:
    params = {"name": name, "arguments": arguments, "_meta": {**META, **meta}}
    return {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params}


def headers(token: str, name: str, accept: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": accept,
        "MCP-Protocol-Version": MODERN,
        "Mcp-Method": "tools/call",
        "Mcp-Name": name,
    }


async def logged(server: LiveServer, since: int, line: str) -> None:
    """The server's log shows `line` within 15 s (it is another process: its log is what can be watched)."""
    with anyio.fail_after(15):
        while True:
            if line in server.log(since):
                return
            await anyio.sleep(0.1)


@pytest.mark.requirement("MCP-2026-CANCEL-ON-DISCONNECT")
async def test_a_client_that_hangs_up_cancels_its_waiting_call(
    live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, companion: Companion
) -> None:
    token = (
        await tokens_for(http, live_server.base_url, await authorize(http, live_server.base_url, browser, companion))
    )["access_token"]
    waiting = {**PAYMENTS, "timeoutSeconds": 45}

    # A JSON reply (no progress token): the client gives up after a second and closes the connection.
    since = live_server.log_size()
    async with httpx.AsyncClient(timeout=httpx.Timeout(30.0, read=1.0)) as impatient:
        with pytest.raises(httpx.ReadTimeout):
            await impatient.post(
                live_server.mcp_url,
                json=modern_call("delegation_request", waiting),
                headers=headers(token, "delegation_request", "application/json"),
            )
    await logged(live_server, since, "MCP client went away; its waiting call is cancelled")

    # An SSE reply: the first progress event arrives, then the client closes the stream.
    since = live_server.log_size()
    async with (
        httpx.AsyncClient(timeout=30.0) as streaming,
        streaming.stream(
            "POST",
            live_server.mcp_url,
            json=modern_call("delegation_request", waiting, progressToken="p"),
            headers=headers(token, "delegation_request", "application/json, text/event-stream"),
        ) as response,
    ):
        assert response.headers["content-type"].startswith("text/event-stream")
        assert "mcp-session-id" not in response.headers
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                assert json.loads(line.removeprefix("data: "))["method"] == "notifications/progress"
                break
    await logged(live_server, since, "MCP client went away; its streamed call is cancelled")
