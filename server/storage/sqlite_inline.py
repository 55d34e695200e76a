"""SQLite for SQLAlchemy's async engine, its calls made inline on the event loop's thread instead of aiosqlite's.

Why: aiosqlite runs each DBAPI call (cursor, execute, fetchall, close, commit) on a worker thread of its own and
hands every result back through a queue, a GIL hand-off and `call_soon_threadsafe`. Measured on this machine, pinned
to one core, a one-row SELECT through SQLAlchemy took 221 µs of CPU with aiosqlite and 34 µs with the sync pysqlite
dialect; a decision runs about 20 statements, and a py-spy profile of the decision benchmark put 54 % of the loop's
samples in aiosqlite's `self._tx.put_nowait`. A statement on a local SQLite file takes microseconds, less than the
hop that was meant to keep it off the loop.

So this dialect is pysqlite's (`sqlite3`, the same legacy transaction handling aiosqlite had: the module issues
BEGIN before the first INSERT/UPDATE/DELETE, SELECTs before it run in autocommit), marked `is_async` so that
`create_async_engine` takes it; SQLAlchemy's greenlet runs the ORM and Core, and the sqlite3 calls made from it
simply run where they are. Rows are fetched when the statement runs, as SQLAlchemy's aiosqlite adapter did, so no
statement stays open (holding a read snapshot) after `execute` returns.

What must not run inline is the wait for SQLite's write lock. The transaction that holds it may live on this very
loop, waiting for its next `await`; SQLite's busy handler would sleep on the loop's thread and that transaction could
never finish. So connections are opened with `timeout=0` (no busy handler) and a statement or COMMIT that fails with
SQLITE_BUSY is retried after an asynchronous wait, until the `timeout` the engine was given (30 s by
`server.storage.engine`), then its "database is locked" OperationalError is raised as SQLite would have raised it.
A connection of the same engine that ends a write transaction wakes the waiters at once; a writer in another process
is noticed by the retries' backoff.

Writers of one engine do not even meet SQLITE_BUSY: before its first INSERT/UPDATE/DELETE a transaction takes the
engine's writer lock (`_Writers`, FIFO, on the loop) and gives it back when it ends. Retrying on SQLITE_BUSY
alone woke every waiting writer at each commit and all but one failed again: with 32 decisions in flight that was
about 30 failed attempts per commit, and the benchmark's decision round trips waited hundreds of milliseconds.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import time
import types
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar, cast

from sqlalchemy import pool
from sqlalchemy.dialects import registry
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL, AdaptedConnection
from sqlalchemy.engine.interfaces import ConnectArgsType
from sqlalchemy.util.concurrency import await_

DRIVER = "inline"
"""`sqlite+inline://…`: the URL `server.storage.engine` gives every SQLite database (users write sqlite+aiosqlite)."""

# SQLite's own busy handler sleeps 1, 2, 5, 10, 15, 20, 25, 25, 25, 50, 50, then 100 ms between attempts (sqlite3.c,
# sqliteDefaultBusyCallback); the same schedule, in seconds.
_BACKOFF = (0.001, 0.002, 0.005, 0.010, 0.015, 0.020, 0.025, 0.025, 0.025, 0.050, 0.050, 0.100)

_T = TypeVar("_T")


class _WriteReleases:
    """Wakes the engine's waiters for the write lock when one of its connections ends a transaction."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    def released(self) -> None:
        for waiter in self._waiters:
            _wake(waiter)

    async def wait(self, at_most: float) -> None:
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(at_most, _wake, waiter)
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiters.discard(waiter)


