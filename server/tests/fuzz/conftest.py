"""The parties a fuzz run needs, on each backend (SQLite; PostgreSQL too when VOUCHSIM_TEST_POSTGRES_URL is set): the
app under test on a fresh database, an enrolled device that signs, a registered client, and a live access and
refresh token.

One run sends each generated case to every backend: Hypothesis and Schemathesis spent about four fifths of a run's
CPU generating the cases, the same ones on both backends (the runs are derandomized), so they are made once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from server.tests.conftest import BACKENDS, fresh_database
from server.tests.http.conftest import ISSUER, TEST_HOSTS
from server.tests.http.test_mcp_routes import tokens_for
from server.tests.postgres_copies import PostgresCopies
from server.tests.support import Device, Flow, register
from vouchsim.server.app import create_app
from vouchsim.server.settings import Settings


@dataclass
class Parties:
    database_url: str
    client: TestClient[Any]
    device: Device
    registered: dict[str, Any]
    access_token: str
    refresh_token: str

    @property
    def backend(self) -> str:
        return "postgres" if self.database_url.startswith("postgresql") else "sqlite"


@pytest.fixture
def every_backend(
    tmp_path: Path, migrated_templates: dict[str, str], postgres_copies: PostgresCopies | None
) -> Iterator[list[Parties]]:
    """The parties on each backend, in BACKENDS' order."""
    with ExitStack() as stack:
        yield [
            stack.enter_context(
                _parties(stack.enter_context(fresh_database(backend, tmp_path, migrated_templates, postgres_copies)))
            )
            for backend in BACKENDS
        ]


@contextmanager
def _parties(database_url: str) -> Iterator[Parties]:
    # DCR only: a fuzzed `client_id` that happens to be an https URL must not make the server fetch a CIMD document
    # from the network. The system clock: the device signs with real time, as a phone does. The test's host names
    # are listed, as in the HTTP tests: the edge's host guard answers 421 for them otherwise.
    settings = Settings(database_url=database_url, registration="dcr", mcp_session_ttl=600, allowed_hosts=TEST_HOSTS)
    with TestClient(create_app(settings), base_url=ISSUER) as client:
        device = Device()
        device.enrol(client)
        registered = register(client)
        tokens = tokens_for(Flow(client, device), registered)
        yield Parties(database_url, client, device, registered, tokens["access_token"], tokens["refresh_token"])
