"""Two instances on one database making or rotating the signing key at the same moment: one key becomes current for
both, and the database never holds two current keys of one algorithm (the partial unique index of migration 0010).
Before it, two instances starting on a new database each stored a first key: the loser's stayed current and
published for good."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from server.tests.delegation_support import HMAC_KEY
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.delegation.tokens import SigningKeyStore, kid_of
from vouchsim.server.settings import Settings
from vouchsim.server.storage.models import SigningKey
from vouchsim.server.storage.repositories.signing_keys import SigningKeyRepository

pytestmark = pytest.mark.anyio

ALGORITHM = "Ed25519"


class Looking(SigningKeyRepository):
    """The second instance's repository: says when it has read which key is current (before the first commits)."""

    def __init__(self, session: AsyncSession, looked: asyncio.Event) -> None:
        super().__init__(session)
        self.looked = looked

    async def current(self, algorithm: str) -> SigningKey | None:
        row = await super().current(algorithm)
        self.looked.set()
        return row


async def current_keys(sessions: async_sessionmaker[AsyncSession]) -> int:
    async with sessions() as session:
        unretired = select(func.count()).where(SigningKey.algorithm == ALGORITHM, SigningKey.retired_at.is_(None))
        return int(await session.scalar(unretired) or 0)


async def test_two_instances_making_the_first_key_at_once_share_one(
    sessions: async_sessionmaker[AsyncSession], clock: FrozenClock, settings: Settings
) -> None:
    first, second = SigningKeyStore(HMAC_KEY, clock, settings), SigningKeyStore(HMAC_KEY, clock, settings)
    async with sessions() as one, one.begin():
        made = await first.signing_key(SigningKeyRepository(one), ALGORITHM)  # stored, not yet committed
        looked = asyncio.Event()

        async def meanwhile() -> str:
            async with sessions() as other, other.begin():
                return kid_of(await second.signing_key(Looking(other, looked), ALGORITHM))

        racing = asyncio.create_task(meanwhile())
        await looked.wait()  # it found no key, so it makes one: its write waits for this transaction to end
    assert await racing == kid_of(made)
    assert await current_keys(sessions) == 1
    async with sessions() as session, session.begin():  # and each instance signs with it from now on
        for store in (first, second):
            assert kid_of(await store.signing_key(SigningKeyRepository(session), ALGORITHM)) == kid_of(made)


async def test_two_instances_rotating_at_once_retire_the_old_key_once_and_share_the_new_one(
    sessions: async_sessionmaker[AsyncSession], clock: FrozenClock, settings: Settings
) -> None:
    first, second = SigningKeyStore(HMAC_KEY, clock, settings), SigningKeyStore(HMAC_KEY, clock, settings)
    async with sessions() as session, session.begin():
        old = kid_of(await first.signing_key(SigningKeyRepository(session), ALGORITHM))
    async with sessions() as one, one.begin():
        rotated = await first.rotate(SigningKeyRepository(one), ALGORITHM)
        looked = asyncio.Event()

        async def meanwhile() -> str:
            async with sessions() as other, other.begin():
                return await second.rotate(Looking(other, looked), ALGORITHM)

        racing = asyncio.create_task(meanwhile())
        await looked.wait()  # it found the old key current, so it retires it: that waits for this transaction
    assert await racing == rotated != old
    assert await current_keys(sessions) == 1
    async with sessions() as session:
        old_row = await session.get(SigningKey, old)
        assert old_row is not None and old_row.retired_at is not None and old_row.publish_until is not None


async def test_an_instance_with_another_secret_replaces_the_key_it_lost_the_race_to(
    sessions: async_sessionmaker[AsyncSession], clock: FrozenClock, settings: Settings
) -> None:
    """As for any current key it cannot unseal: it retires that one (still published) and signs with its own."""
    first = SigningKeyStore(HMAC_KEY, clock, settings)
    stranger = SigningKeyStore(b"another secret key, not ours....", clock, settings)
    async with sessions() as one, one.begin():
        lost_to = kid_of(await first.signing_key(SigningKeyRepository(one), ALGORITHM))
        looked = asyncio.Event()

        async def meanwhile() -> str:
            async with sessions() as other, other.begin():
                return kid_of(await stranger.signing_key(Looking(other, looked), ALGORITHM))

        racing = asyncio.create_task(meanwhile())
        await looked.wait()
    own = await racing
    assert own != lost_to
    assert await current_keys(sessions) == 1
    async with sessions() as session:
        current = await SigningKeyRepository(session).current(ALGORITHM)
        assert current is not None and current.kid == own
        assert lost_to in {row.kid for row in await SigningKeyRepository(session).published(clock.now())}
