"""Signed device requests (docs/device-api.md, "Device keys and request signing").

Each request carries `Vouch-Device-Id`, `Vouch-Timestamp`, `Vouch-Nonce` and `Vouch-Signature`: an Ed25519
signature over six lines pinning the method, the path and query exactly as sent, the time, a nonce and the
SHA-256 of the raw body. A request is refused (401 `invalid_signature`) for a bad signature, an unknown device,
a timestamp outside `settings.device_clock_skew`, or a nonce that device already used; a revoked device whose own
key signed the request is told so (401 `device_revoked`), so a forgotten or lost phone can say why it stopped.
The device row is read on every request (never cached), so a revocation holds at once on every instance.

The freshness window protects transport (a captured request cannot be replayed later), so it is checked against
real time, never against the testbed's moved clock (`real_now`): a device whose clock is right keeps working
after `POST /testbed/clock`, as a real phone would.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta

import msgspec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from vouchsim.server.core.clock import Clock, real_now
from vouchsim.server.core.crypto import b64url_decode
from vouchsim.server.core.ed25519 import load_public_key as load_public_key  # re-exported for the routes
from vouchsim.server.core.ed25519 import signature_matches
from vouchsim.server.device.errors import DeviceRevoked, InvalidSignature
from vouchsim.server.settings import Settings
from vouchsim.server.storage.repositories.devices import DeviceRepository, DeviceSigner, RequestNonce

SIGNATURE_VERSION = "vouchsim-device-v1"
ENROLMENT_DEVICE_ID = "new"  # the Vouch-Device-Id of POST /device/enrol, before an id exists
HEADERS = ("vouch-device-id", "vouch-timestamp", "vouch-nonce", "vouch-signature")

_B64URL_SIGNATURE = re.compile(r"^[A-Za-z0-9_-]{86}$")  # 64 bytes
_NONCE = re.compile(r"^[A-Za-z0-9_-]{22,128}$")  # 16+ bytes; the column holds 128 characters
_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_REPLAYED = "This request was already received (Vouch-Nonce reused)."
_PRUNE_ONE_IN = 128
# `last_seen_at` is written at most this often: every signed request (a burst of decisions) would be a write.
_TOUCH_EVERY = timedelta(seconds=60)


class SignedRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A request as the signature covers it, headers parsed but nothing verified yet."""

    method: str
    target: str
    body: bytes
    device_id: str
    timestamp: int
    nonce: str
    signature: bytes


class AuthenticatedDevice(msgspec.Struct, frozen=True, kw_only=True):
    device_id: str
    user_id: str