class _Writers:
    """One write transaction at a time among an engine's connections, in the order they asked (an asyncio.Lock),
    waited for on the loop like the busy retries, and for as long (`timeout`): then "database is locked", as
    SQLite would say."""

    def __init__(self) -> None:
        self._lock: asyncio.Lock | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queued = 0  # transactions waiting for the lock (all of them ask here)

    def acquire(self, timeout: float) -> asyncio.Lock:
        loop = asyncio.get_running_loop()
        if self._lock is None or self._loop is not loop:  # an engine outliving its loop (tests) gets a fresh lock
            self._lock, self._loop = asyncio.Lock(), loop
            self._queued = 0
        lock = self._lock
        if not lock.locked() and not self._queued:
            # Free with nobody ahead: asyncio.Lock takes it without waiting, so no timer to arm and cancel (the
            # timeout's TimerHandle cost ~5 µs of a write transaction's CPU; most find the lock free).
            await_(lock.acquire())
            return lock
        self._queued += 1
        try:
            await_(_acquire(lock, timeout))
        except TimeoutError:
            raise sqlite3.OperationalError("database is locked") from None
        finally:
            if self._lock is lock:
                self._queued -= 1
        return lock


async def _acquire(lock: asyncio.Lock, seconds: float) -> None:
    # Not wait_for, which makes a task: a free lock is taken without the loop getting a turn.
    async with asyncio.timeout(seconds):
        await lock.acquire()


_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE")


def _writes(operation: str) -> bool:
    """Whether sqlite3 begins a write transaction for this statement (its legacy implicit BEGIN precedes these)."""
    return operation.lstrip()[:7].upper().startswith(_WRITES)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _is_busy(error: sqlite3.OperationalError) -> bool:
    code = getattr(error, "sqlite_errorcode", None)
    return code is not None and code & 0xFF == sqlite3.SQLITE_BUSY


class _Ready:
    """An awaitable that is done at once: awaiting it switches to the loop's side of the greenlet and back, without
    giving the loop a turn."""

    def __await__(self) -> Generator[Any, None, None]:
        return
        yield  # a generator that returns at once


_READY = _Ready()


def _enter_statement() -> None:
    # aiosqlite's adapter could only be called from SQLAlchemy's greenlet (its await_ raised MissingGreenlet
    # otherwise): await_ keeps that, so a lazy load outside `await` fails on SQLite as it does on PostgreSQL. And
    # AsyncConnection.execute raises AwaitRequired when its statement never switched out of the greenlet (its check
    # for a sync DBAPI given to the async engine); this switch, which costs about a microsecond, is the one it sees.
    await_(_READY)


