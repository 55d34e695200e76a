"""The database engine: SQLite (WAL) by default, PostgreSQL through asyncpg, schema kept by Alembic.

SQLite URLs are written `sqlite+aiosqlite:///…` (the settings, the README); every SQLite URL runs on
`server.storage.sqlite_inline` instead, whose statements run on the event loop's thread (its docstring says why)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from vouchsim.server.storage import sqlite_inline
from vouchsim.server.storage.events import EventBus

# The connection pool of a database file or server: SQLAlchemy's default sizes, spelled out because
# `server.storage.session.own_transactions` admits as many units of work at once.
POOL_SIZE = 5
POOL_OVERFLOW = 10
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
    else:
        kwargs["pool_pre_ping"] = True
    engine = create_async_engine(url, **kwargs)
    if url.get_backend_name() == "sqlite":
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def create_sessionmaker(engine: AsyncEngine, events: EventBus | None = None) -> async_sessionmaker[AsyncSession]:
    """Sessions for `engine`; with `events`, what repositories revoke is announced on that bus at commit."""
    return async_sessionmaker(engine, expire_on_commit=False, info=events.session_info() if events else None)
