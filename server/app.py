"""The composition root: `create_app(settings)` wires storage, services and routes; nothing imports this module."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass

from litestar import Litestar, get
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.core.clock import Clock, SystemClock
from server.core.crypto import random_token
from server.settings import Settings
from server.storage.engine import create_engine, create_sessionmaker
from server.storage.migrate import upgrade
from server.storage.repositories.keys import get_or_create_key

log = logging.getLogger("vouchsim")


@dataclass(frozen=True)
class Runtime:
    """What lives for the life of the process: made in the lifespan, handed to routes through DI."""

    settings: Settings
    clock: Clock
    engine: AsyncEngine
    sessions: async_sessionmaker[AsyncSession]
    hmac_key: bytes


async def provide_runtime(state: State) -> Runtime:
    runtime: Runtime = state.runtime
    return runtime


async def provide_db_session(state: State) -> AsyncIterator[AsyncSession]:
    """One transaction per request: committed when the handler returns, rolled back when it raises."""
    runtime: Runtime = state.runtime
    async with runtime.sessions() as session:
        async with session.begin():
            yield session


@get("/healthz", tags=["ops"])
async def healthz(state: State) -> dict[str, str]:
    """Readiness: the database answers."""
    runtime: Runtime = state.runtime
    async with runtime.engine.connect() as connection:
        await connection.exec_driver_sql("SELECT 1")
    return {"status": "ok"}


def create_app(settings: Settings, *, clock: Clock | None = None) -> Litestar:
    clock = clock or SystemClock()

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        engine = create_engine(settings.database_url)
        try:
            await upgrade(engine)
            sessions = create_sessionmaker(engine)
            async with sessions() as session, session.begin():
                key = settings.secret_key or await get_or_create_key(
                    session, "hmac", lambda: random_token(32), clock.now()
                )
            app.state.runtime = Runtime(settings, clock, engine, sessions, key.encode())
            yield
        finally:
            # aiosqlite leaves threads behind (and once hung the process) unless the engine is disposed.
            await engine.dispose()

    return Litestar(
        route_handlers=[healthz],
        lifespan=[lifespan],
        dependencies={
            "runtime": Provide(provide_runtime),
            "db": Provide(provide_db_session),
        },
        openapi_config=OpenAPIConfig(title="Vouchsim", version="0.1.0", path="/schema"),
    )
