"""The official MCP Python SDK's OAuth client against a live server: discovery, dynamic registration,
authorization through the pairing page and the companion, the token exchange, with each token endpoint
authentication method the server offers; then the testbed's clock expires the access token and the SDK,
refused with 401 `invalid_token`, authorizes again by itself (the device pairing again after the clock move).
One test keeps a refresh driven by the `expires_in` the SDK was given (a short-lived token, waited out), and a
refresh the testbed refuses (`invalid_grant`), after which the SDK authorizes again.

The SDK is used as an agent would use it (`mcp.client.auth.OAuthClientProvider` on an `httpx2` client);
only the person is simulated: the redirect handler hands the authorization URL to the headless browser,
which pairs through the companion's CLI and returns where the page redirected.
"""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs

import anyio
import httpx
import httpx2
import msgspec
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
from vouchsim.companion.core.testbed import JournalEntry, TestbedClient

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

TESTBED_TOKEN = "e2e-testbed-token-of-the-sdk-flow"
TESTBED = {"VOUCHSIM_TESTBED": "1", "VOUCHSIM_TESTBED_TOKEN": TESTBED_TOKEN}
# The one test that waits real time: short enough to wait out, long enough for a request to use a new token.
SHORT_ACCESS_TOKEN_TTL = 2


@pytest.fixture(scope="module")
def live_server(servers: ServerFactory) -> LiveServer:
    """This module's server runs the testbed controls: the tests move its clock instead of waiting."""
    return servers.start(TESTBED)


@pytest.fixture(scope="module")
def short_lived_server(servers: ServerFactory) -> LiveServer:
    """A server whose access tokens expire within a test, for the SDK's own `expires_in` bookkeeping."""
    return servers.start({**TESTBED, "VOUCHSIM_ACCESS_TOKEN_TTL": str(SHORT_ACCESS_TOKEN_TTL)})


@asynccontextmanager
async def controls_of(server: LiveServer) -> AsyncIterator[TestbedClient]:
    async with TestbedClient.connect(server.base_url, TESTBED_TOKEN) as testbed:
        yield testbed


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
    """What sits behind the SDK's redirect and callback handlers: a browser and a trusted device.

    `fresh_browser`: every visit starts in a browser that is not signed in, so the device pairs each time
    (rather than the page offering "authorize with this session")."""

    def __init__(self, browser: Browser, companion: Companion, *, fresh_browser: bool = False) -> None:
        self.browser = browser
        self.companion = companion
        self.fresh_browser = fresh_browser
        self.authorization_urls: list[str] = []
        self.locations: list[str] = []
        self.pairing_codes: list[str] = []

    async def redirect_handler(self, authorization_url: str) -> None:
        self.authorization_urls.append(authorization_url)
        if self.fresh_browser:
            self.browser.http.cookies.clear()
        page, code = await self.browser.pair(authorization_url, self.companion)
        self.pairing_codes.append(code)
        response = await self.browser.submit_code(page, code)
        assert response.status_code == 303, f"{response.status_code}: {response.text}"
        self.locations.append(response.headers["location"])

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


