"""MCP 2026-07-28 beside the 2025 versions, as the official MCP Python SDK 2.3.0 sees it over real HTTP: its
default negotiation (`Client(mode="auto")`: probe `server/discover`, fall back to `initialize` on any error but a
disjoint -32022) ends up modern here, through the whole OAuth and pairing flow, and calls every tool; `mode="legacy"`
still gets 2025-11-25; and `VOUCHSIM_MCP_VERSIONS` makes a legacy-only server (auto falls back to the handshake) or
a modern-only one (the handshake is refused with the specification's -32022, naming the versions offered)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import OAuthClientMetadata
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from e2e.harness import Browser, Companion, LiveServer, ServerFactory, free_port
from e2e.test_delegation_flow import PAYMENTS, structured, verify_delegation_token, watching
from e2e.test_oauth_sdk_flow import MemoryTokenStorage, Person

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

MODERN = "2026-07-28"


@dataclass
class Wire:
    """What crossed the wire to /mcp: the JSON-RPC method of each POST, and any session id the server minted."""

    methods: list[str] = field(default_factory=list)
    protocol_headers: list[str | None] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)

    async def request(self, request: httpx2.Request) -> None:
        if request.method == "POST" and request.url.path == "/mcp" and request.content:
            self.methods.append(json.loads(request.content).get("method", "(response)"))
            self.protocol_headers.append(request.headers.get("mcp-protocol-version"))

    async def response(self, response: httpx2.Response) -> None:
        if response.request.url.path == "/mcp" and "mcp-session-id" in response.headers:
            self.session_ids.append(response.headers["mcp-session-id"])


@asynccontextmanager
async def sdk_client(
    server: LiveServer, browser: Browser, companion: Companion, mode: str, wire: Wire | None = None
) -> AsyncIterator[Client]:
    """`mcp.client.Client` on Streamable HTTP, authorized through the pairing page on first contact."""
    person = Person(browser, companion)
    provider = OAuthClientProvider(
        server_url=server.mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name=f"Vouchsim e2e (MCP Python SDK, mode={mode})",
            redirect_uris=[f"http://127.0.0.1:{free_port()}/callback"],  # type: ignore[list-item]
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=MemoryTokenStorage(),
        redirect_handler=person.redirect_handler,
        callback_handler=person.callback_handler,
    )
    hooks: dict[str, list[Any]] = {"request": [wire.request], "response": [wire.response]} if wire else {}
    async with (
        httpx2.AsyncClient(auth=provider, timeout=httpx2.Timeout(60.0), event_hooks=hooks) as http,
        Client(streamable_http_client(server.mcp_url, http_client=http), mode=mode) as client,
    ):
        yield client


@pytest.fixture(scope="module")
def legacy_only(servers: ServerFactory) -> LiveServer:
    return servers.start({"VOUCHSIM_MCP_VERSIONS": "2025-11-25"})


@pytest.fixture(scope="module")
def modern_only(servers: ServerFactory) -> LiveServer:
    return servers.start({"VOUCHSIM_MCP_VERSIONS": MODERN})


@pytest.mark.requirement(
    "MCP-2026-DISCOVER",
    "MCP-2026-STATELESS",
    "MCP-2026-RESULT-TYPE",
    "MCP-TOOLS-CALL",
    "DELEGATION-APPROVE",
    "DELEGATION-TOKEN-JWKS",
)
async def test_auto_mode_ends_up_on_2026_and_calls_every_tool(
    live_server: LiveServer, browser: Browser, companion: Companion
) -> None:
    wire = Wire()
    async with sdk_client(live_server, browser, companion, "auto", wire) as client:
        assert client.protocol_version == MODERN
        assert client.server_info is not None and client.server_info.name == "vouchsim"
        assert client.instructions and "delegation_request" in client.instructions

        listed = await client.list_tools()
        assert [tool.name for tool in listed.tools] == [
            "identity_get",
            "delegation_request",
            "delegation_status",
            "delegation_revoke",
        ]
        identity = structured(await client.call_tool("identity_get", {}))
        assert identity["issuer"] == live_server.base_url

        async with watching(companion, "--approve-all") as decisions:
            approved = structured(await client.call_tool("delegation_request", PAYMENTS))
        assert any(line.startswith("approved ") for line in decisions), decisions
        assert approved["status"] == "approved"
        claims = await verify_delegation_token(live_server, approved["token"], "aud_test_payments")
        assert claims["act"]["sub"] == identity["clientId"]

        status = structured(await client.call_tool("delegation_status", {"delegationId": approved["delegationId"]}))
        assert status["status"] == "approved" and status["token"]
        revoked = structured(await client.call_tool("delegation_revoke", {"delegationId": approved["delegationId"]}))
        assert revoked["status"] == "revoked"

    # Stateless from the first request to the last: discover first, never initialize, never a session.
    assert wire.methods[0] == "server/discover"
    assert "initialize" not in wire.methods and "notifications/initialized" not in wire.methods
    assert set(wire.protocol_headers) == {MODERN}
    assert wire.session_ids == []


@pytest.mark.requirement("MCP-INITIALIZE", "MCP-2026-DUAL-ERA")
async def test_legacy_mode_still_gets_2025_11_25_with_a_session(
    live_server: LiveServer, browser: Browser, companion: Companion
) -> None:
    wire = Wire()
    async with sdk_client(live_server, browser, companion, "legacy", wire) as client:
        assert client.protocol_version == "2025-11-25"
        assert structured(await client.call_tool("identity_get", {}))["issuer"] == live_server.base_url
        with pytest.warns(MCPDeprecationWarning, match="ping is removed as of 2026-07-28"):
            await client.send_ping()  # removed in 2026-07-28, still there for a 2025 session
    assert wire.methods[0] == "initialize" and "server/discover" not in wire.methods
    assert len(set(wire.session_ids)) == 1


@pytest.mark.requirement("MCP-2026-VERSIONS-SETTING", "MCP-2026-DUAL-ERA")
async def test_against_a_legacy_only_server_auto_falls_back_to_the_handshake(
    legacy_only: LiveServer, tmp_path: Any
) -> None:
    async with companion_and_browser(legacy_only, tmp_path) as (companion, browser):
        wire = Wire()
        async with sdk_client(legacy_only, browser, companion, "auto", wire) as client:
            assert client.protocol_version == "2025-11-25"
            assert structured(await client.call_tool("identity_get", {}))["issuer"] == legacy_only.base_url
        # The probe was refused with a -32022 naming only 2025-11-25, so the SDK fell back.
        # (The probe is sent twice: first without a token, 401, then with it.)
        assert wire.methods[0] == "server/discover"
        assert next(method for method in wire.methods if method != "server/discover") == "initialize"
        async with (
            Browser(legacy_only.base_url, mkdir(tmp_path / "second")) as another_browser,
            sdk_client(legacy_only, another_browser, companion, "legacy") as client,
        ):
            assert client.protocol_version == "2025-11-25"


@pytest.mark.requirement("MCP-2026-VERSIONS-SETTING", "MCP-2026-UNSUPPORTED-VERSION")
async def test_against_a_modern_only_server_legacy_is_refused_with_the_specifications_error(
    modern_only: LiveServer, tmp_path: Any
) -> None:
    async with companion_and_browser(modern_only, tmp_path) as (companion, browser):
        async with sdk_client(modern_only, browser, companion, "auto") as client:
            assert client.protocol_version == MODERN
            assert structured(await client.call_tool("identity_get", {}))["issuer"] == modern_only.base_url
        with pytest.raises((MCPError, BaseExceptionGroup)) as raised:  # the SDK's task groups may wrap it
            async with (
                Browser(modern_only.base_url, mkdir(tmp_path / "second")) as another_browser,
                sdk_client(modern_only, another_browser, companion, "legacy"),
            ):
                pass
        refused = mcp_error_in(raised.value)
        assert refused.code == -32022
        assert refused.error.data == {"supported": [MODERN], "requested": "2025-11-25"}


@asynccontextmanager
async def companion_and_browser(server: LiveServer, tmp_path: Any) -> AsyncIterator[tuple[Companion, Browser]]:
    """A companion enrolled with `server` (not the module's default one) and a browser for its pages."""
    import httpx

    async with (
        httpx.AsyncClient(base_url=server.base_url, timeout=30) as device_http,
        Browser(server.base_url, tmp_path) as browser,
    ):
        yield await Companion.enrol(tmp_path / "companion", device_http), browser


def mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def mcp_error_in(error: BaseException) -> MCPError:
    """The MCPError inside whatever exception groups the SDK's task groups wrapped it in."""
    if isinstance(error, MCPError):
        return error
    if isinstance(error, BaseExceptionGroup):
        found = [mcp_error_in(inner) for inner in error.exceptions]
        if len(found) == 1:
            return found[0]
    raise AssertionError(f"not one MCPError: {error!r}") from error
