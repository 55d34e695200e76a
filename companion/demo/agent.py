"""The demo's scripted agent: a real MCP client (the official Python SDK over Streamable HTTP) that gets
authorized through the pairing page, reads the user's identity, asks for a delegation and shows the
delegation token's claims. Each step is reported through `on_step(text)`; nothing here knows Textual.

The SDK does discovery, registration, PKCE and the token exchange itself. Its `redirect_handler` is the
person's browser, played with httpx: open the authorization URL, follow it to the pairing page, save the
page's QR into the companion's camera folder (with the page's cookie, as a browser would fetch it), wait
for the pairing code (typed by the person, or in `--auto` taken from the companion's own pairing result),
and post it with the page's CSRF field. The 303 that answers is where a browser would go next: its
`code`, `state` and `iss` go back to the SDK through the `callback_handler`.

A person can get it wrong, and the browser lets them try again as a real one does: a refused code is reported in
the page's own words and the next one is asked for; a page that can take no more codes (the pairing was declined,
so the page sends the browser back with `access_denied`; or it expired, or was burnt) is reported too, and the
browser opens the authorization URL again when the person asks for a new pairing (the code source returns None).

The protocol version is the SDK's to negotiate: by default (`Client(mode="auto")`) it probes `server/discover` and
speaks 2026-07-28 statelessly; `protocol="legacy"` (`--protocol legacy`) forces the 2025 `initialize` handshake.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import httpx2
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet
from mcp.client.auth import OAuthClientProvider
from mcp.client.client import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.auth import AuthorizationCodeResult, OAuthClientInformationFull, OAuthClientMetadata, OAuthToken
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from vouchsim.companion.core.authorization import PageParser
from vouchsim.companion.server_process import free_port

StepReporter = Callable[[str], None]


@dataclass(frozen=True)
class CodeRequest:
    """Why the browser asks for a (next) pairing code: `problem` says, in the page's words, why the last one did
    not get through; `closed` means the page can take no more codes, and only a new pairing helps."""

    problem: str = ""
    closed: bool = False


# The pairing code to type, or None to open the authorization URL again (a new pairing, a new QR).
CodeSource = Callable[[CodeRequest], Awaitable[str | None]]

CLIENT_NAME: Final = "Vouchsim demo agent"
PROTOCOLS: Final = ("auto", "legacy")  # the SDK's negotiation modes the demo offers (`--protocol`)
HTTP_TIMEOUT: Final = 60.0  # longer than a delegation wait budget (at most 50 s)
WAIT_SECONDS: Final = 50
PAYMENTS: Final[dict[str, Any]] = {
    "audienceId": "aud_test_payments",
    "purpose": "Identify the user before preparing a payment approval.",
    "scopes": ["payments.identity", "payments.prepare"],
}
CLAIM_ORDER: Final = ("iss", "sub", "aud", "scope", "act", "delegation_id", "jti", "iat", "nbf", "exp")
# What the SDK's own requests are for, by path prefix (shown as it makes them).
LABELS: Final = (
    ("/.well-known/oauth-protected-resource", "discovery: protected resource metadata (RFC 9728)"),
    ("/.well-known/oauth-authorization-server", "discovery: authorization server metadata (RFC 8414)"),
    ("/.well-known/openid-configuration", "discovery: authorization server metadata (OIDC)"),
    ("/oauth/register", "dynamic client registration (RFC 7591)"),
    ("/oauth/token", "token request (authorization code + PKCE)"),
)


class AgentError(Exception):
    """The agent could not finish; the message says at which step and why."""


@dataclass(frozen=True)
class AgentResult:
    identity: dict[str, Any]
    delegation: dict[str, Any]
    claims: dict[str, Any] | None  # verified claims of the delegation token; None when it was not approved

    @property
    def approved(self) -> bool:
        return self.claims is not None


class _MemoryTokenStorage:
    """The SDK's TokenStorage protocol, in memory: the demo's agent starts fresh every time."""

    def __init__(self) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info: OAuthClientInformationFull | None = None

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


@dataclass
class _PairingPage:
    url: str
    qr_url: str
    action: str
    fields: dict[str, str]
    alerts: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, url: str, html: str) -> _PairingPage:
        parser = PageParser()
        parser.feed(html)
        qr = [src for src in parser.images if src.endswith("/qr.png")]
        forms = [(action, fields) for action, fields in parser.forms if "code" in fields]
        if not qr or not forms:
            raise AgentError(f"The page at {url} is not a pairing page (no QR or no code field).")
        action, fields = forms[0]
        return cls(url, urljoin(url, qr[0]), urljoin(url, action), fields, parser.alerts)


class _Browser:
    """The person's browser, for the SDK's redirect and callback handlers."""

    def __init__(self, camera_dir: Path, pairing_code: CodeSource, on_step: StepReporter) -> None:
        self._camera_dir = camera_dir
        self._pairing_code = pairing_code
        self._step = on_step
        self._http = httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False)
        self._location: str | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def redirect_handler(self, authorization_url: str) -> None:
        self._step(f"Browser: opening the authorization page ({_path(authorization_url)})")
        while True:
            page = await self._open(authorization_url)
            location = await self._type_codes(page)
            if location is not None:
                self._location = location
                self._step(f"Browser: redirected back to the agent ({_path(location, query=False)})")
                return
            self._step("Browser: opening the authorization URL again, for a new pairing")

    async def _open(self, authorization_url: str) -> _PairingPage:
        """The pairing page of a fresh visit, its QR saved into the camera folder."""
        response = await self._http.get(authorization_url)
        if response.status_code != 303:
            raise AgentError(f"The authorization endpoint answered {response.status_code}, not a redirect.")
        page_url = urljoin(authorization_url, response.headers["location"])
        page = _PairingPage.parse(page_url, (await self._http.get(page_url)).text)
        self._step("Browser: the pairing page shows a QR code and asks for the pairing code")
        qr = await self._http.get(page.qr_url)  # the page's cookie goes with it, as from a browser
        if qr.status_code != 200:
            raise AgentError(f"The QR image answered {qr.status_code}.")
        path = _drop(self._camera_dir, qr.content)
        self._step(f"Browser: QR saved into the companion's camera folder ({path.name})")
        return page

    async def _type_codes(self, page: _PairingPage) -> str | None:
        """Codes as the person types them, until one takes the browser back to the agent with an authorization
        code (that URL), or the person asks for a new pairing (None)."""
        request = CodeRequest()
        while True:
            self._step(
                "Browser: the page can take no more codes"
                if request.closed
                else "Browser: waiting for the pairing code the companion shows…"
            )
            code = await self._pairing_code(request)
            if code is None:
                if not request.closed:
                    await self._look_again(page)  # what the page says now (declined, expired), as a reload would
                return None
            if request.closed:
                request = CodeRequest(f"{request.problem} (no code can help now)", closed=True)
                continue
            self._step(f"Browser: typing the pairing code {code.strip()} and submitting")
            answer = await self._http.post(page.action, data={**page.fields, "code": code.strip()})
            if answer.status_code == 303:
                location = urljoin(page.action, answer.headers["location"])
                refusal = _refusal(location)
                if refusal is None:
                    return location
                self._step(f"Browser: the page sent the browser back to the agent with {refusal}")
                request = CodeRequest(refusal, closed=True)
                continue
            if answer.status_code >= 500:
                raise AgentError(f"The pairing page answered HTTP {answer.status_code}.")
            reason, refused = _page_problem(page.url, answer)
            self._step(f"Browser: the page refused the code: {reason}")
            if refused is None:
                request = CodeRequest(reason, closed=True)
                continue
            page, request = refused, CodeRequest(reason)

    async def _look_again(self, page: _PairingPage) -> None:
        response = await self._http.get(page.url)
        if response.status_code == 303:
            refusal = _refusal(urljoin(page.url, response.headers["location"]))
            if refusal is not None:
                self._step(f"Browser: the page now sends the browser back to the agent with {refusal}")
        elif response.status_code < 500:
            reason, still_open = _page_problem(page.url, response)
            if still_open is None and reason:
                self._step(f"Browser: the page now says: {reason}")

    async def callback_handler(self) -> AuthorizationCodeResult:
        if self._location is None:
            raise AgentError("The browser never came back from the authorization page.")
        params = {name: values[0] for name, values in parse_qs(urlsplit(self._location).query).items()}
        if "error" in params:
            raise AgentError(f"Authorization refused: {params['error']} {params.get('error_description', '')}".strip())
        self._step("Agent: got an authorization code; the SDK exchanges it for tokens")
        return AuthorizationCodeResult(code=params["code"], state=params.get("state"), iss=params.get("iss"))


async def run_agent(
    server_url: str, camera_dir: Path, *, pairing_code: CodeSource, on_step: StepReporter, protocol: str = "auto"
) -> AgentResult:
    """The whole script. Raises AgentError (or an SDK/HTTP error) when a step fails. `protocol`: the SDK's
    negotiation mode, "auto" (its default) or "legacy"."""
    if protocol not in PROTOCOLS:
        raise AgentError(f"protocol must be one of {', '.join(PROTOCOLS)}, not {protocol!r}")
    mcp_url = f"{server_url.rstrip('/')}/mcp"
    browser = _Browser(camera_dir, pairing_code, on_step)

    async def show(response: httpx2.Response) -> None:
        path = response.request.url.path
        label = next((text for prefix, text in LABELS if path.startswith(prefix)), None)
        if label is not None:
            on_step(f"HTTP {response.request.method} {path} → {response.status_code}: {label}")
        elif path == "/mcp" and response.status_code == 401:
            on_step("HTTP POST /mcp → 401: the server asks for a token (WWW-Authenticate names its metadata)")

    provider = OAuthClientProvider(
        server_url=mcp_url,
        client_metadata=OAuthClientMetadata(
            client_name=CLIENT_NAME,
            redirect_uris=[f"http://127.0.0.1:{free_port()}/callback"],  # type: ignore[list-item]  # parsed
            grant_types=["authorization_code", "refresh_token"],
            response_types=["code"],
            token_endpoint_auth_method="none",  # noqa: S106  # a public client: no secret
        ),
        storage=_MemoryTokenStorage(),
        redirect_handler=browser.redirect_handler,
        callback_handler=browser.callback_handler,
    )
    negotiation = "its default negotiation" if protocol == "auto" else "the 2025 initialize handshake (forced)"
    on_step(f"Agent: connecting to {mcp_url} with the MCP Python SDK, {negotiation}")
    try:
        async with (
            httpx2.AsyncClient(
                auth=provider, timeout=httpx2.Timeout(HTTP_TIMEOUT), event_hooks={"response": [show]}
            ) as http,
            Client(streamable_http_client(mcp_url, http_client=http), mode=protocol) as session,
        ):
            on_step(f"Agent: connected; protocol {session.protocol_version} ({_era(session.protocol_version)})")
            identity = _structured(await session.call_tool("identity_get", {}), "identity_get")
            on_step(f"Agent: identity_get → subject {identity.get('subject')} (scopes {identity.get('scopes')})")
            delegation = await _delegate(session, on_step)
    finally:
        await browser.aclose()
    if delegation.get("status") != "approved":
        on_step(f"Agent: the delegation ended {delegation.get('status')}: no token")
        return AgentResult(identity, delegation, None)
    claims = await _verify(server_url, str(delegation["token"]), on_step)
    return AgentResult(identity, delegation, claims)


def _era(version: str) -> str:
    if version in MODERN_PROTOCOL_VERSIONS:
        return "stateless: server/discover, no session"
    return "initialize handshake, Mcp-Session-Id session"


async def _delegate(session: Client, on_step: StepReporter) -> dict[str, Any]:
    """Ask without waiting (to show the binding message first), then wait for the device's decision."""
    scopes = " ".join(PAYMENTS["scopes"])
    on_step(f"Agent: delegation_request → {PAYMENTS['audienceId']} ({scopes})")
    delegation = _structured(
        await session.call_tool("delegation_request", {**PAYMENTS, "waitForApproval": False}), "delegation_request"
    )
    on_step(
        f"Agent: waiting for the person's decision on the companion; "
        f"binding message: {delegation.get('bindingMessage')}"
    )
    while delegation.get("status") == "pending":
        arguments = {
            "delegationId": delegation["delegationId"],
            "waitForApproval": True,
            "timeoutSeconds": WAIT_SECONDS,
        }
        delegation = _structured(await session.call_tool("delegation_status", arguments), "delegation_status")
    on_step(f"Agent: the delegation is {delegation.get('status')}")
    return delegation


