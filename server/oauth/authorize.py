"""The authorization page's flow, HTTP-free: who the browser is, the request it carries, pairing or consent.

```
GET /oauth/authorize ──validated──▶ browser signed in (device still trusted)? ──yes──▶ consent page
                                                     │no                               │ allow
                                                     ▼                                 ▼
                                    pairing page (QR, code form) ──code ok──▶ runtime connection ──▶ code
```

The browser is known by a random cookie value stored only as a hash. That value also derives the pairing QR's
secret (see `server.pairing.service`), so the QR can be shown again without the database keeping the secret.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from vouchsim.server.core.clock import Clock
from vouchsim.server.core.crypto import constant_time_equals, hash_secret, keyed_hash, new_id, random_token
from vouchsim.server.core.errors import VouchsimError
from vouchsim.server.oauth import redirects, scopes
from vouchsim.server.pairing.identity import client_identity
from vouchsim.server.pairing.service import PairingService, PairingView
from vouchsim.server.settings import Settings
from vouchsim.server.storage.models import AuthorizationRequest, BrowserSession, OAuthClient
from vouchsim.server.storage.repositories.authorizations import AuthorizationRepository
from vouchsim.server.storage.repositories.connections import ConnectionRepository
from vouchsim.server.storage.repositories.devices import DeviceRepository


class AuthorizationRequestGone(VouchsimError):
    """This authorization request is unknown, finished, or belongs to another browser."""

    code = "request_not_found"
    status = 404


class AuthorizationRequestExpired(VouchsimError):
    """This authorization request has expired; go back to the application and start again."""

    code = "request_expired"
    status = 410


@dataclass(frozen=True)
class Browser:
    id: str
    secret: str
    user_id: str | None
    device_id: str | None
    is_new: bool


@dataclass(frozen=True)
class ValidatedRequest:
    """An authorization request after Authlib and our checks accepted it."""

    client_id: str
    redirect_uri: str
    scope: str
    state: str | None
    code_challenge: str
    code_challenge_method: str
    resource: str


@dataclass(frozen=True)
class RequestSummary:
    """What the page shows about who is asking."""

    request_id: str
    client_id: str
    client_name: str
    redirect_uri: str
    redirect_host: str
    scopes: tuple[str, ...]
    state: str | None
    expires_at: datetime
    params: ValidatedRequest
    # A CIMD client's client_id host: the one thing about it this server verified (draft-ietf-oauth-client-id-
    # metadata-document-02 §8.5; the name is self-asserted). None for registered and pre-registered clients.
    verified_host: str | None = None
    # Every redirect URI the client may use is on loopback: any program on the person's computer could receive
    # the code (MCP 2026-07-28 security considerations, "Localhost Redirect URI Risks"). Set for CIMD clients.
    localhost_only: bool = False


@dataclass(frozen=True)
class Approved:
    """The person said yes: the request to answer with a code, for this user through this connection."""

    request: ValidatedRequest
    user_id: str
    connection_id: str


def prompt_values(prompt: str | None) -> frozenset[str]:
    """OpenID Connect Core §3.1.2.1 `prompt`, space-separated. The MCP Python SDK sends `prompt=consent` with
    `offline_access` (SEP-2207). Values this server does not know (`select_account`, `create`) are ignored."""
    return frozenset((prompt or "").split())


def prompt_none_error(prompt: frozenset[str], signed_in: bool) -> tuple[str, str] | None:
    """The error (code, description) that answers `prompt=none` (OpenID Connect Core §3.1.2.6): this server always
    shows a page (pairing, or consent for a signed-in browser), so a request that forbids any page cannot succeed.
    None when `none` was not asked for."""
    if "none" not in prompt:
        return None
    if len(prompt) > 1:
        return "invalid_request", "prompt=none cannot be combined with other prompt values."
    if not signed_in:
        return "login_required", "This browser is not signed in: pairing with the trusted device needs a page."
    return "consent_required", "Connecting an application always needs the person's consent on a page."


def _summary(row: AuthorizationRequest, client: OAuthClient) -> RequestSummary:
    params = ValidatedRequest(
        client_id=row.client_id,
        redirect_uri=row.redirect_uri,
        scope=row.scope,
        state=row.state,
        code_challenge=row.code_challenge,
        code_challenge_method=row.code_challenge_method,
        resource=row.resource,
    )
    identity = client_identity(client)
    return RequestSummary(
        request_id=row.id,
        client_id=client.client_id,
        client_name=client.client_name or client.client_id,
        redirect_uri=row.redirect_uri,
        redirect_host=redirects.display_host(row.redirect_uri),
        scopes=tuple(scopes.split(row.scope)),
        state=row.state,
        expires_at=row.expires_at,
        params=params,
        verified_host=identity.verified_host,
        localhost_only=identity.localhost_only,
    )


class AuthorizationFlow:
    def __init__(
        self,
        repo: AuthorizationRepository,
        connections: ConnectionRepository,
        devices: DeviceRepository,
        pairing: PairingService,
        clock: Clock,
        settings: Settings,
        hmac_key: bytes,
    ) -> None:
        self.repo = repo
        self.connections = connections
        self.devices = devices
        self.pairing = pairing
        self.clock = clock
        self.settings = settings
        self.hmac_key = hmac_key

    # -- the browser ---------------------------------------------------------------------------------------
    async def browser(self, cookie: str | None) -> Browser:
        now = self.clock.now()
        if cookie:
            row = await self.repo.browser_by_secret_hash(hash_secret(cookie), now)
            if row is not None:
                return await self._signed_in_view(row, cookie)
        secret = random_token(32)
        row = BrowserSession(
            id=new_id("brw"),
            secret_hash=hash_secret(secret),
            created_at=now,
            expires_at=now + timedelta(seconds=self.settings.browser_session_ttl),
        )
        await self.repo.add_browser(row)
        return Browser(row.id, secret, None, None, is_new=True)

    async def _signed_in_view(self, row: BrowserSession, secret: str) -> Browser:
        # A sign-in lasts only as long as the device that made it stays trusted.
        if row.device_id and not await self.devices.is_active(row.device_id):
            return Browser(row.id, secret, None, None, is_new=False)
        return Browser(row.id, secret, row.user_id, row.device_id, is_new=False)

    def csrf_token(self, browser: Browser) -> str:
        return self._csrf(browser.id)

    def csrf_ok(self, browser: Browser, token: str | None) -> bool:
        return bool(token) and constant_time_equals(self._csrf(browser.id), token or "")

    async def csrf_ok_for(self, cookie: str | None, token: str | None) -> bool:
        """`csrf_ok` for the browser behind `cookie`, only looked up: an unknown browser's form is refused, and no
        browser is made for it."""
        row = await self.repo.browser_by_secret_hash(hash_secret(cookie), self.clock.now()) if cookie else None
        return row is not None and bool(token) and constant_time_equals(self._csrf(row.id), token or "")

    def _csrf(self, browser_id: str) -> str:
        return keyed_hash(self.hmac_key, "csrf:" + browser_id)

    # -- requests ------------------------------------------------------------------------------------------
    async def open(self, browser: Browser, request: ValidatedRequest) -> str:
        now = self.clock.now()
        row = AuthorizationRequest(
            id=new_id("areq"),
            browser_session_id=browser.id,
            client_id=request.client_id,
            redirect_uri=request.redirect_uri,
            scope=request.scope,
            state=request.state,
            code_challenge=request.code_challenge,
            code_challenge_method=request.code_challenge_method,
            resource=request.resource,
            created_at=now,
            expires_at=now + timedelta(seconds=self.settings.authorization_request_ttl),
        )
        await self.repo.add_request(row)
        return row.id

    async def summary(self, browser: Browser, request_id: str, *, open_only: bool = True) -> RequestSummary:
        found = await self.repo.request_with_client(request_id, browser.id)
        if found is None:
            raise AuthorizationRequestGone()
        row, client = found
        if open_only and row.completed_at is not None:
            raise AuthorizationRequestGone("This authorization request was already answered.")
        if open_only and row.expires_at <= self.clock.now():
            raise AuthorizationRequestExpired()
        return _summary(row, client)

    async def close(self, browser: Browser, request_id: str) -> RequestSummary:
        """Mark the request answered (exactly once) and return it, for a redirect back to the client."""
        summary = await self.summary(browser, request_id)
        if not await self.repo.complete_request(request_id, self.clock.now()):
            raise AuthorizationRequestGone("This authorization request was already answered.")
        return summary

    # -- pairing -------------------------------------------------------------------------------------------
    async def start_pairing(self, browser: Browser, request_id: str, issuer: str) -> str:
        await self.summary(browser, request_id)
        started = await self.pairing.start(request_id, browser.secret, issuer)
        return started.pairing_id

    async def pairing_view(self, browser: Browser, pairing_id: str) -> tuple[PairingView, RequestSummary]:
        view = await self.pairing.view(pairing_id, browser.id)
        return view, await self.summary(browser, view.authorization_request_id, open_only=False)

    async def qr_payload(self, browser: Browser, pairing_id: str, issuer: str) -> str:
        return await self.pairing.qr_payload(pairing_id, browser.id, browser.secret, issuer)

    async def submit_code(self, browser: Browser, pairing_id: str, code: str) -> Approved:
        """The code typed on the page. Wrong codes raise pairing errors after the attempt is recorded."""
        done = await self.pairing.submit_code(pairing_id, browser.id, code)
        summary = await self.close(browser, done.authorization_request_id)
        now = self.clock.now()
        await self.repo.sign_in_browser(browser.id, done.user_id, done.device_id, now)
        connection_id = await self._connection(done.user_id, summary, done.device_id)
        return Approved(summary.params, done.user_id, connection_id)

    # -- consent with a signed-in browser ------------------------------------------------------------------
    async def consent(self, browser: Browser, request_id: str) -> Approved:
        if browser.user_id is None or browser.device_id is None:
            raise AuthorizationRequestGone("This browser is not signed in; pair with your device instead.")
        summary = await self.close(browser, request_id)
        connection_id = await self._connection(browser.user_id, summary, browser.device_id)
        return Approved(summary.params, browser.user_id, connection_id)

    async def _connection(self, user_id: str, summary: RequestSummary, device_id: str) -> str:
        """Bind the client to the user's runtime: reuse its live connection, or record a new one."""
        existing = await self.connections.find_active(user_id, summary.client_id)
        if existing is not None:
            return existing.id
        row = await self.connections.create(
            user_id, summary.client_id, device_id, summary.params.scope, self.clock.now()
        )
        return row.id
