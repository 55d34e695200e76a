"""Keys that sign delegation tokens (`server.delegation.tokens`): per algorithm, the newest unretired key signs;
every key not past its `publish_until` is published in the JWKS. Retiring is a compare-and-swap, so two racing
rotations retire the old key once, and a partial unique index keeps one unretired key per algorithm, so two instances
making the first key at once store one (`add_current`)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vouchsim.server.storage.models import SigningKey


class SigningKeyRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add_current(self, row: SigningKey) -> bool:
        """Store `row` as its algorithm's current key; False (nothing stored) when another one is current already:
        one made meanwhile by another instance, which the caller reads with `current`."""
        try:
            async with self.session.begin_nested():
                self.session.add(row)
        except IntegrityError:
            return False
        return True

    async def current(self, algorithm: str) -> SigningKey | None:
        """The signing key for `algorithm`: the newest one not retired (ties broken by kid, so every instance picks
        the same)."""
        return await self.session.scalar(
            select(SigningKey)
            .where(SigningKey.retired_at.is_(None), SigningKey.algorithm == algorithm)
            .order_by(SigningKey.created_at.desc(), SigningKey.kid.desc())
            .limit(1)
        )

    async def published(self, now: datetime) -> list[SigningKey]:
        """Every key whose public half verifiers may still need, oldest first."""
        rows = await self.session.scalars(
            select(SigningKey)
            .where(or_(SigningKey.publish_until.is_(None), SigningKey.publish_until > now))
            .order_by(SigningKey.created_at, SigningKey.kid)
        )
        return list(rows)

    async def retire(self, kid: str, now: datetime, publish_until: datetime) -> bool:
        """Compare-and-swap: True only for the call that retired this key."""
        result = await self.session.execute(
            update(SigningKey)
            .where(SigningKey.kid == kid, SigningKey.retired_at.is_(None))
            .values(retired_at=now, publish_until=publish_until)
            .execution_options(synchronize_session=False)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]