class InlineConnection(AdaptedConnection):
    """A sqlite3 connection as SQLAlchemy's DBAPI connection: sqlite3 calls in place, lock waits on the loop."""

    __slots__ = ("_busy_timeout", "_held", "_releases", "_sqlite", "_writers")

    def __init__(
        self, connection: sqlite3.Connection, releases: _WriteReleases, writers: _Writers, busy_timeout: float
    ) -> None:
        self._connection = cast("Any", connection)  # AdaptedConnection's `driver_connection`
        self._sqlite = connection
        self._releases = releases
        self._writers = writers
        self._busy_timeout = busy_timeout
        self._held: asyncio.Lock | None = None  # the engine's writer lock, while this transaction writes

    def before(self, operation: str) -> None:
        """Take the engine's writer lock before this transaction's first write (see `_Writers`)."""
        if self._held is None and _writes(operation):
            self._held = self._writers.acquire(self._busy_timeout)

    def _ended(self) -> None:
        held, self._held = self._held, None
        if held is not None and held.locked():
            held.release()

    def cursor(self) -> InlineCursor:
        return InlineCursor(self, self._sqlite.cursor())

    def execute(self, operation: str, parameters: Sequence[Any] | None = None) -> InlineCursor:
        cursor = self.cursor()
        cursor.execute(operation, parameters)
        return cursor

    def commit(self) -> None:
        _enter_statement()
        connection = self._sqlite
        ended = connection.in_transaction
        try:
            connection.commit()
        except sqlite3.OperationalError as error:
            if str(error) != "database is locked":
                raise  # "SQL statements in progress" is SQLITE_BUSY too, but ours: no wait ends it, none was made
            # SQLite: a COMMIT that fails with SQLITE_BUSY leaves the transaction active, to be committed again.
            self.retry_while_busy(error, connection.commit, fresh=False)
        self._ended()
        if ended:
            self._releases.released()

    def rollback(self) -> None:
        connection = self._sqlite
        ended = connection.in_transaction
        try:
            connection.rollback()
        finally:
            self._ended()
        if ended:
            self._releases.released()

    def close(self) -> None:
        try:
            ended = self._sqlite.in_transaction
        except sqlite3.ProgrammingError:
            self._ended()
            return  # closed already
        try:
            self._sqlite.close()
        finally:
            self._ended()
        if ended:
            self._releases.released()

    @property
    def in_transaction(self) -> bool:
        return self._sqlite.in_transaction

    @property
    def isolation_level(self) -> str | None:
        return self._sqlite.isolation_level

    @isolation_level.setter
    def isolation_level(self, value: str | None) -> None:
        self._sqlite.isolation_level = value  # type: ignore[assignment]  # sqlite3 accepts "" and None

    def create_function(self, *args: Any, **kwargs: Any) -> None:
        self._sqlite.create_function(*args, **kwargs)

    def retry_while_busy(self, error: sqlite3.OperationalError, attempt: Callable[[], _T], *, fresh: bool) -> _T:
        """Run `attempt` again, waiting on the loop between attempts, while it fails with SQLITE_BUSY.

        `fresh`: the connection was in no transaction when the statement first ran. Which statements get here, in
        WAL mode with the legacy implicit BEGIN:
        - the first INSERT/UPDATE/DELETE of a transaction (sqlite3 sent BEGIN, DEFERRED, just before it), when
          another connection holds the write lock (SQLITE_BUSY), or when one committed between this statement taking
          its read snapshot and the write lock (SQLITE_BUSY_SNAPSHOT). The statement failed before writing anything
          and, being the transaction's first, held no snapshot before it: rolling back the empty BEGIN and running
          it again is exactly the first attempt, later. SQLite's busy handler does the same (sqlite3BtreeBeginTrans
          retries only while the connection holds no read transaction);
        - a SELECT or PRAGMA in autocommit (PRAGMA journal_mode=WAL on a new file needs an exclusive lock; a reader
          can meet SQLITE_BUSY while another connection recovers the WAL): nothing read yet, so again the same;
        - a statement inside a transaction that has taken no write lock yet (a SAVEPOINT opened it, as
          `session.begin_nested()` does): plain SQLITE_BUSY means the lock is taken, and SQLite grants it later
          only if this transaction's snapshot is still the newest (else SQLITE_BUSY_SNAPSHOT), so retrying cannot
          write over a change this transaction did not see;
        - COMMIT, in rollback-journal mode (WAL's writer holds its lock already): the transaction stays, to be
          committed again.
        Not retried: SQLITE_BUSY_SNAPSHOT when the connection was already in a transaction. Its snapshot may be
        older than the last commit, and no wait makes it newer; the error is raised at once, as SQLite raises it
        without calling its busy handler. After a transaction's first write it holds the write lock, so its later
        statements do not get SQLITE_BUSY at all.
        """
        deadline = time.monotonic() + self._busy_timeout
        attempt_number = 0
        while True:
            if not _is_busy(error):
                raise error
            if error.sqlite_errorcode == sqlite3.SQLITE_BUSY_SNAPSHOT and not fresh:
                raise error
            left = deadline - time.monotonic()
            if left <= 0:
                raise error
            if fresh and self._sqlite.in_transaction:
                self._sqlite.rollback()  # only sqlite3's BEGIN for the failed statement: nothing in it
            await_(self._releases.wait(min(_BACKOFF[min(attempt_number, len(_BACKOFF) - 1)], left)))
            attempt_number += 1
            try:
                return attempt()
            except sqlite3.OperationalError as again:
                error = again


