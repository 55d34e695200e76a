"""The connections and devices repositories, directly: the SQL the services rely on."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from server.tests.pairing_support import at, seed_client, seed_device, seed_token
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.storage.models import OAuthToken
from vouchsim.server.storage.repositories.connections import ConnectionRepository
from vouchsim.server.storage.repositories.devices import DeviceRepository

pytestmark = pytest.mark.anyio


async def test_find_active_is_the_newest_live_connection(db: AsyncSession, clock: FrozenClock) -> None:
    phone = await seed_device(db, clock)
    client = await seed_client(db, clock)
    other_client = await seed_client(db, clock)
    repo = ConnectionRepository(db)
    assert await repo.find_active(phone.user_id, client) is None
    first = await repo.create(phone.user_id, client, phone.device_id, "identity", clock.now())
    clock.advance(1)
    second = await repo.create(phone.user_id, client, phone.device_id, "identity delegation", clock.now())
    await repo.create(phone.user_id, other_client, phone.device_id, "identity", clock.now())
    assert (await repo.find_active(phone.user_id, client)).id == second.id  # type: ignore[union-attr]
    assert await repo.revoke(second.id, clock.now())
    assert (await repo.find_active(phone.user_id, client)).id == first.id  # type: ignore[union-attr]
    assert await repo.revoke(first.id, clock.now())
    assert await repo.find_active(phone.user_id, client) is None


async def test_revoke_reports_whether_it_changed_anything(db: AsyncSession, clock: FrozenClock) -> None:
    phone = await seed_device(db, clock)
    client = await seed_client(db, clock)
    repo = ConnectionRepository(db)
    connection = await repo.create(phone.user_id, client, phone.device_id, "identity", clock.now())
    assert await repo.revoke(connection.id, clock.now())
    assert not await repo.revoke(connection.id, at(clock, 5))
    assert not await repo.revoke("conn_unknown", clock.now())
    assert (await repo.get(connection.id)).revoked_at == clock.now()  # type: ignore[union-attr]


async def test_revoke_keeps_the_time_of_tokens_revoked_earlier(db: AsyncSession, clock: FrozenClock) -> None:
    phone = await seed_device(db, clock)
    client = await seed_client(db, clock)
    repo = ConnectionRepository(db)
    connection = await repo.create(phone.user_id, client, phone.device_id, "identity", clock.now())
    early = await seed_token(db, clock, connection_id=connection.id, user_id=phone.user_id, client_id=client)
    late = await seed_token(db, clock, connection_id=connection.id, user_id=phone.user_id, client_id=client)
    row = await db.get(OAuthToken, early)
    assert row is not None
    row.revoked_at = clock.now()
    await db.flush()
    clock.advance(60)
    await repo.revoke(connection.id, clock.now())
    times = dict(
        (await db.execute(select(OAuthToken.id, OAuthToken.revoked_at).execution_options(populate_existing=True))).all()
    )
    assert times == {early: at(clock, -60), late: clock.now()}


async def test_touch_records_use(db: AsyncSession, clock: FrozenClock) -> None:
    phone = await seed_device(db, clock)
    client = await seed_client(db, clock)
    repo = ConnectionRepository(db)
    connection = await repo.create(phone.user_id, client, phone.device_id, "identity", clock.now())
    clock.advance(30)
    await repo.touch(connection.id, clock.now())
    assert (await repo.get(connection.id)).last_used_at == clock.now()  # type: ignore[union-attr]
    [(listed, name)] = await repo.list_for_user(phone.user_id)
    assert (listed.last_used_at, name) == (clock.now(), "Acme Agent Client")


async def test_is_active_follows_revocation(db: AsyncSession, clock: FrozenClock) -> None:
    phone = await seed_device(db, clock)
    repo = DeviceRepository(db)
    assert await repo.is_active(phone.device_id)
    device = await repo.get(phone.device_id)
    assert device is not None
    device.revoked_at = clock.now()
    await db.flush()
    assert not await repo.is_active(phone.device_id)
    assert not await repo.is_active("dev_unknown")


async def test_nonces_remembered_and_pruned(db: AsyncSession, clock: FrozenClock) -> None:
    repo = DeviceRepository(db)
    assert await repo.remember_nonce("dev_1", "n1", at(clock, 10))
    assert not await repo.remember_nonce("dev_1", "n1", at(clock, 10))
    assert await repo.remember_nonce("dev_2", "n1", at(clock, 20))
    assert await repo.prune_nonces(at(clock, 15)) == 1
    assert await repo.remember_nonce("dev_1", "n1", at(clock, 30))  # forgotten once it could not pass anyway
