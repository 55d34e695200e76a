"""The engine's pool on PostgreSQL: a connection the server closed is replaced, not handed to a request."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text

pytestmark = pytest.mark.anyio


async def test_a_connection_the_database_closed_is_not_handed_out(engine: Any, database_url: str) -> None:
    """What `pool_pre_ping` did with three round trips per transaction, known locally: after PostgreSQL ends the
    pooled connection's backend (a restart does that to all of them), the next transaction gets a new one."""
    if not database_url.startswith("postgresql"):
        pytest.skip("SQLite has no server to close a connection")
    import asyncpg

    closed = asyncio.Event()
    async with engine.connect() as connection:
        backend = await connection.scalar(text("SELECT pg_backend_pid()"))
        raw = await connection.get_raw_connection()
        raw.driver_connection.add_termination_listener(lambda _: closed.set())
    # From outside the pool, which now holds just that connection, idle.
    admin = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await admin.execute("SELECT pg_terminate_backend($1)", backend)
    finally:
        await admin.close()
    await asyncio.wait_for(closed.wait(), 10)  # asyncpg saw the socket close, on the event loop
    async with engine.connect() as connection:
        assert await connection.scalar(text("SELECT pg_backend_pid()")) != backend
