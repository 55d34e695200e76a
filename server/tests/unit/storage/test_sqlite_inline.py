"""SQLite on the event loop's thread (server.storage.sqlite_inline): a write that meets another's lock waits for it
on the loop, which keeps running, and fails past the engine's timeout as SQLite's own busy handler made it fail."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from vouchsim.server.storage.engine import create_engine

pytestmark = pytest.mark.anyio


class Ticker:
    """A task that counts the loop's turns: it moves only while nothing blocks the loop."""

    def __init__(self) -> None:
        self.ticks = 0
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            self.ticks += 1
            await asyncio.sleep(0)

    async def turns(self, count: int) -> None:
        """Give the loop `count` turns (the ticker's among them)."""
        for _ in range(count):
            await asyncio.sleep(0)

    def stop(self) -> None:
        self._task.cancel()


@pytest.fixture
async def ticker() -> AsyncIterator[Ticker]:
    ticker = Ticker()
    yield ticker
    ticker.stop()


async def _engine(path: Path, query: str = "") -> AsyncEngine:
    engine = create_engine(f"sqlite+aiosqlite:///{path}{query}")  # the URL users write, mapped to the inline dialect
    async with engine.begin() as connection:
        await connection.execute(text("CREATE TABLE IF NOT EXISTS items (id INTEGER PRIMARY KEY, name TEXT)"))
    return engine


