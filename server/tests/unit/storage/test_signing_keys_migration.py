"""Migration 0010 on SQLite and PostgreSQL: one current signing key per algorithm. A database where two instances
each stored a first key keeps the newest current (the one every instance signed with) and retires the others, which
stay published; from then on the database refuses a second current key of an algorithm."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.exc import IntegrityError

from vouchsim.server.storage.engine import create_engine, create_sessionmaker
from vouchsim.server.storage.migrate import downgrade, upgrade
from vouchsim.server.storage.models import SigningKey
from vouchsim.server.storage.repositories.signing_keys import SigningKeyRepository

pytestmark = pytest.mark.anyio

NOW = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def key(kid: str, algorithm: str, minutes: int, *, retired: bool = False) -> SigningKey:
    created = NOW + timedelta(minutes=minutes)
    return SigningKey(
        kid=kid,
        algorithm=algorithm,
        public_jwk={"kid": kid},
        private_sealed="sealed",
        created_at=created,
        retired_at=created + timedelta(minutes=1) if retired else None,
        publish_until=created + timedelta(hours=1) if retired else None,
    )


async def test_the_newest_key_of_each_algorithm_stays_current_and_the_others_stay_published(
    empty_database_url: str,
) -> None:
    engine = create_engine(empty_database_url)
    sessions = create_sessionmaker(engine)
    try:
        await upgrade(engine, "0006")
        async with sessions() as session, session.begin():
            session.add_all(
                [
                    key("ed-old", "Ed25519", 0, retired=True),
                    key("ed-a", "Ed25519", 1),  # two instances' first keys
                    key("ed-b", "Ed25519", 2),
                    key("es-only", "ES256", 1),
                ]
            )

        await upgrade(engine)

        async with sessions() as session:
            keys = SigningKeyRepository(session)
            current = await keys.current("Ed25519")
            assert current is not None and current.kid == "ed-b"
            loser = await session.get(SigningKey, "ed-a")
            assert loser is not None and loser.retired_at == NOW + timedelta(minutes=1) and loser.publish_until is None
            published = [row.kid for row in await keys.published(NOW + timedelta(days=365))]
            assert published == ["ed-a", "es-only", "ed-b"]  # ed-old's publish_until has passed
            es = await keys.current("ES256")
            assert es is not None and es.kid == "es-only"

        with pytest.raises(IntegrityError):
            async with sessions() as session, session.begin():
                session.add(key("ed-c", "Ed25519", 3))
        async with sessions() as session, session.begin():  # a retired one is not current: any number of them
            session.add(key("ed-d", "Ed25519", 4, retired=True))

        await downgrade(engine, "0006")
        async with sessions() as session, session.begin():
            session.add(key("ed-e", "Ed25519", 5))  # 0006 had no such rule
    finally:
        await engine.dispose()
