"""Fixtures for the delegation service: a real database (SQLite, and PostgreSQL when configured), a started
event bus, the audience registry of fixtures/, and a seeded user whose device and runtime can act."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.tests.delegation_support import HMAC_KEY, World, seed_phone, seed_runtime
from vouchsim.server.core.clock import Clock, FrozenClock
from vouchsim.server.delegation.audiences import DEFAULT_FILE, AudienceRegistry
from vouchsim.server.delegation.service import DelegationService
from vouchsim.server.delegation.tokens import SigningKeyStore
from vouchsim.server.settings import Settings
from vouchsim.server.storage.engine import create_sessionmaker
from vouchsim.server.storage.events import EventBus
from vouchsim.server.storage.repositories.delegations import DelegationRepository
from vouchsim.server.storage.session import DbSession, own_transactions


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
def settings() -> Settings:
    return Settings(delegation_ttl=300, delegation_token_ttl=600)


@pytest.fixture
def registry() -> AudienceRegistry:
    return AudienceRegistry.load(DEFAULT_FILE)


@pytest.fixture
def keys(clock: FrozenClock, settings: Settings) -> SigningKeyStore:
    return SigningKeyStore(HMAC_KEY, clock, settings)


ServiceFactory = Callable[..., DelegationService]


@pytest.fixture
def make_service(
    sessions: async_sessionmaker[AsyncSession],
    registry: AudienceRegistry,
    keys: SigningKeyStore,
    bus: EventBus,
    clock: FrozenClock,
    settings: Settings,
) -> ServiceFactory:
    def make(
        *,
        repository: Callable[[DbSession], DelegationRepository] = DelegationRepository,
        events: EventBus | None = None,
        on_clock: Clock | None = None,
        with_settings: Settings | None = None,
    ) -> DelegationService:
        return DelegationService(
            own_transactions(sessions),
            registry,
            keys,
            events or bus,
            on_clock or clock,
            with_settings or settings,
            HMAC_KEY,
            repository=repository,
        )

    return make


@pytest.fixture
def service(make_service: ServiceFactory) -> DelegationService:
    return make_service()


@pytest.fixture
async def world(sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> World:
    async with sessions() as session, session.begin():
        phone = await seed_phone(session, clock)
        runtime = await seed_runtime(session, clock, phone)
        stranger = await seed_phone(session, clock)
        strangers_runtime = await seed_runtime(session, clock, stranger, client_name="Other Agent")
    return World(phone, runtime, stranger, strangers_runtime)
