"""Shared fixtures: a fresh database per test (SQLite always; PostgreSQL too when VOUCHSIM_TEST_POSTGRES_URL is
set), a frozen clock, and the app under test."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from vouchsim.server.core.clock import FrozenClock

POSTGRES_URL = os.environ.get("VOUCHSIM_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", *(["postgres"] if POSTGRES_URL else [])]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def clock() -> FrozenClock:
    return FrozenClock()


def _admin_dsn(url: str) -> tuple[str, str]:
    """asyncpg DSN of the admin database and the URL prefix to append a database name to."""
    base, _, _db = url.rpartition("/")
    return base.replace("postgresql+asyncpg://", "postgresql://") + "/" + _db, base


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nobody else uses, dropped afterwards so no tables are left behind."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'vouchsim.db'}"
        return
    import asyncio

    import asyncpg

    admin, base = _admin_dsn(POSTGRES_URL)
    name = f"vouchsim_test_{secrets.token_hex(6)}"

    async def run(sql: str) -> None:
        connection = await asyncpg.connect(admin)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    async def create() -> None:
        # CREATE DATABASE copies template1 and fails while anything else is connected to it: retry briefly.
        for attempt in range(50):
            try:
                await run(f'CREATE DATABASE "{name}"')
                return
            except asyncpg.exceptions.ObjectInUseError:
                await asyncio.sleep(0.1 * (attempt + 1))
        await run(f'CREATE DATABASE "{name}"')

    asyncio.run(create())
    try:
        yield f"{base}/{name}"
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[object]:
    from vouchsim.server.storage.engine import create_engine
    from vouchsim.server.storage.migrate import upgrade

    engine = create_engine(database_url)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
async def bus(database_url: str) -> AsyncIterator[object]:
    """An event bus on the test's database (LISTEN/NOTIFY on PostgreSQL, in-process on SQLite)."""
    from vouchsim.server.storage.events import EventBus

    events = EventBus()
    await events.start(database_url)
    try:
        yield events
    finally:
        await events.stop()
