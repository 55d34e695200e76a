"""Signed device requests (docs/device-api.md "Device keys and request signing"): what passes, and each way
a request is refused with 401 invalid_signature."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from server.tests.pairing_support import SigningDevice
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.core.crypto import b64url, new_id
from vouchsim.server.core.ed25519 import signature_matches
from vouchsim.server.device.auth import (
    DeviceAuthenticator,
    SignedRequest,
    canonical_string,
    fingerprint,
    load_public_key,
    parse_signed_request,
)
from vouchsim.server.device.errors import DeviceRevoked, InvalidSignature
from vouchsim.server.settings import Settings
from vouchsim.server.storage.models import Device, DeviceNonce, User
from vouchsim.server.storage.repositories.devices import DeviceRepository

pytestmark = pytest.mark.anyio

TARGET = "/device/connections?x=1"


@pytest.fixture
async def phone(db: AsyncSession, clock: FrozenClock) -> SigningDevice:
    signer = SigningDevice(clock)
    user_id, device_id = new_id("usr"), new_id("dev")
    db.add(User(id=user_id, created_at=clock.now()))
    await db.flush()
    db.add(Device(id=device_id, user_id=user_id, public_key=signer.public_key, name="p", created_at=clock.now()))
    await db.flush()
    signer.device_id = device_id
    return signer


@pytest.fixture
def auth(db: AsyncSession, clock: FrozenClock, settings: Settings) -> DeviceAuthenticator:
    return DeviceAuthenticator(DeviceRepository(db), clock, settings, should_prune=lambda: False)


def signed(headers: dict[str, str], method: str = "GET", target: str = TARGET, body: bytes = b"") -> SignedRequest:
    return parse_signed_request({name.lower(): value for name, value in headers.items()}, method, target, body)


def test_canonical_string_is_six_lines_without_a_trailing_newline() -> None:
    text = canonical_string("post", "/device/enrol", "1764072000", "bm9uY2U", b'{"a":1}').decode()
    assert text.split("\n") == [
        "vouchsim-device-v1",
        "POST",
        "/device/enrol",
        "1764072000",
        "bm9uY2U",
        hashlib.sha256(b'{"a":1}').hexdigest(),
    ]
    assert canonical_string("GET", "/", "1", "n", b"").endswith(
        b"e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )


def test_fingerprint_is_sixteen_hex_digits_in_fours() -> None:
    raw = bytes(range(32))
    expected = hashlib.sha256(raw).hexdigest()[:16].upper()
    assert fingerprint(b64url(raw)) == "-".join(expected[i : i + 4] for i in range(0, 16, 4))


def test_only_canonical_32_byte_keys_load() -> None:
    raw = Ed25519PrivateKey.generate().public_key().public_bytes_raw()
    assert load_public_key(b64url(raw)) is not None
    assert load_public_key(b64url(raw) + "=") is None
    assert load_public_key(b64url(raw[:31])) is None
    assert load_public_key(b64url(raw + b"\0")) is None
    assert load_public_key("!" * 43) is None
    # Same bytes, but the last character carries non-zero padding bits: a second spelling of one key.
    spelled = b64url(raw)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    twin = spelled[:-1] + alphabet[alphabet.index(spelled[-1]) ^ 1]
    assert load_public_key(twin) is None


def test_a_signature_matches_only_its_key_and_message_and_is_64_bytes() -> None:
    private = Ed25519PrivateKey.generate()
    key = private.public_key()
    message = b"decision statement"
    signature = private.sign(message)
    assert signature_matches(key, signature, message)
    assert not signature_matches(key, signature, message + b"!")
    assert not signature_matches(key, bytes([signature[0] ^ 1]) + signature[1:], message)
    assert not signature_matches(Ed25519PrivateKey.generate().public_key(), signature, message)
    # libsodium reads the signature off the front of signature + message: a short one borrowing the message's first
    # byte would otherwise verify that message's tail.
    assert not signature_matches(key, signature[:63], signature[63:] + message)
    assert not signature_matches(key, signature + message[:1], message[1:])


async def test_a_well_signed_request_passes_and_marks_the_device_seen(
    db: AsyncSession, clock: FrozenClock, auth: DeviceAuthenticator, phone: SigningDevice
) -> None:
    device = await auth.authenticate(signed(phone.headers("GET", TARGET)))
    assert device.device_id == phone.device_id
    row = await db.get(Device, phone.device_id, populate_existing=True)
    assert row is not None
    assert row.last_seen_at == clock.now()
    assert device.user_id == row.user_id


async def test_the_device_is_marked_seen_once_a_minute_at_most(
    db: AsyncSession, clock: FrozenClock, auth: DeviceAuthenticator, phone: SigningDevice
) -> None:
    """A burst of signed requests (a thousand decisions) must not be a burst of writes to the device's row."""
    await auth.authenticate(signed(phone.headers("GET", TARGET)))
    first_seen = clock.now()
    clock.advance(59)
    await auth.authenticate(signed(phone.headers("GET", TARGET)))
    row = await db.get(Device, phone.device_id, populate_existing=True)
    assert row is not None and row.last_seen_at == first_seen
    clock.advance(1)
    await auth.authenticate(signed(phone.headers("GET", TARGET)))
    row = await db.get(Device, phone.device_id, populate_existing=True)
    assert row is not None and row.last_seen_at == clock.now()