async def _verify(server_url: str, token: str, on_step: StepReporter) -> dict[str, Any]:
    """Show the token's claims (decoded), then check them as the audience would, against the JWKS."""
    header = _segment(token, 0)
    on_step(f"Agent: delegation token (JWT, alg {header.get('alg')}, kid {header.get('kid')}); claims:")
    for name, value in sorted(_segment(token, 1).items(), key=lambda item: _claim_rank(item[0])):
        on_step(f"    {name}: {json.dumps(value, ensure_ascii=False)}")
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        response = await http.get(f"{server_url}/.well-known/jwks.json")
    try:
        keys = KeySet.import_key_set(response.json())
        decoded = jwt.decode(token, keys, algorithms=["Ed25519", "EdDSA"])
        claims = dict(decoded.claims)
        jwt.JWTClaimsRegistry(iss={"essential": True, "value": server_url}).validate(claims)
    except (JoseError, ValueError) as exc:
        raise AgentError(f"The delegation token does not verify against the JWKS: {exc}") from exc
    on_step(f"Agent: signature and issuer verified against {server_url}/.well-known/jwks.json")
    return claims


def _structured(result: Any, tool: str) -> dict[str, Any]:
    if getattr(result, "is_error", False):
        text = " ".join(getattr(part, "text", "") for part in getattr(result, "content", []))
        raise AgentError(f"{tool} failed: {text or 'no reason given'}")
    content = getattr(result, "structured_content", None)
    if not isinstance(content, dict):
        raise AgentError(f"{tool} returned no structured content.")
    return content