def sdk_provider(
    server: LiveServer, person: Person, storage: MemoryTokenStorage, auth_method: str, redirect_uri: str
) -> OAuthClientProvider:
    return OAuthClientProvider(
        server_url=server.mcp_url,
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


def in_order(kinds: Sequence[str], expected: Sequence[str]) -> bool:
    """Whether `expected` appears in `kinds` in that order (others may come in between)."""
    remaining = iter(kinds)
    return all(any(kind == wanted for kind in remaining) for wanted in expected)


async def device_signatures(companion: Companion) -> list[str]:
    """Sign one device request with the companion's key, and return what a journal must never show of it."""
    from vouchsim.companion.core.client import DeviceApiClient
    from vouchsim.companion.core.keystore import Keystore

    sent: list[str] = []

    async def keep(request: httpx.Request) -> None:
        sent.extend([request.headers["vouch-signature"], request.headers["vouch-nonce"]])

    async with httpx.AsyncClient(base_url=companion.server_url, event_hooks={"request": [keep]}) as http:
        await DeviceApiClient(http, Keystore(companion.state_dir)).connections()
    return sent


def pairing_secrets(directory: Path) -> list[str]:
    """The pairing secrets of the QR images the browser saved (what the phone scanned)."""
    from vouchsim.companion.core.qr import decode_qr_file

    return [parse_qs(decode_qr_file(path).split("?", 1)[1])["secret"][0] for path in directory.glob("qr-*.png")]


def assert_journal_tells_the_story(entries: list[JournalEntry], secrets: list[str]) -> None:
    """discovery → register → authorize → pairing → token → mcp, each answered, and no secret anywhere."""
    kinds = [entry.kind for entry in entries]
    assert in_order(kinds, ["mcp", "discovery", "discovery", "register", "authorize", "pairing", "token", "mcp"]), kinds
    assert (entries[0].kind, entries[0].status) == ("mcp", 401)  # the first contact, without a token
    exchange = next(entry for entry in entries if entry.kind == "token")
    assert exchange.summary["grant_type"] == "authorization_code" and exchange.summary["code_verifier"] == "***"
    assert exchange.summary["resource"].endswith("/mcp") and exchange.status == 200
    text = msgspec.json.encode(entries).decode()
    found = [secret for secret in secrets if secret and secret in text]
    assert len(secrets) > 8 and not found, found


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
    "PAIRING-QR-APPROVE",
    "MCP-INITIALIZE",
    "TESTBED-CLOCK-TOKEN-EXPIRY",
    "TESTBED-CLOCK-DEVICE-SIGNATURES",
    "TESTBED-JOURNAL-FLOW",
    "TESTBED-JOURNAL-NO-SECRETS",
)
@pytest.mark.parametrize("auth_method", AUTH_METHODS)
async def test_mcp_python_sdk_authorizes_through_pairing_and_again_after_the_clock_expires_its_token(
    live_server: LiveServer, browser: Browser, companion: Companion, auth_method: str, tmp_path: Path
) -> None:
    redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
    storage = MemoryTokenStorage()
    person = Person(browser, companion, fresh_browser=True)
    provider = sdk_provider(live_server, person, storage, auth_method, redirect_uri)
    sent: list[SentRequest] = []

    async def record(request: httpx2.Request) -> None:
        sent.append(SentRequest(request.method, request.url.path, request.headers, form_of(request)))

    async with (
        controls_of(live_server) as testbed,
        httpx2.AsyncClient(auth=provider, timeout=30.0, event_hooks={"request": [record]}) as http,
    ):
        latest = await testbed.journal(limit=1)
        since = latest[-1].id if latest else 0
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
        assert first.expires_in == 3600

        # The clock moves past the access token's life: the server refuses it as expired (RFC 6750 §3.1) at once.
        moved = await testbed.advance(3601)
        assert moved.offset_seconds >= 3601
        async with httpx.AsyncClient(timeout=30.0) as plain:
            refused = await mcp_initialize(plain, live_server.mcp_url, first.access_token)
        assert refused.status_code == 401, refused.text
        assert www_authenticate(refused)["error"] == "invalid_token"
        if client.client_secret is not None:
            await assert_client_authentication_is_enforced(
                live_server, auth_method, client.client_id, client.client_secret, first.refresh_token
            )

        # The SDK's own clock says its token is fresh: it sends it, gets 401 invalid_token, and authorizes again
        # by itself; the device pairs again after the clock move (its signed requests are checked on real time).
        sent.clear()
        again = await http.post(live_server.mcp_url, json={**INITIALIZE, "id": 2}, headers=rpc_headers())
        assert again.status_code == 200, again.text
        assert sent[0].line == "POST /mcp" and sent[-1].line == "POST /mcp", sent
        exchanges = [request for request in sent if request.line == "POST /oauth/token"]
        assert [request.form["grant_type"] for request in exchanges] == ["authorization_code"], sent
        assert len(person.authorization_urls) == 2
        second = storage.tokens
        assert second is not None and second.access_token != first.access_token
        await testbed.reset_clock()

        entries = await testbed.journal(since=since)
    secrets = [
        value
        for request in [*sent, exchange]
        for name, value in request.form.items()
        if name in ("code", "code_verifier", "refresh_token", "client_secret")
    ]
    secrets += [first.access_token, first.refresh_token, second.access_token, second.refresh_token or ""]
    secrets += [client.client_secret or "", *[query_of(location)["code"] for location in person.locations]]
    secrets += pairing_secrets(tmp_path) + await device_signatures(companion) + person.pairing_codes
    assert_journal_tells_the_story(entries, secrets)

    # The companion sees the runtime connections it approved (one per pairing), used by this client.
    connections = await companion.api.connections()
    assert {c.client_id for c in connections} == {client.client_id}