async def test_a_body_is_covered(auth: DeviceAuthenticator, phone: SigningDevice) -> None:
    body = b'{"qr_payload": "x"}'
    await auth.authenticate(
        signed(phone.headers("POST", "/device/pairings/claim", body), "POST", "/device/pairings/claim", body)
    )


@pytest.mark.parametrize(
    ("method", "target", "body"),
    [
        ("GET", TARGET, b"{}"),  # tampered body
        ("GET", "/device/connections?x=2", b""),  # tampered query
        ("GET", "/device/connections", b""),  # query dropped
        ("GET", "/device/me?x=1", b""),  # tampered path
        ("DELETE", TARGET, b""),  # tampered method
    ],
)
async def test_anything_changed_after_signing_is_refused(
    auth: DeviceAuthenticator, phone: SigningDevice, method: str, target: str, body: bytes
) -> None:
    headers = phone.headers("GET", TARGET)
    with pytest.raises(InvalidSignature) as caught:
        await auth.authenticate(signed(headers, method, target, body))
    assert (caught.value.code, caught.value.status) == ("invalid_signature", 401)


async def test_a_signature_by_another_key_is_refused(auth: DeviceAuthenticator, phone: SigningDevice) -> None:
    impostor = SigningDevice(phone.clock, device_id=phone.device_id)
    with pytest.raises(InvalidSignature, match="signature"):
        await auth.authenticate(signed(impostor.headers("GET", TARGET)))


@pytest.mark.parametrize("offset", [-121, 121, -(10**9), 10**11])
async def test_a_timestamp_outside_the_window_is_refused(
    clock: FrozenClock, auth: DeviceAuthenticator, phone: SigningDevice, offset: int
) -> None:
    stamp = int(clock.now().timestamp()) + offset
    with pytest.raises(InvalidSignature, match="clock"):
        await auth.authenticate(signed(phone.headers("GET", TARGET, timestamp=max(stamp, 0))))


@pytest.mark.parametrize("offset", [-120, 120])
async def test_the_window_edges_pass(
    clock: FrozenClock, auth: DeviceAuthenticator, phone: SigningDevice, offset: int
) -> None:
    stamp = int(clock.now().timestamp()) + offset
    await auth.authenticate(signed(phone.headers("GET", TARGET, timestamp=stamp)))


async def test_a_stale_request_is_refused_once_time_moves(
    clock: FrozenClock, auth: DeviceAuthenticator, phone: SigningDevice
) -> None:
    headers = phone.headers("GET", TARGET)
    clock.advance(121)
    with pytest.raises(InvalidSignature):
        await auth.authenticate(signed(headers))


async def test_a_nonce_is_accepted_once_per_device(
    db: AsyncSession, clock: FrozenClock, auth: DeviceAuthenticator, phone: SigningDevice
) -> None:
    headers = phone.headers("GET", TARGET)
    await auth.authenticate(signed(headers))
    with pytest.raises(InvalidSignature, match="already"):
        await auth.authenticate(signed(headers))
    # The same nonce from another device is that device's business.
    other = SigningDevice(clock)
    user_id, device_id = new_id("usr"), new_id("dev")
    db.add(User(id=user_id, created_at=clock.now()))
    await db.flush()
    db.add(Device(id=device_id, user_id=user_id, public_key=other.public_key, name="o", created_at=clock.now()))
    await db.flush()
    other.device_id = device_id
    await auth.authenticate(signed(other.headers("GET", TARGET, nonce=headers["Vouch-Nonce"])))


