"""DeviceService: enrolment creates a user and its device; connections are listed and unpaired per user."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from server.tests.pairing_support import ISSUER, SigningDevice, seed_client, seed_device, seed_token
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.device.auth import fingerprint
from vouchsim.server.device.errors import ConnectionNotFound, DeviceExists, InvalidRequest
from vouchsim.server.device.service import DeviceService, checked_name
from vouchsim.server.storage.models import Device, OAuthToken, User
from vouchsim.server.storage.repositories.connections import ConnectionRepository
from vouchsim.server.storage.repositories.devices import DeviceRepository

pytestmark = pytest.mark.anyio


@pytest.fixture
def service(db: AsyncSession, clock: FrozenClock) -> DeviceService:
    return DeviceService(DeviceRepository(db), ConnectionRepository(db), clock)


async def test_enrol_creates_a_user_and_its_device(
    db: AsyncSession, clock: FrozenClock, service: DeviceService
) -> None:
    key = SigningDevice(clock).public_key
    info = await service.enrol(key, "  Pixel of QA ", ISSUER)
    assert info.device_id.startswith("dev_")
    assert info.user_id.startswith("usr_")
    assert (info.name, info.issuer, info.enrolled_at) == ("Pixel of QA", ISSUER, clock.now())
    assert info.fingerprint == fingerprint(key)
    device = await db.get(Device, info.device_id)
    assert device is not None
    assert (device.user_id, device.public_key) == (info.user_id, key)
    assert await db.get(User, info.user_id) is not None


async def test_me_reports_the_enrolment(clock: FrozenClock, service: DeviceService) -> None:
    info = await service.enrol(SigningDevice(clock).public_key, "phone", ISSUER)
    assert await service.me(info.device_id, ISSUER) == info
    elsewhere = await service.me(info.device_id, "http://127.0.0.1:8741")
    assert elsewhere.issuer == "http://127.0.0.1:8741"


async def test_a_key_enrols_once(db: AsyncSession, clock: FrozenClock, service: DeviceService) -> None:
    key = SigningDevice(clock).public_key
    await service.enrol(key, "first", ISSUER)
    with pytest.raises(DeviceExists) as caught:
        await service.enrol(key, "second", ISSUER)
    assert (caught.value.code, caught.value.status) == ("device_exists", 409)
    assert await db.scalar(select(func.count()).select_from(User)) == 1


async def test_a_racing_enrolment_leaves_no_user_behind(db: AsyncSession, clock: FrozenClock) -> None:
    """The repository's own guard, for the enrolment that passed the service's check at the same time."""
    devices = DeviceRepository(db)
    key = SigningDevice(clock).public_key
    first = await devices.enrol(user_id="usr_1", device_id="dev_1", public_key=key, name="a", now=clock.now())
    second = await devices.enrol(user_id="usr_2", device_id="dev_2", public_key=key, name="b", now=clock.now())
    assert first is not None
    assert second is None
    assert list(await db.scalars(select(User.id))) == ["usr_1"]


@pytest.mark.parametrize("name", ["", "   ", "x" * 65, "tab\there", "new\nline", "\x00"])
def test_names_people_can_read(name: str) -> None:
    with pytest.raises(InvalidRequest):
        checked_name(name)


def test_names_are_trimmed() -> None:
    assert checked_name("  Ünïcode phone 📱 ") == "Ünïcode phone 📱"
    assert checked_name("x" * 64 + "  ") == "x" * 64


async def test_connections_newest_first_with_client_names(
    db: AsyncSession, clock: FrozenClock, service: DeviceService
) -> None:
    phone = await seed_device(db, clock)
    stranger = await seed_device(db, clock)
    named = await seed_client(db, clock, client_name="Acme Agent Client")
    unnamed = await seed_client(db, clock, client_name=None)
    connections = ConnectionRepository(db)
    old = await connections.create(phone.user_id, named, phone.device_id, "identity delegation", clock.now())
    clock.advance(10)
    new = await connections.create(phone.user_id, unnamed, phone.device_id, "identity", clock.now())
    await connections.create(stranger.user_id, named, stranger.device_id, "identity", clock.now())
    listing = await service.connections_of(phone.user_id)
    assert [c.connection_id for c in listing.connections] == [new.id, old.id]
    assert [c.client_name for c in listing.connections] == [unnamed, "Acme Agent Client"]
    assert listing.connections[1].scopes == ["identity", "delegation"]
    assert listing.connections[1].created_at == old.created_at
    assert listing.connections[0].last_used_at is None
    assert listing.connections[0].revoked_at is None


async def test_unpairing_revokes_the_connection_and_its_tokens(
    db: AsyncSession, clock: FrozenClock, service: DeviceService
) -> None:
    phone = await seed_device(db, clock)
    client = await seed_client(db, clock)
    connections = ConnectionRepository(db)
    target = await connections.create(phone.user_id, client, phone.device_id, "identity", clock.now())
    kept = await connections.create(phone.user_id, client, phone.device_id, "identity", clock.now())
    doomed = [
        await seed_token(db, clock, connection_id=target.id, user_id=phone.user_id, client_id=client) for _ in range(2)
    ]
    spared = await seed_token(db, clock, connection_id=kept.id, user_id=phone.user_id, client_id=client)
    clock.advance(5)
    revoked_at = clock.now()

    view = await service.revoke_connection(phone.user_id, target.id)
    assert (view.connection_id, view.revoked_at) == (target.id, revoked_at)
    tokens = {
        t.id: t.revoked_at for t in await db.scalars(select(OAuthToken).execution_options(populate_existing=True))
    }
    assert tokens == {doomed[0]: revoked_at, doomed[1]: revoked_at, spared: None}

    clock.advance(5)
    again = await service.revoke_connection(phone.user_id, target.id)
    assert again.revoked_at == revoked_at  # idempotent: the first revocation time stands


async def test_a_connection_of_another_user_is_not_found(
    db: AsyncSession, clock: FrozenClock, service: DeviceService
) -> None:
    phone = await seed_device(db, clock)
    stranger = await seed_device(db, clock)
    client = await seed_client(db, clock)
    theirs = await ConnectionRepository(db).create(
        stranger.user_id, client, stranger.device_id, "identity", clock.now()
    )
    for connection_id in (theirs.id, "conn_unknown"):
        with pytest.raises(ConnectionNotFound) as caught:
            await service.revoke_connection(phone.user_id, connection_id)
        assert (caught.value.code, caught.value.status) == ("connection_not_found", 404)
    assert (await ConnectionRepository(db).get(theirs.id)).revoked_at is None  # type: ignore[union-attr]