@pytest.mark.requirement(
    "OAUTH-ACCESS-TOKEN-EXPIRY", "OAUTH-REFRESH-ROTATION", "TESTBED-FAULT-OAUTH-ERROR", "MCP-SDK-OAUTH-CLIENT"
)
async def test_the_sdk_refreshes_when_expires_in_runs_out_and_authorizes_again_when_the_refresh_is_refused(
    short_lived_server: LiveServer, tmp_path: Path
) -> None:
    """The one test that waits (twice SHORT_ACCESS_TOKEN_TTL seconds): only real time moves the SDK's own clock."""
    async with (
        httpx.AsyncClient(base_url=short_lived_server.base_url, timeout=30.0) as device_http,
        Browser(short_lived_server.base_url, tmp_path) as browser,
        controls_of(short_lived_server) as testbed,
    ):
        companion = await Companion.enrol(tmp_path / "companion", device_http)
        storage = MemoryTokenStorage()
        person = Person(browser, companion, fresh_browser=True)
        redirect_uri = f"http://127.0.0.1:{free_port()}/callback"
        provider = sdk_provider(short_lived_server, person, storage, "client_secret_basic", redirect_uri)
        sent: list[SentRequest] = []

        async def record(request: httpx2.Request) -> None:
            sent.append(SentRequest(request.method, request.url.path, request.headers, form_of(request)))

        async with httpx2.AsyncClient(auth=provider, timeout=30.0, event_hooks={"request": [record]}) as http:
            assert (await http.post(short_lived_server.mcp_url, json=INITIALIZE, headers=rpc_headers())).is_success
            first = storage.tokens
            assert first is not None and first.expires_in == SHORT_ACCESS_TOKEN_TTL
            client = storage.client_info
            assert client is not None and client.client_secret

            # The SDK sees the expiry itself and refreshes before its next request, authenticating as registered.
            await anyio.sleep(SHORT_ACCESS_TOKEN_TTL + 0.5)
            sent.clear()
            again = await http.post(short_lived_server.mcp_url, json={**INITIALIZE, "id": 2}, headers=rpc_headers())
            assert again.status_code == 200, again.text
            assert [request.line for request in sent] == ["POST /oauth/token", "POST /mcp"], sent
            assert sent[0].form["grant_type"] == "refresh_token"
            assert_client_authentication(sent[0], "client_secret_basic", client.client_id, client.client_secret)
            second = storage.tokens
            assert second is not None and second.access_token != first.access_token
            assert second.refresh_token and second.refresh_token != first.refresh_token  # rotated
            assert len(person.authorization_urls) == 1  # no second visit to the authorization page

            # Its next refresh is refused (invalid_grant): the SDK drops its tokens and authorizes again.
            async with testbed.fault(
                match={"kind": "token", "grant_type": "refresh_token"},
                action={"status": 400, "error": "invalid_grant", "error_description": "Refused by the test."},
            ) as fault:
                await anyio.sleep(SHORT_ACCESS_TOKEN_TTL + 0.5)
                sent.clear()
                third = await http.post(short_lived_server.mcp_url, json={**INITIALIZE, "id": 3}, headers=rpc_headers())
                assert third.status_code == 200, third.text
            assert sent[0].line == "POST /oauth/token" and sent[0].form["grant_type"] == "refresh_token", sent
            assert [r.form.get("grant_type") for r in sent if r.line == "POST /oauth/token"][-1] == "authorization_code"
            assert len(person.authorization_urls) == 2
            refused = [entry for entry in await testbed.journal(kind="token") if entry.fault == fault.id]
            assert [(entry.status, entry.summary["error"]) for entry in refused] == [(400, "invalid_grant")]
