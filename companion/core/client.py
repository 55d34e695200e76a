"""The trusted-device API client: every `/device/…` call of docs/device-api.md, signed, typed, and with
every failure mapped to one of `companion.core.errors` (no httpx exception escapes).

The HTTP transport is injected: unit tests hand in an `httpx.AsyncClient` over `MockTransport`,
integration tests one over `ASGITransport`, real use one with a `base_url` of the server.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import AsyncGenerator, Callable
from typing import Final, Literal, TypeVar
from urllib.parse import quote

import httpx
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from vouchsim.companion.core import decisions
from vouchsim.companion.core.decisions import Decision, SignedDecision
from vouchsim.companion.core.errors import (
    CompanionError,
    DelegationNotFoundError,
    DeviceRevokedError,
    InvalidDeviceNameError,
    McpEndpointError,
    ServerTimeoutError,
    ServerUnreachableError,
    TransportError,
    UnexpectedResponseError,
    api_error,
)
from vouchsim.companion.core.keystore import (
    DeviceIdentity,
    Enrolment,
    Keystore,
    fingerprint,
    generate_key,
    public_key_b64url,
    public_key_bytes,
)
from vouchsim.companion.core.qr import parse_pairing_uri
from vouchsim.companion.core.schemas import (
    ClaimRequest,
    Connection,
    ConnectionList,
    Delegation,
    DelegationList,
    DeviceInfo,
    DeviceRevocation,
    EnrolRequest,
    ErrorBody,
    PairingApproval,
    PairingContext,
    PairingDecline,
)
from vouchsim.companion.core.signing import ENROLMENT_DEVICE_ID, Clock, RandomBytes, RequestSigner
from vouchsim.companion.core.sse import parse_events

T = TypeVar("T")

MAX_NAME_LENGTH = 64

DelegationFilter = Literal["pending", "history", "all"]
DELEGATION_FILTERS: Final[tuple[DelegationFilter, ...]] = ("pending", "history", "all")
DELEGATION_EVENT: Final = "delegation"
DEVICE_REVOKED_EVENT: Final = "device_revoked"  # the stream's last event when the device is revoked
# The server sends a keep-alive comment every 15 s: three missed ones mean the stream is dead.
STREAM_READ_TIMEOUT: Final = 45.0


class DeviceApiClient:
    """One device's view of the server. Loads its identity from the keystore on first use."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        keystore: Keystore,
        *,
        clock: Clock = time.time,
        random_bytes: RandomBytes = secrets.token_bytes,
    ) -> None:
        if not str(http.base_url):
            raise ValueError("the httpx client needs a base_url: the server's URL")
        self._http = http
        self._keystore = keystore
        self._clock = clock
        self._random_bytes = random_bytes
        self._identity: DeviceIdentity | None = None

    @property
    def server_url(self) -> str:
        return str(self._http.base_url).rstrip("/")

    def identity(self) -> DeviceIdentity:
        """The enrolled identity; NotEnrolledError before enrolment."""
        if self._identity is None:
            self._identity = self._keystore.load_identity()
        return self._identity

    async def enrol(self, name: str, *, new_key: bool = False) -> DeviceInfo:
        """Enrol the stored key (generating one if there is none, or if `new_key`) and save the record.

        A new key is written only after the server accepted it, so a failed enrolment never loses the
        previous identity.
        """
        name = _checked_name(name)
        key = (None if new_key else self._keystore.read_key()) or generate_key()
        signer = self._signer(key, ENROLMENT_DEVICE_ID)
        payload = EnrolRequest(public_key=public_key_b64url(key), name=name)
        info = await self._call(signer, "POST", "/device/enrol", DeviceInfo, payload)
        expected = fingerprint(public_key_bytes(key))
        if info.fingerprint != expected:
            raise UnexpectedResponseError(
                f"The server reported fingerprint {info.fingerprint} for a key whose fingerprint is {expected}."
            )
        self._identity = self._keystore.save(key, _enrolment(info, self.server_url))
        return info

    async def me(self) -> DeviceInfo:
        return await self._signed("GET", "/device/me", DeviceInfo)

    async def forget(self, *, cut_connections: bool = False) -> DeviceRevocation:
        """Revoke this device on the server ("forget this device"): its key stops working there at once, for
        good. `cut_connections` also unpairs the connections it paired. Local state is the caller's to wipe."""
        query = "?cut_connections=true" if cut_connections else ""
        return await self._signed("DELETE", f"/device/me{query}", DeviceRevocation)

    async def claim(self, qr_payload: str) -> PairingContext:
        """Claim a pairing from the text of its QR, after checking it names the enrolled issuer."""
        payload = qr_payload.strip()
        parse_pairing_uri(payload, self.identity().enrolment.issuer)
        return await self._signed("POST", "/device/pairings/claim", PairingContext, ClaimRequest(qr_payload=payload))

    async def approve_pairing(self, pairing_id: str) -> PairingApproval:
        return await self._signed("POST", f"/device/pairings/{_segment(pairing_id)}/approve", PairingApproval)

    async def decline_pairing(self, pairing_id: str) -> PairingDecline:
        return await self._signed("POST", f"/device/pairings/{_segment(pairing_id)}/decline", PairingDecline)

    async def connections(self) -> list[Connection]:
        listing = await self._signed("GET", "/device/connections", ConnectionList)
        return listing.connections

    async def revoke_connection(self, connection_id: str) -> Connection:
        return await self._signed("DELETE", f"/device/connections/{_segment(connection_id)}", Connection)

    # --- delegations (docs/delegations.md) ----------------------------------------------------------------

    async def delegations(self, which: DelegationFilter = "pending") -> list[Delegation]:
        """`pending` (the default), `history` (decided, revoked or expired) or `all`; newest first."""
        if which not in DELEGATION_FILTERS:
            raise ValueError(f"which must be one of {', '.join(DELEGATION_FILTERS)}, not {which!r}")
        listing = await self._signed("GET", f"/device/delegations?status={which}", DelegationList)
        return listing.delegations

    async def delegation(self, delegation_id: str) -> Delegation:
        """One delegation as the server has it now; DelegationNotFoundError when it has none by that id.

        The API has no single-delegation read, so this looks in the pending list first (the usual case, and
        short), then in `all`, which the server caps at its newest delegations.
        """
        for which in ("pending", "all"):
            for delegation in await self.delegations(which):
                if delegation.delegation_id == delegation_id:
                    return delegation
        raise DelegationNotFoundError(
            f"This user has no delegation {delegation_id} (among the newest the server lists).", status=404
        )

    async def stream_delegations(
        self,
        *,
        on_open: Callable[[], None] | None = None,
        read_timeout: float | None = STREAM_READ_TIMEOUT,
    ) -> AsyncGenerator[Delegation, None]:
        """Every `delegation` event of `GET /device/delegations/stream`, decoded; the server first replays
        every pending delegation, then sends one whenever a delegation is created or changes.

        `on_open` runs once the server accepted the stream (before any event: there may be none for a
        while). The iterator ends when the server closes the stream; a dropped connection raises a
        TransportError, and the server's `device_revoked` event (this device was revoked meanwhile) a
        DeviceRevokedError. Reconnecting is the caller's business. Close it with `contextlib.aclosing` when
        leaving early, so the connection is released at once.
        """
        identity = self.identity()
        timeout = self._http.timeout
        request = self._request(
            self._signer(identity.key, identity.device_id),
            "GET",
            "/device/delegations/stream",
            accept="text/event-stream",
            timeout=httpx.Timeout(connect=timeout.connect, read=read_timeout, write=timeout.write, pool=timeout.pool),
        )
        response = await self._send(request, stream=True)
        try:
            if not response.is_success:
                await self._read(response)
                raise _error_for(response)
            content_type = response.headers.get("content-type", "")
            if content_type.partition(";")[0].strip().lower() != "text/event-stream":
                raise UnexpectedResponseError(
                    f"The server answered the delegation stream with {content_type or 'no content type'}, "
                    "not text/event-stream."
                )
            if on_open is not None:
                on_open()
            try:
                async for event in parse_events(response.aiter_lines()):
                    if event.event == DELEGATION_EVENT:
                        yield _decode_event(event.data)
                    elif event.event == DEVICE_REVOKED_EVENT:
                        raise _revoked(event.data)
            except httpx.HTTPError as exc:
                raise self._transport_error(exc, "The delegation stream from") from exc
        finally:
            await response.aclose()

    def sign_decision(self, delegation: Delegation, decision: Decision) -> SignedDecision:
        """Sign a decision on `delegation` (the server's copy) with this device's key; no I/O."""
        return decisions.sign_decision(self.identity().key, delegation, decision, random_bytes=self._random_bytes)

    async def send_decision(self, signed: SignedDecision) -> Delegation:
        path = f"/device/delegations/{_segment(signed.delegation_id)}/decision"
        return await self._signed("POST", path, Delegation, signed.request())

    async def decide(self, delegation: Delegation, decision: Decision) -> Delegation:
        """Approve or deny `delegation`, signing the statement built from it; the object after the decision."""
        return await self.send_decision(self.sign_decision(delegation, decision))

    async def revoke_delegation(self, delegation_id: str) -> Delegation:
        """Revoke an approved delegation (its token stops introspecting as active). Idempotent."""
        return await self._signed("POST", f"/device/delegations/{_segment(delegation_id)}/revoke", Delegation)

    # --- plumbing ----------------------------------------------------------------------------------------

    def _signer(self, key: Ed25519PrivateKey, device_id: str) -> RequestSigner:
        return RequestSigner(key, device_id, clock=self._clock, random_bytes=self._random_bytes)

    async def _signed(self, method: str, path: str, expect: type[T], payload: msgspec.Struct | None = None) -> T:
        identity = self.identity()
        return await self._call(self._signer(identity.key, identity.device_id), method, path, expect, payload)

    async def _call(
        self,
        signer: RequestSigner,
        method: str,
        path: str,
        expect: type[T],
        payload: msgspec.Struct | None = None,
    ) -> T:
        request = self._request(signer, method, path, payload)
        response = await self._send(request)
        return _decode(response, expect)

    def _request(
        self,
        signer: RequestSigner,
        method: str,
        path: str,
        payload: msgspec.Struct | None = None,
        *,
        accept: str = "application/json",
        timeout: httpx.Timeout | None = None,
    ) -> httpx.Request:
        headers = {"Accept": accept}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        body = msgspec.json.encode(payload) if payload is not None else None
        request = self._http.build_request(
            method,
            path,
            content=body,
            headers=headers,
            timeout=httpx.USE_CLIENT_DEFAULT if timeout is None else timeout,
        )
        # Sign what goes on the wire: the path as httpx encoded it (base_url prefix included) and the
        # exact body bytes.
        target = request.url.raw_path.decode("ascii")
        request.headers.update(signer.headers(method, target, request.content))
        return request

    async def _send(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        try:
            return await self._http.send(request, stream=stream)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc

    async def _read(self, response: httpx.Response) -> None:
        try:
            await response.aread()
        except httpx.HTTPError as exc:
            raise self._transport_error(exc) from exc

    def _transport_error(self, exc: httpx.HTTPError, what: str = "The server at") -> TransportError:
        if isinstance(exc, httpx.TimeoutException):
            return ServerTimeoutError(f"{what} {self.server_url} did not answer in time.")
        if isinstance(exc, httpx.ConnectError):
            return ServerUnreachableError(f"Could not connect to the server at {self.server_url}.")
        return TransportError(f"The connection to {self.server_url} failed ({exc.__class__.__name__}: {exc}).")


def _decode(response: httpx.Response, expect: type[T]) -> T:
    if response.is_success:
        try:
            return msgspec.json.decode(response.content, type=expect)
        except msgspec.DecodeError as exc:
            raise UnexpectedResponseError(
                f"The server's answer to {response.request.method} {response.request.url.path} "
                f"is not what the device API promises: {exc}."
            ) from exc
    raise _error_for(response)


def _decode_event(data: str) -> Delegation:
    try:
        return msgspec.json.decode(data, type=Delegation)
    except msgspec.DecodeError as exc:
        raise UnexpectedResponseError(
            f"A delegation event from the server is not what docs/delegations.md promises: {exc}."
        ) from exc


def _revoked(data: str) -> DeviceRevokedError:
    try:
        description = msgspec.json.decode(data, type=ErrorBody).error_description
    except msgspec.DecodeError:
        description = ""
    return DeviceRevokedError(description, status=401, code=DeviceRevokedError.code)


def _error_for(response: httpx.Response) -> CompanionError:
    server_url = str(response.request.url.copy_with(query=None))
    base, found, _ = server_url.rpartition("/mcp/device/")
    if response.status_code == 404 and found:  # `--server …/mcp`: every /device/… path lands under the MCP endpoint
        return McpEndpointError(f"{base}/mcp")
    try:
        body = msgspec.json.decode(response.content, type=ErrorBody)
    except msgspec.DecodeError:
        body = None
    if body is not None and response.status_code >= 400:
        return api_error(response.status_code, body.error, body.error_description, delegation_status=body.status)
    if response.is_redirect:
        return UnexpectedResponseError(
            f"The server redirected to {response.headers.get('location', '?')}; check the server URL."
        )
    status = response.status_code
    return UnexpectedResponseError(f"The server answered HTTP {status} without a device API error.")


def _segment(value: str) -> str:
    """An id as one path segment: a slash or dot-dot in an id must not reach another endpoint."""
    return quote(value, safe="")


def _checked_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= MAX_NAME_LENGTH:
        raise InvalidDeviceNameError(f"A device name must be 1 to {MAX_NAME_LENGTH} characters, got {len(name)}.")
    return name


def _enrolment(info: DeviceInfo, server_url: str) -> Enrolment:
    return Enrolment(
        device_id=info.device_id,
        user_id=info.user_id,
        name=info.name,
        fingerprint=info.fingerprint,
        issuer=info.issuer,
        server_url=server_url,
        enrolled_at=info.enrolled_at,
    )