def canonical_string(method: str, target: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The six lines the signature covers, joined by '\\n' with no trailing newline."""
    lines = (SIGNATURE_VERSION, method.upper(), target, timestamp, nonce, hashlib.sha256(body).hexdigest())
    return "\n".join(lines).encode()


def parse_signed_request(headers: Mapping[str, str], method: str, target: str, body: bytes) -> SignedRequest:
    """The four `Vouch-*` headers, checked for shape (`headers` keys lower-case)."""
    values = [headers.get(name) for name in HEADERS]
    device_id, timestamp, nonce, signature = values
    if device_id is None or timestamp is None or nonce is None or signature is None:
        missing = ", ".join(name.title() for name, value in zip(HEADERS, values, strict=True) if value is None)
        raise InvalidSignature(f"The request is not signed: {missing} missing.")
    if not _TIMESTAMP.match(timestamp):
        raise InvalidSignature("Vouch-Timestamp must be Unix time in whole seconds.")
    if not _NONCE.match(nonce):
        raise InvalidSignature("Vouch-Nonce must be 16 or more random bytes, base64url.")
    if not _B64URL_SIGNATURE.match(signature):
        raise InvalidSignature("Vouch-Signature must be a base64url Ed25519 signature.")
    return SignedRequest(
        method=method.upper(),
        target=target,
        body=body,
        device_id=device_id,
        timestamp=int(timestamp),
        nonce=nonce,
        signature=b64url_decode(signature),
    )


def fingerprint(public_key: str) -> str:
    """First 16 hex digits of SHA-256(raw key), upper-case, in groups of four: `9F2A-11C0-7B3E-5D21`."""
    digest = hashlib.sha256(b64url_decode(public_key)).hexdigest()[:16].upper()
    return "-".join(digest[i : i + 4] for i in range(0, 16, 4))


def _check_signature(request: SignedRequest, key: Ed25519PublicKey) -> None:
    message = canonical_string(request.method, request.target, str(request.timestamp), request.nonce, request.body)
    if not signature_matches(key, request.signature, message):
        raise InvalidSignature("The signature does not match this request.")


def _sometimes() -> bool:
    return secrets.randbelow(_PRUNE_ONE_IN) == 0


class DeviceAuthenticator:
    def __init__(
        self,
        devices: DeviceRepository,
        clock: Clock,
        settings: Settings,
        *,
        should_prune: Callable[[], bool] = _sometimes,
    ) -> None:
        self.devices = devices
        self.clock = clock
        self.settings = settings
        self.should_prune = should_prune

    async def authenticate(self, request: SignedRequest) -> AuthenticatedDevice:
        """The enrolled, unrevoked device that signed `request`; InvalidSignature otherwise."""
        if request.device_id == ENROLMENT_DEVICE_ID:
            raise InvalidSignature("Only POST /device/enrol is signed as device 'new'.")
        return await self.admit(request, await self.devices.signer(request.device_id))

    async def admit(
        self, request: SignedRequest, device: DeviceSigner | None, *, nonce_seen: bool | None = None
    ) -> AuthenticatedDevice:
        """`authenticate`, with the signing device already read in this transaction (None: there is no such device):
        a decision reads it with the delegation, in one round trip (`DelegationRepository.for_decision`).

        `nonce_seen`: that read also looked the request's nonce up (PostgreSQL). A nonce seen is a replay, as
        always; an unseen one is left to the caller to remember (`nonce_of`, `remember`) with what the request
        changes, in one statement, or at once if the request is refused after all."""
        if request.device_id == ENROLMENT_DEVICE_ID:
            raise InvalidSignature("Only POST /device/enrol is signed as device 'new'.")
        if device is None:
            raise InvalidSignature("This device is unknown or no longer trusted.")
        key = load_public_key(device.public_key)
        assert key is not None  # validated at enrolment
        if device.revoked_at is not None:
            _check_signature(request, key)  # only the device's own key learns that it was revoked
            raise DeviceRevoked(
                f"This device was revoked at {device.revoked_at.isoformat().replace('+00:00', 'Z')}; "
                "it can no longer act for its user. Enrol again to pair anew."
            )
        await self._verify(request, key, nonce_seen=nonce_seen)
        now = self.clock.now()
        if device.last_seen_at is None or now - device.last_seen_at >= _TOUCH_EVERY:
            await self.devices.touch(device.id, now)
        return AuthenticatedDevice(device_id=device.id, user_id=device.user_id)

    async def verify_enrolment(self, request: SignedRequest, key: Ed25519PublicKey) -> None:
        """Proof of possession: the enrolment is signed, as device 'new', by the key it enrols."""
        if request.device_id != ENROLMENT_DEVICE_ID:
            raise InvalidSignature("An enrolment is signed with Vouch-Device-Id: new.")
        await self._verify(request, key)

    async def _verify(self, request: SignedRequest, key: Ed25519PublicKey, *, nonce_seen: bool | None = None) -> None:
        _check_signature(request, key)
        now = real_now(self.clock)
        # Compared as numbers first: a far-off timestamp must not reach datetime (year out of range).
        if abs(now.timestamp() - request.timestamp) > self.settings.device_clock_skew:
            raise InvalidSignature("Vouch-Timestamp is too far from the server's clock; check the device's time.")
        # Checked last, so only genuine requests occupy the table.
        if nonce_seen is None:
            await self.remember(request)
        elif nonce_seen:
            raise InvalidSignature(_REPLAYED)
        if self.should_prune():
            await self.devices.prune_nonces(now)

    def nonce_of(self, request: SignedRequest) -> RequestNonce:
        """The request's nonce as remembered: for as long as its timestamp could still pass the window."""
        signed_at = datetime.fromtimestamp(request.timestamp, UTC)
        skew = timedelta(seconds=self.settings.device_clock_skew)
        return RequestNonce(request.device_id, request.nonce, signed_at + skew)

    async def remember(self, request: SignedRequest) -> None:
        """Remember the request's nonce; InvalidSignature if it is remembered already (a replay)."""
        nonce = self.nonce_of(request)
        if not await self.devices.remember_nonce(nonce.device_id, nonce.nonce, nonce.expires_at):
            raise InvalidSignature(_REPLAYED)