def _segment(token: str, index: int) -> dict[str, Any]:
    """A JWT segment decoded without verification (for display only)."""
    try:
        part = token.split(".")[index]
        value = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    except (IndexError, ValueError) as exc:
        raise AgentError("The delegation token is not a JWT.") from exc
    return value if isinstance(value, dict) else {}


def _claim_rank(name: str) -> tuple[int, str]:
    return (CLAIM_ORDER.index(name) if name in CLAIM_ORDER else len(CLAIM_ORDER), name)


def _refusal(location: str) -> str | None:
    """`access_denied: The pairing was declined on the trusted device.` when the browser is sent back to the
    client with an error; None when it carries an authorization code."""
    params = {name: values[0] for name, values in parse_qs(urlsplit(location).query).items()}
    if "error" not in params:
        return None
    description = params.get("error_description", "")
    return f"{params['error']}: {description}" if description else params["error"]


def _page_problem(url: str, response: httpx.Response) -> tuple[str, _PairingPage | None]:
    """What a page that did not take the code says, and the page again when it still takes codes."""
    parser = PageParser()
    parser.feed(response.text)
    reason = " ".join(parser.alerts) or f"HTTP {response.status_code}"
    try:
        return reason, _PairingPage.parse(url, response.text)
    except AgentError:
        return reason, None  # no code field any more: expired, burnt, already used


def _drop(folder: Path, image: bytes) -> Path:
    """Write the picture whole, then give it its image name: the camera never sees half a file."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"pairing-qr-{secrets.token_hex(3)}.png"
    partial = path.with_suffix(".part")
    partial.write_bytes(image)
    os.replace(partial, path)
    return path


def _path(url: str, *, query: bool = True) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query[:40]}…" if query and parts.query else "")