def _watch(engine: AsyncEngine, fragment: str) -> asyncio.Event:
    """Set once `engine` starts running a statement containing `fragment` (before the lock decides its fate)."""
    started = asyncio.Event()

    def before(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if fragment in statement:
            started.set()

    event.listen(engine.sync_engine, "before_cursor_execute", before)
    return started


async def _names(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as connection:
        return list((await connection.execute(text("SELECT name FROM items ORDER BY id"))).scalars())


async def _insert(engine: AsyncEngine, name: str) -> None:
    async with engine.begin() as connection:
        await connection.execute(text("INSERT INTO items (name) VALUES (:name)"), {"name": name})


async def _waiting(task: asyncio.Task[Any], started: asyncio.Event, ticker: Ticker) -> None:
    """`task` has started its statement and is still waiting while the loop goes on turning."""
    await started.wait()
    before = ticker.ticks
    await ticker.turns(200)
    assert not task.done()
    assert ticker.ticks >= before + 100  # the loop kept running while the write waited


async def test_a_write_waits_for_the_engines_other_transaction_without_blocking_the_loop(
    tmp_path: Path, ticker: Ticker
) -> None:
    engine = await _engine(tmp_path / "db.sqlite")
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold_the_write_lock() -> None:
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO items (name) VALUES ('first')"))
            holding.set()
            await release.wait()  # the transaction, and SQLite's write lock, stay open across this await

    try:
        first = asyncio.create_task(hold_the_write_lock())
        await holding.wait()
        second = asyncio.create_task(_insert(engine, "second"))
        await _waiting(second, _watch(engine, "INSERT"), ticker)
        release.set()
        await asyncio.gather(first, second)
        assert await _names(engine) == ["first", "second"]
        async with engine.connect() as connection:  # the pragmas of server.storage.engine still apply
            assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
            assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
    finally:
        await engine.dispose()


async def test_a_savepoints_first_write_waits_for_the_lock_too(tmp_path: Path, ticker: Ticker) -> None:
    """`session.begin_nested()` (the server keys' get-or-create) opens the transaction with SAVEPOINT, before any
    write: its INSERT waits for the lock as SQLite's busy handler made it wait."""
    engine = await _engine(tmp_path / "db.sqlite")
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold_the_write_lock() -> None:
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO items (name) VALUES ('first')"))
            holding.set()
            await release.wait()

    async def insert_in_a_savepoint() -> None:
        async with engine.begin() as connection, connection.begin_nested():
            await connection.execute(text("INSERT INTO items (name) VALUES ('nested')"))

    try:
        first = asyncio.create_task(hold_the_write_lock())
        await holding.wait()
        started = _watch(engine, "INSERT")
        nested = asyncio.create_task(insert_in_a_savepoint())
        await _waiting(nested, started, ticker)
        release.set()
        await asyncio.gather(first, nested)
        assert await _names(engine) == ["first", "nested"]
    finally:
        await engine.dispose()


def _lock_from_outside(path: Path) -> sqlite3.Connection:
    """Another writer, not of this engine (a plain sqlite3 connection), holding SQLite's write lock."""
    outsider = sqlite3.connect(path, isolation_level=None)
    outsider.execute("BEGIN IMMEDIATE")
    outsider.execute("INSERT INTO items (name) VALUES ('outsider')")
    return outsider


async def test_a_write_waits_for_a_writer_outside_the_engine(tmp_path: Path, ticker: Ticker) -> None:
    engine = await _engine(tmp_path / "db.sqlite")
    outsider = _lock_from_outside(tmp_path / "db.sqlite")
    try:
        started = _watch(engine, "INSERT")
        ours = asyncio.create_task(_insert(engine, "ours"))
        await _waiting(ours, started, ticker)
        outsider.execute("COMMIT")  # nothing of ours hears this: the backoff's next attempt finds the lock free
        await ours
        assert await _names(engine) == ["outsider", "ours"]
    finally:
        outsider.close()
        await engine.dispose()


async def test_past_its_timeout_a_write_fails_as_sqlite_fails_it(tmp_path: Path, ticker: Ticker) -> None:
    engine = await _engine(tmp_path / "db.sqlite", "?timeout=0.2")  # 30 s unless the URL says otherwise
    outsider = _lock_from_outside(tmp_path / "db.sqlite")
    try:
        before = ticker.ticks
        with pytest.raises(OperationalError, match="database is locked") as failure:
            await _insert(engine, "ours")
        assert isinstance(failure.value.orig, sqlite3.OperationalError)
        assert failure.value.orig.sqlite_errorcode == sqlite3.SQLITE_BUSY
        assert ticker.ticks > before  # it waited on the loop, not in SQLite
        outsider.execute("COMMIT")
        await _insert(engine, "later")  # the connection that failed is usable again
        assert await _names(engine) == ["outsider", "later"]
    finally:
        outsider.close()
        await engine.dispose()


async def test_a_stale_snapshot_is_not_retried(tmp_path: Path, ticker: Ticker) -> None:
    """A transaction that read before another committed cannot write (SQLITE_BUSY_SNAPSHOT): no wait can fix its
    snapshot, so the error comes at once, without the loop getting a turn, as it came from SQLite."""
    engine = await _engine(tmp_path / "db.sqlite")
    try:
        async with engine.connect() as connection:
            await connection.begin()
            await connection.begin_nested()  # SAVEPOINT: a transaction SQLite keeps across statements
            assert await connection.scalar(text("SELECT count(*) FROM items")) == 0  # its read snapshot
            outsider = sqlite3.connect(tmp_path / "db.sqlite")
            outsider.execute("INSERT INTO items (name) VALUES ('outsider')")
            outsider.commit()
            outsider.close()
            before = ticker.ticks
            with pytest.raises(OperationalError, match="database is locked") as failure:
                await connection.execute(text("INSERT INTO items (name) VALUES ('stale')"))
            assert ticker.ticks == before  # no wait: the loop never got a turn
            assert isinstance(failure.value.orig, sqlite3.OperationalError)
            assert failure.value.orig.sqlite_errorcode == sqlite3.SQLITE_BUSY_SNAPSHOT
            await connection.rollback()
        assert await _names(engine) == ["outsider"]
    finally:
        await engine.dispose()


async def test_many_writers_of_one_engine_all_get_their_turn(tmp_path: Path) -> None:
    """32 transactions that each keep the lock across an await (as a decision's does while it publishes)."""
    engine = await _engine(tmp_path / "db.sqlite")

    def writer(name: str) -> Callable[[], Coroutine[Any, Any, None]]:
        async def write() -> None:
            async with engine.begin() as connection:
                await connection.execute(text("INSERT INTO items (name) VALUES (:name)"), {"name": name})
                await asyncio.sleep(0)
                await connection.execute(text("UPDATE items SET name = name || '!' WHERE name = :name"), {"name": name})

        return write

    try:
        names = [f"w{number:02}" for number in range(32)]
        await asyncio.gather(*(writer(name)() for name in names))
        assert sorted(await _names(engine)) == [f"{name}!" for name in names]
    finally:
        await engine.dispose()


async def test_writers_of_one_engine_queue_for_the_lock_and_never_meet_sqlite_busy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They wait on the engine's writer lock (first come, first served among those holding a pooled connection)
    instead of failing with SQLITE_BUSY and retrying: each commit woke every retrying writer, and all but one failed
    again."""
    from vouchsim.server.storage.sqlite_inline import InlineConnection

    retries: list[str] = []
    original = InlineConnection.retry_while_busy

    def counted(self: InlineConnection, error: sqlite3.OperationalError, *args: Any, **kwargs: Any) -> Any:
        retries.append(str(error))
        return original(self, error, *args, **kwargs)

    monkeypatch.setattr(InlineConnection, "retry_while_busy", counted)
    engine = await _engine(tmp_path / "db.sqlite")

    async def write(name: str) -> None:
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO items (name) VALUES (:name)"), {"name": name})
            await asyncio.sleep(0.001)  # holds the lock across a real wait, as a decision's commit hooks may

    try:
        names = [f"w{number:02}" for number in range(32)]
        tasks = []
        for name in names:  # each asks for the lock before the next is started
            tasks.append(asyncio.create_task(write(name)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        assert retries == []
        assert sorted(await _names(engine)) == names
    finally:
        await engine.dispose()


async def test_a_writer_waits_for_the_engines_lock_no_longer_than_the_timeout(tmp_path: Path) -> None:
    engine = await _engine(tmp_path / "db.sqlite", "?timeout=0.2")
    try:
        async with engine.begin() as holder:
            await holder.execute(text("INSERT INTO items (name) VALUES ('holder')"))
            with pytest.raises(OperationalError, match="database is locked"):
                async with engine.begin() as other:
                    await other.execute(text("INSERT INTO items (name) VALUES ('other')"))
        # The holder committed; the lock is free again for the next writer.
        async with engine.begin() as after:
            await after.execute(text("INSERT INTO items (name) VALUES ('after')"))
        assert sorted(await _names(engine)) == ["after", "holder"]
    finally:
        await engine.dispose()
