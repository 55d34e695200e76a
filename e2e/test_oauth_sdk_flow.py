"""The official MCP Python SDK's OAuth client against a live server: discovery, dynamic registration,
authorization through the pairing page and the companion, the token exchange, and a refresh.

The SDK is used as an agent would use it (`mcp.client.auth.OAuthClientProvider` on an `httpx2` client);
only the person is simulated: the redirect handler hands the authorization URL to the headless browser,
which pairs through the companion's CLI and returns where the page redirected.
"""

from __future__ import annotations

import time

import httpx2
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from e2e.harness import INITIALIZE, Browser, Companion, LiveServer, free_port, query_of

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


class MemoryTokenStorage:
    """The SDK's TokenStorage protocol, in memory, remembering every token set it was given."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None
        self.history: list[OAuthToken] = []

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens
        self.history.append(tokens)

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


class Person:
    """What sits behind the SDK's redirect and callback handlers: a browser and a trusted device."""

    def __init__(self, browser: Browser, companion: Companion) -> None:
        self.browser = browser
        self.companion = companion
        self.authorization_urls: list[str] = []
        self.locations: list[str] = []

    async def redirect_handler(self, authorization_url: str) -> None:
        self.authorization_urls.append(authorization_url)
        self.locations.append(await self.browser.authorize(authorization_url, self.companion))

    async def callback_handler(self) -> AuthorizationCodeResult:
        params = query_of(self.locations[-1])
        assert "error" not in params, params
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))


def rpc_headers() -> dict[str, str]:
    return {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}


@pytest.mark.requirement(
    "MCP-SDK-OAUTH-CLIENT",
    "OAUTH-CHALLENGE",
    "OAUTH-DISCOVERY-PRM",
    "OAUTH-DISCOVERY-AS",
    "OAUTH-DCR-PUBLIC",
    "OAUTH-AUTHZ-CODE-RESPONSE",
    "OAUTH-PKCE-S256",
    "OAUTH-RESOURCE-INDICATOR",
    "OAUTH-ISS-RESPONSE",
    "OAUTH-LOOPBACK-REDIRECT",
    "OAUTH-REFRESH-ROTATION",
    "PAIRING-QR-APPROVE",
    "MCP-INITIALIZE",
)
async def test_mcp_python_sdk_authorizes_through_pairing_and_refreshes(
    live_server: LiveServer, browser: Browser, companion: Companion
) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    storage = MemoryTokenStorage()
    person = Person(browser, companion)
    provider = OAuthClientProvider(
        server_url=live_server.mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name="Vouchsim e2e (MCP Python SDK)",
            redirect_uris=[redirect_uri],  # type: ignore[list-item]  # pydantic parses the str
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",
        ),
        storage=storage,
        redirect_handler=person.redirect_handler,
        callback_handler=person.callback_handler,
    )
    sent: list[str] = []

    async def record(request: httpx2.Request) -> None:
        sent.append(f"{request.method} {request.url.path}")

    async with httpx2.AsyncClient(auth=provider, timeout=30.0, event_hooks={"request": [record]}) as http:
        response = await http.post(live_server.mcp_url, json=INITIALIZE, headers=rpc_headers())
        assert response.status_code == 200, response.text
        assert response.json()["result"]["protocolVersion"]

        # The whole OAuth dance happened, in order, through the endpoints the server advertises.
        assert sent == [
            "POST /mcp",  # 401 with the RFC 9728 challenge
            "GET /.well-known/oauth-protected-resource/mcp",
            "GET /.well-known/oauth-authorization-server",
            "POST /oauth/register",
            "POST /oauth/token",
            "POST /mcp",  # retried with the bearer token
        ], sent
        assert len(person.authorization_urls) == 1
        authorization = query_of(person.authorization_urls[0])
        assert authorization["code_challenge_method"] == "S256"
        assert authorization["resource"] == live_server.mcp_url
        assert authorization["redirect_uri"] == redirect_uri
        redirect = query_of(person.locations[0])
        assert person.locations[0].startswith(redirect_uri + "?")
        assert redirect["iss"] == live_server.base_url
        assert redirect["state"] == authorization["state"]

        assert storage.client_info is not None
        assert storage.client_info.client_id == authorization["client_id"]
        assert storage.client_info.client_secret is None
        first = storage.tokens
        assert first is not None and first.access_token and first.refresh_token
        # The SDK asks for the challenged scopes plus offline_access (it wants refresh tokens): all granted.
        assert first.scope is not None
        assert set(first.scope.split()) == set(authorization["scope"].split()) >= {"identity", "delegation"}
        assert first.expires_in and first.expires_in > 0

        # Force a refresh: the SDK thinks the access token has expired.
        provider.context.token_expiry_time = time.time() - 1
        sent.clear()
        again = await http.post(live_server.mcp_url, json={**INITIALIZE, "id": 2}, headers=rpc_headers())
        assert again.status_code == 200, again.text
        assert sent == ["POST /oauth/token", "POST /mcp"], sent
        second = storage.tokens
        assert second is not None and second is not first
        assert second.access_token != first.access_token
        assert second.refresh_token and second.refresh_token != first.refresh_token  # rotated
        assert len(storage.history) == 2
        assert len(person.authorization_urls) == 1  # no second visit to the authorization page

    # The companion sees the runtime connection it approved, used by this client.
    connections = await companion.api.connections()
    assert [c.client_id for c in connections] == [storage.client_info.client_id]
    assert connections[0].revoked_at is None
