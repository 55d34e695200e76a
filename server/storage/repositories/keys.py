"""Server-wide keys, created once by whichever instance starts first."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from vouchsim.server.storage.models import ServerKey


async def get_or_create_key(session: AsyncSession, name: str, make: Callable[[], str], now: datetime) -> str:
    existing = await session.scalar(select(ServerKey.value).where(ServerKey.name == name))
    if existing is not None:
        return existing
    try:
        async with session.begin_nested():
            session.add(ServerKey(name=name, value=make(), created_at=now))
    except IntegrityError:
        pass  # another instance won the race; use its key
    value = await session.scalar(select(ServerKey.value).where(ServerKey.name == name))
    assert value is not None
    return value
