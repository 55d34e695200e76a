"""The database engine: SQLite (WAL) by default, PostgreSQL through asyncpg, schema kept by Alembic.

SQLite URLs are written `sqlite+aiosqlite:///…` (the settings, the README); every SQLite URL runs on
`server.storage.sqlite_inline` instead, whose statements run on the event loop's thread (its docstring says why)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from vouchsim.server.storage import sqlite_inline
from vouchsim.server.storage.events import EventBus

# The connection pool of a database file or server, every connection kept once opened: with SQLAlchemy's default
# (5, and 10 more opened on demand, closed again when 5 are idle) a burst of 32 device decisions opened and closed a
# connection every dozen decisions (34 PostgreSQL sessions for 400), each an SSL attempt, an authentication and a
# backend. `server.storage.session.own_transactions` admits as many units of work at once.
POOL_SIZE = 15
POOL_OVERFLOW = 0
CONNECTIONS = POOL_SIZE + POOL_OVERFLOW

# A write waits this long for another's lock before failing with "database is locked" (`?timeout=` in the URL
# overrides it).
SQLITE_BUSY_TIMEOUT = 30.0


def create_engine(database_url: str) -> AsyncEngine:
    url = make_url(database_url)
    kwargs: dict[str, Any] = {"pool_size": POOL_SIZE, "max_overflow": POOL_OVERFLOW}
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        else:
            kwargs = {}  # one connection shared (StaticPool), which takes no sizes
        url = url.set(drivername=f"sqlite+{sqlite_inline.DRIVER}")
        if "timeout" not in url.query:
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT}
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    else:
        event.listen(engine.sync_engine.pool, "checkout", _drop_closed)
    return engine


def _drop_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """A pooled PostgreSQL connection the server closed (a restart, an administrator, an idle timeout) is not handed
    out: asyncpg saw its socket close, and the pool replaces it (SQLAlchemy retries a checkout that raises this).

    Instead of `pool_pre_ping`, whose ping on asyncpg is three round trips (BEGIN, `;`, ROLLBACK) before every
    transaction: a third of a device decision's round trips, and of its CPU."""
    if dbapi_connection.driver_connection.is_closed():
        raise DisconnectionError("the database closed this pooled connection")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine, events: EventBus | None = None) -> async_sessionmaker[AsyncSession]:
    """Sessions for `engine`; with `events`, what repositories revoke is announced on that bus at commit."""
    return async_sessionmaker(engine, expire_on_commit=False, info=events.session_info() if events else None)