class InlineCursor:
    """A sqlite3 cursor whose rows are fetched when its statement runs (the statement is then finished)."""

    __slots__ = ("_connection", "_cursor", "_rows")

    def __init__(self, connection: InlineConnection, cursor: sqlite3.Cursor) -> None:
        self._connection = connection
        self._cursor = cursor
        self._rows: collections.deque[Any] = collections.deque()

    @property
    def description(self) -> Any:
        return self._cursor.description

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def arraysize(self) -> int:
        return self._cursor.arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._cursor.arraysize = value

    def execute(self, operation: str, parameters: Sequence[Any] | None = None) -> None:
        _enter_statement()
        self._connection.before(operation)
        cursor = self._cursor
        fresh = not self._connection.in_transaction
        try:
            if parameters is None:
                cursor.execute(operation)
            else:
                cursor.execute(operation, parameters)
        except sqlite3.OperationalError as error:
            self._connection.retry_while_busy(
                error, lambda: cursor.execute(operation, () if parameters is None else parameters), fresh=fresh
            )
        if cursor.description is not None:
            self._rows = collections.deque(cursor.fetchall())

    def executemany(self, operation: str, parameters: Sequence[Sequence[Any]]) -> None:
        _enter_statement()
        self._connection.before(operation)
        cursor = self._cursor
        fresh = not self._connection.in_transaction
        try:
            cursor.executemany(operation, parameters)
        except sqlite3.OperationalError as error:
            self._connection.retry_while_busy(error, lambda: cursor.executemany(operation, parameters), fresh=fresh)

    def fetchone(self) -> Any:
        return self._rows.popleft() if self._rows else None

    def fetchmany(self, size: int | None = None) -> list[Any]:
        rows = self._rows
        return [rows.popleft() for _ in range(min(self.arraysize if size is None else size, len(rows)))]

    def fetchall(self) -> list[Any]:
        rows = list(self._rows)
        self._rows.clear()
        return rows

    def __iter__(self) -> Iterator[Any]:
        while self._rows:
            yield self._rows.popleft()

    def close(self) -> None:
        self._rows.clear()
        self._cursor.close()

    async def _async_soft_close(self) -> None:
        """What `AsyncConnection.execute` calls before handing the result over (its cursor may not be reached from
        outside the greenlet): here the rows are fetched and the statement finished already, nothing to do."""


class InlineDBAPI(types.ModuleType):
    """sqlite3 as the dialect's DBAPI module, with a `connect` that opens an `InlineConnection`.

    One per engine (SQLAlchemy imports the DBAPI once per `create_engine`): its connections share the wake-ups."""

    def __init__(self) -> None:
        super().__init__("sqlite3_inline")
        self.__dict__.update((name, value) for name, value in vars(sqlite3).items() if not name.startswith("_"))
        del self.__dict__["connect"]  # the method below
        self.releases = _WriteReleases()
        self.writers = _Writers()

    def connect(self, database: str, timeout: float = 5.0, **kwargs: Any) -> InlineConnection:
        """`timeout` (seconds, sqlite3's default 5) bounds the asynchronous wait for a lock; SQLite gets none."""
        connection = sqlite3.connect(database, timeout=0, **kwargs)
        return InlineConnection(connection, self.releases, self.writers, timeout)


class SQLiteDialect_inline(SQLiteDialect_pysqlite):
    driver = DRIVER
    is_async = True
    supports_statement_cache = True

    @classmethod
    def import_dbapi(cls) -> InlineDBAPI:
        return InlineDBAPI()

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        # As aiosqlite's dialect: a queue a coroutine can wait on for a file, the one connection for :memory:.
        return pool.AsyncAdaptedQueuePool if cls._is_url_file_db(url) else pool.StaticPool

    def create_connect_args(self, url: URL) -> ConnectArgsType:
        args, kwargs = super().create_connect_args(url)
        # Every call comes from the loop's thread, but the pool may close a connection from the garbage collector's.
        kwargs["check_same_thread"] = False
        return args, kwargs

    def get_driver_connection(self, connection: Any) -> sqlite3.Connection:
        return connection.driver_connection  # type: ignore[no-any-return]


registry.register(f"sqlite.{DRIVER}", __name__, "SQLiteDialect_inline")
