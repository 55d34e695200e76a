"""The trusted-device API client: every `/device/…` call of docs/device-api.md, signed, typed, and with
every failure mapped to one of `companion.core.errors` (no httpx exception escapes).

The HTTP transport is injected: unit tests hand in an `httpx.AsyncClient` over `MockTransport`,
integration tests one over `ASGITransport`, real use one with a `base_url` of the server.
"""

from __future__ import annotations

import secrets
import time
from typing import TypeVar
from urllib.parse import quote

import httpx
import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from companion.core.errors import (
    CompanionError,
    InvalidDeviceNameError,
    ServerTimeoutError,
    ServerUnreachableError,
    TransportError,
    UnexpectedResponseError,
    api_error,
)
from companion.core.keystore import (
    DeviceIdentity,
    Enrolment,
    Keystore,
    fingerprint,
    generate_key,
    public_key_b64url,
    public_key_bytes,
)
from companion.core.qr import parse_pairing_uri
from companion.core.schemas import (
    ClaimRequest,
    Connection,
    ConnectionList,
    DeviceInfo,
    EnrolRequest,
    ErrorBody,
    PairingApproval,
    PairingContext,
    PairingDecline,
)
from companion.core.signing import ENROLMENT_DEVICE_ID, Clock, RandomBytes, RequestSigner

T = TypeVar("T")

MAX_NAME_LENGTH = 64


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
                f"The server reported fingerprint {info.fingerprint} for a key whose fingerprint is "
                f"{expected}."
            )
        self._identity = self._keystore.save(key, _enrolment(info, self.server_url))
        return info

    async def me(self) -> DeviceInfo:
        return await self._signed("GET", "/device/me", DeviceInfo)

    async def claim(self, qr_payload: str) -> PairingContext:
        """Claim a pairing from the text of its QR, after checking it names the enrolled issuer."""
        payload = qr_payload.strip()
        parse_pairing_uri(payload, self.identity().enrolment.issuer)
        return await self._signed(
            "POST", "/device/pairings/claim", PairingContext, ClaimRequest(qr_payload=payload)
        )

    async def approve_pairing(self, pairing_id: str) -> PairingApproval:
        return await self._signed("POST", f"/device/pairings/{_segment(pairing_id)}/approve", PairingApproval)

    async def decline_pairing(self, pairing_id: str) -> PairingDecline:
        return await self._signed("POST", f"/device/pairings/{_segment(pairing_id)}/decline", PairingDecline)

    async def connections(self) -> list[Connection]:
        listing = await self._signed("GET", "/device/connections", ConnectionList)
        return listing.connections

    async def revoke_connection(self, connection_id: str) -> Connection:
        return await self._signed("DELETE", f"/device/connections/{_segment(connection_id)}", Connection)

    # --- plumbing ----------------------------------------------------------------------------------------

    def _signer(self, key: Ed25519PrivateKey, device_id: str) -> RequestSigner:
        return RequestSigner(key, device_id, clock=self._clock, random_bytes=self._random_bytes)

    async def _signed(
        self, method: str, path: str, expect: type[T], payload: msgspec.Struct | None = None
    ) -> T:
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
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json"
        body = msgspec.json.encode(payload) if payload is not None else None
        request = self._http.build_request(method, path, content=body, headers=headers)
        # Sign what goes on the wire: the path as httpx encoded it (base_url prefix included) and the
        # exact body bytes.
        target = request.url.raw_path.decode("ascii")
        request.headers.update(signer.headers(method, target, request.content))
        response = await self._send(request)
        return _decode(response, expect)

    async def _send(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._http.send(request)
        except httpx.TimeoutException as exc:
            raise ServerTimeoutError(f"The server at {self.server_url} did not answer in time.") from exc
        except httpx.ConnectError as exc:
            raise ServerUnreachableError(f"Could not connect to the server at {self.server_url}.") from exc
        except httpx.HTTPError as exc:
            raise TransportError(
                f"The connection to {self.server_url} failed ({exc.__class__.__name__}: {exc})."
            ) from exc


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


def _error_for(response: httpx.Response) -> CompanionError:
    try:
        body = msgspec.json.decode(response.content, type=ErrorBody)
    except msgspec.DecodeError:
        body = None
    if body is not None and response.status_code >= 400:
        return api_error(response.status_code, body.error, body.error_description)
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
        raise InvalidDeviceNameError(
            f"A device name must be 1 to {MAX_NAME_LENGTH} characters, got {len(name)}."
        )
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
