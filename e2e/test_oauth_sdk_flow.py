"""The official MCP Python SDK's OAuth client against a live server: discovery, dynamic registration,
authorization through the pairing page and the companion, the token exchange, and a refresh once the access
token has really expired, with each token endpoint authentication method the server offers.

The SDK is used as an agent would use it (`mcp.client.auth.OAuthClientProvider` on an `httpx2` client);
only the person is simulated: the redirect handler hands the authorization URL to the headless browser,
which pairs through the companion's CLI and returns where the page redirected.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from urllib.parse import parse_qs

import anyio
import httpx
import httpx2
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthToken,
)

from e2e.harness import (
    INITIALIZE,
    Browser,
    Companion,
    LiveServer,
    ServerFactory,
    free_port,
    mcp_initialize,
    query_of,
    www_authenticate,
)

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

# Short enough to wait out in a test, long enough for the SDK's retried request to use the new token at once.
ACCESS_TOKEN_TTL = 3


@pytest.fixture(scope="module")
def live_server(servers: ServerFactory) -> LiveServer:
    """This module's server issues access tokens that expire within the test."""
    return servers.start({"VOUCHSIM_ACCESS_TOKEN_TTL": str(ACCESS_TOKEN_TTL)})


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


@dataclass(frozen=True)
class SentRequest:
    method: str
    path: str
    headers: httpx2.Headers
    form: dict[str, str]

    @property
    def line(self) -> str:
        return f"{self.method} {self.path}"


def form_of(request: httpx2.Request) -> dict[str, str]:
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {name: values[0] for name, values in parse_qs(request.content.decode()).items()}
    return {}


def assert_client_authentication(request: SentRequest, method: str, client_id: str, secret: str | None) -> None:
    """The token request authenticated the client the way it registered (RFC 6749 §2.3.1), and only that way."""
    if method == "client_secret_basic":
        assert secret is not None
        expected = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        assert request.headers.get("authorization") == f"Basic {expected}"
        assert "client_secret" not in request.form
    elif method == "client_secret_post":
        assert request.form["client_id"] == client_id and request.form["client_secret"] == secret
        assert "authorization" not in request.headers
    else:
        assert request.form["client_id"] == client_id
        assert "client_secret" not in request.form and "authorization" not in request.headers


async def assert_client_authentication_is_enforced(
    live_server: LiveServer, method: str, client_id: str, secret: str, refresh_token: str
) -> None:
    """A wrong secret, or the right secret sent by the method the client did not register, is invalid_client;
    neither attempt uses up the refresh token (the SDK's refresh afterwards proves it)."""
    other = "client_secret_post" if method == "client_secret_basic" else "client_secret_basic"
    attempts = {f"{method} with a wrong secret": (method, secret[::-1]), f"{other} instead": (other, secret)}
    async with httpx.AsyncClient(timeout=30.0) as http:
        for attempt, (used, sent_secret) in attempts.items():
            data = {"grant_type": "refresh_token", "refresh_token": refresh_token}
            headers = {}
            if used == "client_secret_basic":
                credentials = base64.b64encode(f"{client_id}:{sent_secret}".encode()).decode()
                headers["Authorization"] = f"Basic {credentials}"
            else:
                data |= {"client_id": client_id, "client_secret": sent_secret}
            response = await http.post(f"{live_server.base_url}/oauth/token", data=data, headers=headers)
            assert response.status_code == 401, (attempt, response.text)
            assert response.json()["error"] == "invalid_client", (attempt, response.text)


AUTH_METHODS = [
    pytest.param("none", marks=pytest.mark.requirement("OAUTH-DCR-PUBLIC"), id="none"),
    pytest.param("client_secret_post", marks=pytest.mark.requirement("OAUTH-DCR-CONFIDENTIAL"), id="secret-post"),
    pytest.param("client_secret_basic", marks=pytest.mark.requirement("OAUTH-DCR-CONFIDENTIAL"), id="secret-basic"),
]


