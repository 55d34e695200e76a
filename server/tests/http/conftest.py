from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from litestar.testing import TestClient

from server.tests.support import Device, Flow, pkce, register
from vouchsim.server.app import create_app
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.settings import Settings

ISSUER = "https://vouch.test"
# The hosts the tests send: names of our own, listed as an operator would list them (server.edge.hosts); the
# last two stand for another name of the same server.
TEST_HOSTS = "vouch.test,other.example,mcp.example.com"


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, allowed_hosts=TEST_HOSTS)


@pytest.fixture
def client(settings: Settings, clock: FrozenClock) -> Iterator[TestClient[Any]]:
    with TestClient(create_app(settings, clock=clock), base_url=ISSUER) as test_client:
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
