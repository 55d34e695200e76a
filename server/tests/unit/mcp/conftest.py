"""An `McpServer` over a real database (SQLite, and PostgreSQL when configured), a started event bus and the real
delegation service, with a seeded user whose runtime connection calls it. Progress comes every 0.05 s here."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.tests.delegation_support import HMAC_KEY, ISSUER, World, seed_phone, seed_runtime
from server.tests.delegation_support import Runtime as Paired
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.core.runtime import Runtime
from vouchsim.server.delegation.audiences import DEFAULT_FILE, AudienceRegistry
from vouchsim.server.delegation.service import DelegationService
from vouchsim.server.delegation.tokens import SigningKeyStore
from vouchsim.server.mcp.transport import McpServer
from vouchsim.server.oauth.bearer import AccessGrant
from vouchsim.server.settings import Settings
from vouchsim.server.storage.engine import create_sessionmaker
from vouchsim.server.storage.events import EventBus
from vouchsim.server.storage.session import own_transactions

PROGRESS_INTERVAL = 0.05


@pytest.fixture
def sessions(engine: AsyncEngine, bus: EventBus) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine, bus)


@pytest.fixture
def settings() -> Settings:
    return Settings()


@pytest.fixture
def delegations(
    sessions: async_sessionmaker[AsyncSession], bus: EventBus, clock: FrozenClock, settings: Settings
) -> DelegationService:
    registry = AudienceRegistry.load(DEFAULT_FILE)
    keys = SigningKeyStore(HMAC_KEY, clock, settings)
    return DelegationService(own_transactions(sessions), registry, keys, bus, clock, settings, HMAC_KEY)


@pytest.fixture
def server(
    sessions: async_sessionmaker[AsyncSession],
    bus: EventBus,
    clock: FrozenClock,
    settings: Settings,
    delegations: DelegationService,
) -> McpServer:
    mcp = McpServer(Runtime(settings, clock, HMAC_KEY), sessions, bus, delegations, progress_interval=PROGRESS_INTERVAL)
    bus.add_listener(mcp.on_event)
    return mcp


@pytest.fixture
async def world(sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> World:
    async with sessions() as session, session.begin():
        phone = await seed_phone(session, clock)
        runtime = await seed_runtime(session, clock, phone)
        stranger = await seed_phone(session, clock)
        strangers_runtime = await seed_runtime(session, clock, stranger, client_name="Other Agent")
    return World(phone, runtime, stranger, strangers_runtime)


def grant_for(paired: Paired, clock: FrozenClock, scopes: tuple[str, ...] = ("identity", "delegation")) -> AccessGrant:
    """What a valid token of this runtime stands for (the transport tests start after authentication)."""
    return AccessGrant(
        token_id="tok_test",
        client_id=paired.client_id,
        user_id=paired.user_id,
        connection_id=paired.connection_id,
        scopes=scopes,
        resource=f"{ISSUER}/mcp",
        expires_at=clock.now() + timedelta(hours=1),
        client_name="Acme Agent",
    )