@pytest.mark.requirement(
    "MCP-SDK-OAUTH-CLIENT",
    "OAUTH-CHALLENGE",
    "OAUTH-DISCOVERY-PRM",
    "OAUTH-DISCOVERY-AS",
    "OAUTH-AUTHZ-CODE-RESPONSE",
    "OAUTH-PKCE-S256",
    "OAUTH-RESOURCE-INDICATOR",
    "OAUTH-ISS-RESPONSE",
    "OAUTH-LOOPBACK-REDIRECT",
    "OAUTH-ACCESS-TOKEN-EXPIRY",
    "OAUTH-REFRESH-ROTATION",
    "PAIRING-QR-APPROVE",
    "MCP-INITIALIZE",
)
@pytest.mark.parametrize("auth_method", AUTH_METHODS)
async def test_mcp_python_sdk_authorizes_through_pairing_and_refreshes_after_expiry(
    live_server: LiveServer, browser: Browser, companion: Companion, auth_method: str
) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    storage = MemoryTokenStorage()
    person = Person(browser, companion)
    provider = OAuthClientProvider(
        server_url=live_server.mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name=f"Vouchsim e2e (MCP Python SDK, {auth_method})",
            redirect_uris=[redirect_uri],  # type: ignore[list-item]  # pydantic parses the str
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method=auth_method,  # type: ignore[arg-type]  # one of the SDK's literals
        ),
        storage=storage,
        redirect_handler=person.redirect_handler,
        callback_handler=person.callback_handler,
    )
    sent: list[SentRequest] = []

    async def record(request: httpx2.Request) -> None:
        sent.append(SentRequest(request.method, request.url.path, request.headers, form_of(request)))

    async with httpx2.AsyncClient(auth=provider, timeout=30.0, event_hooks={"request": [record]}) as http:
        response = await http.post(live_server.mcp_url, json=INITIALIZE, headers=rpc_headers())
        assert response.status_code == 200, response.text
        assert response.json()["result"]["protocolVersion"]

        # The whole OAuth dance happened, in order, through the endpoints the server advertises.
        assert [request.line for request in sent] == [
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

        # Registered as asked: a secret exactly when the method needs one, and the code exchange used it.
        client = storage.client_info
        assert client is not None and client.client_id == authorization["client_id"]
        assert client.token_endpoint_auth_method == auth_method
        if auth_method == "none":
            assert client.client_secret is None
        else:
            assert client.client_secret and len(client.client_secret) >= 32
        exchange = sent[4]
        assert exchange.form["grant_type"] == "authorization_code"
        assert_client_authentication(exchange, auth_method, client.client_id, client.client_secret)

        first = storage.tokens
        assert first is not None and first.access_token and first.refresh_token
        # The SDK asks for the challenged scopes plus offline_access (it wants refresh tokens): all granted.
        assert first.scope is not None
        assert set(first.scope.split()) == set(authorization["scope"].split()) >= {"identity", "delegation"}
        assert first.expires_in == ACCESS_TOKEN_TTL

        # Wait the access token out: the server now refuses it as an expired token (RFC 6750 §3.1).
        await anyio.sleep(ACCESS_TOKEN_TTL + 1)
        async with httpx.AsyncClient(timeout=30.0) as plain:
            refused = await mcp_initialize(plain, live_server.mcp_url, first.access_token)
        assert refused.status_code == 401, refused.text
        assert www_authenticate(refused)["error"] == "invalid_token"
        if client.client_secret is not None:
            await assert_client_authentication_is_enforced(
                live_server, auth_method, client.client_id, client.client_secret, first.refresh_token
            )

        # The SDK sees the expiry itself and refreshes before its next request, authenticating as registered.
        sent.clear()
        again = await http.post(live_server.mcp_url, json={**INITIALIZE, "id": 2}, headers=rpc_headers())
        assert again.status_code == 200, again.text
        assert [request.line for request in sent] == ["POST /oauth/token", "POST /mcp"], sent
        assert sent[0].form["grant_type"] == "refresh_token"
        assert_client_authentication(sent[0], auth_method, client.client_id, client.client_secret)
        second = storage.tokens
        assert second is not None and second is not first
        assert second.access_token != first.access_token
        assert second.refresh_token and second.refresh_token != first.refresh_token  # rotated
        assert second.expires_in == ACCESS_TOKEN_TTL
        assert len(storage.history) == 2
        assert len(person.authorization_urls) == 1  # no second visit to the authorization page

    # The companion sees the runtime connection it approved, used by this client.
    connections = await companion.api.connections()
    assert [c.client_id for c in connections] == [client.client_id]
    assert connections[0].revoked_at is None