async def test_nonces_are_kept_as_long_as_their_timestamp_could_pass(
    db: AsyncSession, clock: FrozenClock, settings: Settings, phone: SigningDevice
) -> None:
    headers = phone.headers("GET", TARGET)
    prune_always = DeviceAuthenticator(DeviceRepository(db), clock, settings, should_prune=lambda: True)
    await prune_always.authenticate(signed(headers))
    expires = await db.scalar(select(DeviceNonce.expires_at).where(DeviceNonce.nonce == headers["Vouch-Nonce"]))
    assert expires == clock.now() + timedelta(seconds=120)
    clock.advance(119)
    await prune_always.authenticate(signed(phone.headers("GET", TARGET)))
    assert await db.scalar(select(func.count()).select_from(DeviceNonce)) == 2
    clock.advance(2)
    await prune_always.authenticate(signed(phone.headers("GET", TARGET)))
    remaining = set(await db.scalars(select(DeviceNonce.nonce)))
    assert headers["Vouch-Nonce"] not in remaining
    assert len(remaining) == 2


async def test_unknown_and_revoked_devices_are_refused(
    db: AsyncSession, clock: FrozenClock, auth: DeviceAuthenticator, phone: SigningDevice
) -> None:
    ghost = SigningDevice(clock, device_id="dev_unknown")
    with pytest.raises(InvalidSignature, match="unknown"):
        await auth.authenticate(signed(ghost.headers("GET", TARGET)))
    await db.execute(update(Device).where(Device.id == phone.device_id).values(revoked_at=clock.now()))
    # Its own key learns why (so a lost phone can say it was revoked); another key learns nothing.
    with pytest.raises(DeviceRevoked, match="revoked at 2026-11-25T12:00:00Z"):
        await auth.authenticate(signed(phone.headers("GET", TARGET)))
    impostor = SigningDevice(clock, device_id=phone.device_id)
    with pytest.raises(InvalidSignature, match="does not match"):
        await auth.authenticate(signed(impostor.headers("GET", TARGET)))


async def test_device_new_is_only_for_enrolment(auth: DeviceAuthenticator, clock: FrozenClock) -> None:
    newcomer = SigningDevice(clock)
    with pytest.raises(InvalidSignature, match="enrol"):
        await auth.authenticate(signed(newcomer.headers("GET", TARGET)))


async def test_enrolment_proves_possession_of_the_key(auth: DeviceAuthenticator, clock: FrozenClock) -> None:
    newcomer = SigningDevice(clock)
    key = load_public_key(newcomer.public_key)
    assert key is not None
    await auth.verify_enrolment(signed(newcomer.headers("POST", "/device/enrol"), "POST", "/device/enrol"), key)
    someone_else = SigningDevice(clock)
    with pytest.raises(InvalidSignature):
        await auth.verify_enrolment(signed(someone_else.headers("POST", "/device/enrol"), "POST", "/device/enrol"), key)
    as_a_device = SigningDevice(clock, key=newcomer.key, device_id="dev_x")
    with pytest.raises(InvalidSignature, match="new"):
        await auth.verify_enrolment(signed(as_a_device.headers("POST", "/device/enrol"), "POST", "/device/enrol"), key)


async def test_enrolment_nonces_are_single_use(auth: DeviceAuthenticator, clock: FrozenClock) -> None:
    newcomer = SigningDevice(clock)
    key = load_public_key(newcomer.public_key)
    assert key is not None
    request = signed(newcomer.headers("POST", "/device/enrol"), "POST", "/device/enrol")
    await auth.verify_enrolment(request, key)
    with pytest.raises(InvalidSignature, match="already"):
        await auth.verify_enrolment(request, key)


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Vouch-Device-Id", None),
        ("Vouch-Timestamp", None),
        ("Vouch-Nonce", None),
        ("Vouch-Signature", None),
        ("Vouch-Timestamp", "12.5"),
        ("Vouch-Timestamp", "-5"),
        ("Vouch-Timestamp", "1e9"),
        ("Vouch-Timestamp", "9" * 13),
        ("Vouch-Nonce", "short"),
        ("Vouch-Nonce", "a" * 129),
        ("Vouch-Nonce", "not+base64url/=="),
        ("Vouch-Signature", "AAAA"),
        ("Vouch-Signature", "=" * 86),
    ],
)
async def test_malformed_headers_are_refused(
    auth: DeviceAuthenticator, phone: SigningDevice, header: str, value: str | None
) -> None:
    headers = phone.headers("GET", TARGET)
    if value is None:
        del headers[header]
    else:
        headers[header] = value
    with pytest.raises(InvalidSignature):
        await auth.authenticate(signed(headers))
