"""Database sessions as types and units of work, for layers that may not import SQLAlchemy themselves.

Routes annotate the `db` dependency with `DbSession`; the import-linter contract "Only the storage layer
speaks SQL" forbids them `sqlalchemy.ext.asyncio.AsyncSession` directly.

A service that must not hold a connection for a whole request (a call that waits ~45 s for a decision) takes
`Transactions` instead of a session: each `async with transactions() as session:` is one unit of work.
`own_transactions` opens a short transaction per unit; `shared_transaction` runs every unit inside a session
someone else owns (the request's), which that owner commits.

`own_transactions` admits as many units at once as the pool has connections; the others wait for their turn
before they make a session. Waiting in the pool's queue instead, each held a session and SQLAlchemy's greenlet
with its stack: when a thousand waiting MCP calls arrived together on PostgreSQL, that was about 9 MB at once,
which pymalloc could not give back afterwards (its arenas were shared with the calls' long-lived objects), so the
server's peak memory kept it. A turn that comes free goes first to a task that has had one before: finishing a
request's work comes before starting another's. In arrival order only, each of those thousand calls read its new
delegation back only once all thousand had been created, and the reads ran into the decisions that followed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, suppress
from contextvars import ContextVar

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from vouchsim.server.core.errors import VouchsimError
from vouchsim.server.storage.engine import CONNECTIONS

DbSession = AsyncSession
SessionFactory = async_sessionmaker[AsyncSession]
Transactions = Callable[[], AbstractAsyncContextManager[AsyncSession]]

__all__ = [
    "DbSession",
    "SessionFactory",
    "Transactions",
    "own_transactions",
    "shared_transaction",
    "statement_by_statement",
    "transaction",
]


# Whether this task is inside a unit already: a unit opened within another is not made to wait again (with every
# turn taken by units waiting for a nested one, none could go on).
_ADMITTED: ContextVar[bool] = ContextVar("vouchsim_unit_admitted", default=False)
# Whether this task (or the one that made it) has had a turn before: it then goes ahead of those that had none.
_CONTINUING: ContextVar[bool] = ContextVar("vouchsim_unit_continuing", default=False)


class _Turns:
    """At most `size` holders at once. A turn given back passes straight to a waiter: first to those continuing,
    then to the others, each in arrival order."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._continuing: deque[asyncio.Future[None]] = deque()
        self._new: deque[asyncio.Future[None]] = deque()

    async def take(self, *, continuing: bool) -> None:
        if self._free > 0:  # only when nobody waits: every turn given back while some wait is handed over
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._continuing if continuing else self._new
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.give()  # handed a turn just as it was cancelled: pass it on
            else:
                with suppress(ValueError):
                    queue.remove(waiter)
            raise

    def give(self) -> None:
        for queue in (self._continuing, self._new):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1


@asynccontextmanager
async def transaction(sessions: SessionFactory) -> AsyncIterator[AsyncSession]:
    """`async with sessions() as session, session.begin():`, with the session closed inline once its transaction
    has ended. AsyncSession's own exit closes it in a task of its own (so that a cancellation cannot abandon the
    close halfway): a task and a loop turn per transaction, ~45 µs of CPU measured on SQLite, for a close that
    releases nothing once the transaction has committed or rolled back (its connection went back with it)."""
    session = sessions()
    try:
        async with session.begin():
            yield session
    finally:
        if session.in_transaction():  # the transaction's end was interrupted: AsyncSession's own exit closes it
            async with session:
                pass
        else:
            session.sync_session.close()  # forgets the identity map; no I/O


async def statement_by_statement(session: AsyncSession) -> None:
    """On PostgreSQL, let each statement of `session` commit on its own: no BEGIN and no COMMIT, two round trips of
    a unit of work's four. Only for a unit whose every write is one statement that stands alone, and whose reads need
    no common snapshot (under READ COMMITTED each statement takes its own anyway): a device's decision, whose
    compare-and-swap remembers the request's nonce and sends its NOTIFY in the statement that decides. Call it before
    the session's first statement; the pool gives the connection back to the next one in its usual mode. SQLite
    keeps its transaction (its writer lock is taken per transaction)."""
    if session.get_bind().dialect.name == "postgresql":
        await session.connection(execution_options={"isolation_level": "AUTOCOMMIT"})


def own_transactions(sessions: SessionFactory, *, at_once: int = CONNECTIONS) -> Transactions:
    """Each unit is a fresh session in its own transaction, returned to the pool when the unit ends; at most
    `at_once` units at a time (the module's docstring says why).

    Committed when the unit ends, and also when it raises a domain error (`VouchsimError`): as in the device
    API, a refusal is an answer, and what was recorded on the way (an expiry) stands. Anything else rolls back.
    """
    turns = _Turns(at_once)

    @asynccontextmanager
    async def unit() -> AsyncIterator[AsyncSession]:
        nested = _ADMITTED.get()
        if not nested:
            await turns.take(continuing=_CONTINUING.get())
        admitted = None if nested else _ADMITTED.set(True)
        _CONTINUING.set(True)  # for the rest of this task, and the tasks it makes from now on
        try:
            async with transaction(sessions) as session:
                try:
                    yield session
                except VouchsimError:
                    await session.commit()
                    raise
        finally:
            if admitted is not None:
                _ADMITTED.reset(admitted)
                turns.give()

    return unit


def shared_transaction(session: AsyncSession) -> Transactions:
    """Every unit runs in `session`'s transaction; its owner (one request) commits or rolls back."""

    @asynccontextmanager
    async def unit() -> AsyncIterator[AsyncSession]:
        yield session

    return unit
