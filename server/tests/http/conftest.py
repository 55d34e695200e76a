from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient

from server.tests.conftest import Templates
from server.tests.postgres_copies import PostgresCopies
from server.tests.support import Device, Flow, pkce, register
from vouchsim.server.app import Deployment, bind, routes
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.settings import Settings

ISSUER = "https://vouch.test"
# The hosts the tests send: names of our own, listed as an operator would list them (server.edge.hosts); the
# two after it stand for another name of the same server; testserver.local is the TestClient's default.
TEST_HOSTS = "vouch.test,other.example,mcp.example.com,testserver.local"


@pytest.fixture(scope="session")
def templates(served_templates: dict[str, str], served_postgres_copies: PostgresCopies | None) -> Templates:
    """`database_url` here is a copy of a served template (a server's first start done): every test here starts an
    app on it."""
    return served_templates, served_postgres_copies


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, allowed_hosts=TEST_HOSTS)


@pytest.fixture(scope="session")
def free_apps() -> dict[bool, list[Litestar]]:
    """Apps from `routes()` whose last test has ended, by whether they have the testbed's controls: `client` binds
    one to its own deployment rather than building another (Litestar registering ~80 handlers: ~47 ms of the ~130 ms
    of CPU an HTTP test took)."""
    return {False: [], True: []}


@contextmanager
def app_for(settings: Settings, clock: FrozenClock, free_apps: dict[bool, list[Litestar]]) -> Iterator[Litestar]:
    """The app `create_app(settings, clock=clock)` makes, with a free app's routes when there is one: its state,
    lifespan, edge and database are its own, only the routes may have served an earlier test. Given back to
    `free_apps` when the block ends without an error."""
    deployment = Deployment.of(settings, clock=clock)
    free = free_apps[deployment.testbed is not None]
    app = free.pop() if free else routes(with_testbed=deployment.testbed is not None)
    yield bind(app, deployment)
    free.append(app)


@pytest.fixture
def client(settings: Settings, clock: FrozenClock, free_apps: dict[bool, list[Litestar]]) -> Iterator[TestClient[Any]]:
    with app_for(settings, clock, free_apps) as app, TestClient(app, base_url=ISSUER) as test_client:
        yield test_client


@pytest.fixture
def device(client: TestClient[Any], clock: FrozenClock) -> Device:
    device = Device(clock=clock)
    device.enrol(client)
    return device


@pytest.fixture
def flow(client: TestClient[Any], device: Device) -> Flow:
    return Flow(client, device)


@pytest.fixture
def public_client(client: TestClient[Any]) -> dict[str, Any]:
    return register(client)


@pytest.fixture
def verifier_challenge() -> tuple[str, str]:
    return pkce()
