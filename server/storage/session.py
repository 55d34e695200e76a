"""Database sessions as types and units of work, for layers that may not import SQLAlchemy themselves.

Routes annotate the `db` dependency with `DbSession`; the import-linter contract "Only the storage layer
speaks SQL" forbids them `sqlalchemy.ext.asyncio.AsyncSession` directly.

A service that must not hold a connection for a whole request (a call that waits ~45 s for a decision) takes
`Transactions` instead of a session: each `async with transactions() as session:` is one unit of work.
`own_transactions` opens a short transaction per unit; `shared_transaction` runs every unit inside a session
someone else owns (the request's), which that owner commits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vouchsim.server.core.errors import VouchsimError

DbSession = AsyncSession
SessionFactory = async_sessionmaker[AsyncSession]
Transactions = Callable[[], AbstractAsyncContextManager[AsyncSession]]

__all__ = ["DbSession", "SessionFactory", "Transactions", "own_transactions", "shared_transaction"]


def own_transactions(sessions: SessionFactory) -> Transactions:
    """Each unit is a fresh session in its own transaction, returned to the pool when the unit ends.

    Committed when the unit ends, and also when it raises a domain error (`VouchsimError`): as in the device
    API, a refusal is an answer, and what was recorded on the way (an expiry) stands. Anything else rolls back.
    """

    @asynccontextmanager
    async def unit() -> AsyncIterator[AsyncSession]:
        async with sessions() as session, session.begin():
            try:
                yield session
            except VouchsimError:
                await session.commit()
                raise

    return unit


def shared_transaction(session: AsyncSession) -> Transactions:
    """Every unit runs in `session`'s transaction; its owner (one request) commits or rolls back."""

    @asynccontextmanager
    async def unit() -> AsyncIterator[AsyncSession]:
        yield session

    return unit
