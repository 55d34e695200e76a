"""Delegations end to end: the official MCP Python SDK client, authorized through QR pairing, calls the tools
over Streamable HTTP; the companion (its real CLI) approves or denies on the trusted device; the delegation
token verifies against the published JWKS, as an audience would check it."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from mcp.client.auth import OAuthClientProvider
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata

from e2e.harness import REPO, Browser, Companion, LiveServer, clean_environment, free_port, run_companion
from e2e.test_oauth_sdk_flow import MemoryTokenStorage, Person

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.postgres]  # on PostgreSQL too (e2e/conftest.py)

PAYMENTS = {
    "audienceId": "aud_test_payments",
    "purpose": "Identify the user before preparing a payment approval.",
    "scopes": ["payments.identity", "payments.prepare"],
}


@asynccontextmanager
async def agent(live_server: LiveServer, browser: Browser, companion: Companion) -> AsyncIterator[ClientSession]:
    """An MCP SDK session, authorized through the pairing page on first contact."""
    provider = OAuthClientProvider(
        server_url=live_server.mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="Vouchsim e2e agent",
            redirect_uris=[f"http://127.0.0.1:{free_port()}/callback"],  # type: ignore[list-item]
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=MemoryTokenStorage(),
        redirect_handler=(person := Person(browser, companion)).redirect_handler,
        callback_handler=person.callback_handler,
    )
    async with (
        httpx2.AsyncClient(auth=provider, timeout=httpx2.Timeout(60.0)) as http,
        streamable_http_client(live_server.mcp_url, http_client=http) as (read, write),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


@asynccontextmanager
async def watching(companion: Companion, *mode: str) -> AsyncIterator[list[str]]:
    """`vouchsim companion watch MODE --once` running beside the test; yields its stdout lines when done."""
    command = [
        sys.executable,
        "-m",
        "companion",
        "watch",
        *mode,
        "--once",
        "--timeout",
        "60",
        "--state",
        str(companion.state_dir),
    ]
    lines: list[str] = []
    async with await anyio.open_process(command, cwd=REPO, env=clean_environment()) as process:
        yield lines
        with anyio.fail_after(60):
            await process.wait()
        assert process.stdout is not None
        lines.extend((await process.stdout.receive()).decode().splitlines() if process.returncode == 0 else [])
        assert process.returncode == 0, process.returncode


def structured(result: Any) -> dict[str, Any]:
    assert not result.is_error, result.content
    content: dict[str, Any] = result.structured_content
    return content


async def verify_delegation_token(live_server: LiveServer, token: str, audience: str) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        keys = KeySet.import_key_set((await http.get(f"{live_server.base_url}/.well-known/jwks.json")).json())
    decoded = jwt.decode(token, keys, algorithms=["Ed25519", "EdDSA", "ES256"])
    claims = dict(decoded.claims)
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": live_server.base_url}, aud={"essential": True, "value": audience}
    ).validate(claims)
    return claims


@pytest.mark.requirement(
    "MCP-TRANSPORT-STREAMABLE-HTTP",
    "MCP-TOOLS-LIST",
    "MCP-TOOLS-CALL",
    "DELEGATION-APPROVE",
    "DELEGATION-TOKEN-JWKS",
    "DELEGATION-REVOKE",
)
async def test_agent_lists_tools_reads_identity_and_gets_an_approved_delegation(
    live_server: LiveServer, browser: Browser, companion: Companion
) -> None:
    async with agent(live_server, browser, companion) as session:
        tools = {tool.name for tool in (await session.list_tools()).tools}
        assert tools == {"identity_get", "delegation_request", "delegation_status", "delegation_revoke"}

        identity = structured(await session.call_tool("identity_get", {}))
        assert identity["issuer"] == live_server.base_url
        assert identity["subject"] and not identity["subject"].startswith("usr_")
        assert set(identity["scopes"]) >= {"identity", "delegation"}

        async with watching(companion, "--approve-all") as decisions:
            result = structured(await session.call_tool("delegation_request", PAYMENTS))
        assert any(line.startswith("approved ") for line in decisions), decisions
        assert result["status"] == "approved"
        assert result["bindingMessage"]
        claims = await verify_delegation_token(live_server, result["token"], "aud_test_payments")
        assert claims["scope"].split() == PAYMENTS["scopes"]
        assert claims["act"]["sub"] == identity["clientId"]
        assert claims["sub"] != identity["subject"]  # pairwise per audience, not per client
        assert claims["exp"] > claims["iat"] and claims["jti"]

        # The agent revokes it: status follows, and the token no longer introspects as active.
        revoked = structured(await session.call_tool("delegation_revoke", {"delegationId": result["delegationId"]}))
        assert revoked["status"] == "revoked"
        status = structured(await session.call_tool("delegation_status", {"delegationId": result["delegationId"]}))
        assert status["status"] == "revoked" and "token" not in status


@pytest.mark.requirement("DELEGATION-DENY")
async def test_denied_on_the_device(live_server: LiveServer, browser: Browser, companion: Companion) -> None:
    async with agent(live_server, browser, companion) as session:
        async with watching(companion, "--deny-all") as decisions:
            result = structured(await session.call_tool("delegation_request", PAYMENTS))
        assert any(line.startswith("denied ") for line in decisions), decisions
        assert result["status"] == "denied"
        assert "token" not in result


@pytest.mark.requirement("DELEGATION-WAIT-THEN-POLL", "DELEGATION-TOKEN-JWKS")
async def test_wait_budget_then_poll(live_server: LiveServer, browser: Browser, companion: Companion) -> None:
    async with agent(live_server, browser, companion) as session:
        pending = structured(await session.call_tool("delegation_request", {**PAYMENTS, "timeoutSeconds": 0.5}))
        assert pending["status"] == "pending"
        assert pending["pollIntervalSeconds"] > 0
        listed = await run_companion("pending", "--json", "--state", companion.state_dir)
        assert pending["delegationId"] in listed.stdout
        approved = await run_companion("approve", pending["delegationId"], "--state", companion.state_dir)
        assert approved.returncode == 0, approved.stderr
        status = structured(await session.call_tool("delegation_status", {"delegationId": pending["delegationId"]}))
        assert status["status"] == "approved"
        await verify_delegation_token(live_server, status["token"], "aud_test_payments")


@pytest.mark.requirement("MCP-TOOLS-CALL-ERROR")
async def test_scope_outside_the_audience_is_a_tool_error(
    live_server: LiveServer, browser: Browser, companion: Companion
) -> None:
    async with agent(live_server, browser, companion) as session:
        result = await session.call_tool("delegation_request", {**PAYMENTS, "scopes": ["payments.refund.all"]})
        assert result.is_error
        unknown = await session.call_tool("delegation_request", {**PAYMENTS, "audienceId": "aud_nobody"})
        assert unknown.is_error


@pytest.fixture(scope="module")
def short_lived_delegations(servers: Any) -> LiveServer:
    """A server whose delegations expire a second after they are asked for (started outside the event loop:
    on PostgreSQL it creates its database synchronously)."""
    server: LiveServer = servers.start({"VOUCHSIM_DELEGATION_TTL": "1"})
    return server


@pytest.mark.requirement("DELEGATION-EXPIRY")
async def test_an_unanswered_delegation_expires(short_lived_delegations: LiveServer, tmp_path: Any) -> None:
    server = short_lived_delegations
    async with (
        httpx.AsyncClient(base_url=server.base_url, timeout=30) as device_http,
        Browser(server.base_url, tmp_path) as browser,
    ):
        companion = await Companion.enrol(tmp_path / "companion", device_http)
        async with agent(server, browser, companion) as session:
            result = structured(await session.call_tool("delegation_request", {**PAYMENTS, "timeoutSeconds": 10}))
            assert result["status"] == "expired"
