"""e2e fixtures: one live server per test module, a fresh enrolled companion and browser per test.

Every module runs on SQLite. A module marked `postgres` (`pytestmark`) runs on PostgreSQL too when
VOUCHSIM_TEST_POSTGRES_URL is set: those whose subject is what the database does across a live server's
connections and processes (delegations woken by LISTEN/NOTIFY, cancellations, several workers, the testbed's
shared state). What a client or a browser sees of a route does not depend on the backend, and every route runs on
PostgreSQL in process already (server/tests/http); running each client's flow on both doubled the e2e suite's time
for no other code (123 s of the 342 s the PostgreSQL half of `.ci/run` took, measured 2026-12-06)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import httpx
import pytest

from e2e.harness import HTTP_TIMEOUT, Browser, Companion, Databases, LiveServer, ServerFactory

POSTGRES_URL = os.environ.get("VOUCHSIM_TEST_POSTGRES_URL", "")
BACKENDS = ["sqlite", *(["postgres"] if POSTGRES_URL else [])]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The backends of a module's `servers`: SQLite, and PostgreSQL for a module marked `postgres` (this hook runs
    before pytest's own, which then leaves the already parametrized fixture alone)."""
    if "servers" in metafunc.fixturenames:
        on_postgres = POSTGRES_URL and metafunc.definition.get_closest_marker("postgres") is not None
        backends = ["sqlite", "postgres"] if on_postgres else ["sqlite"]
        metafunc.parametrize("servers", backends, indirect=True, scope="module")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], str]]:
    """The template database of a backend, made by `vouchsim migrate` on first use, once per session (and xdist
    worker): every live server's database is a copy of it, so its start finds the schema ready."""
    directory = tmp_path_factory.mktemp("templates")
    databases = {backend: Databases(backend, directory, POSTGRES_URL) for backend in BACKENDS}
    made: dict[str, str] = {}

    def template(backend: str) -> str:
        if backend not in made:
            made[backend] = databases[backend].migrated()
        return made[backend]

    try:
        yield template
    finally:
        for each in databases.values():
            each.drop_all()


@pytest.fixture(scope="module")
def servers(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, migrated_templates: Callable[[str], str]
) -> Iterator[ServerFactory]:
    """Starts servers for this module's tests; stops them at the end and fails if one logged a traceback
    or answered 5xx (outside the tests that were already failed for it)."""
    directory = tmp_path_factory.mktemp(f"servers-{request.param}")
    databases = Databases(request.param, directory, POSTGRES_URL, template=migrated_templates(request.param))
    factory = ServerFactory(databases, directory)
    try:
        yield factory
    finally:
        factory.close()


@pytest.fixture(scope="module")
def live_server(servers: ServerFactory) -> LiveServer:
    return servers.start()


@pytest.fixture(autouse=True)
def _server_logs_stay_clean(request: pytest.FixtureRequest) -> Iterator[None]:
    """Blame a server traceback on the test during which it was logged, not only on the module's end."""
    if "live_server" not in request.fixturenames:
        yield
        return
    server: LiveServer = request.getfixturevalue("live_server")
    start = server.log_size()
    yield
    if (found := server.tracebacks(start)) is not None:
        server.blamed = True
        pytest.fail(f"the server logged a traceback or a 5xx answer during this test ({server.log_path}):\n{found}")


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    """A plain client for the agent's side (registration, token requests, /mcp)."""
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as client:
        yield client


@pytest.fixture
async def companion(live_server: LiveServer, tmp_path: Path) -> AsyncIterator[Companion]:
    """A companion enrolled with the live server through its real CLI, in its own state directory."""
    async with httpx.AsyncClient(base_url=live_server.base_url, timeout=HTTP_TIMEOUT) as device_http:
        yield await Companion.enrol(tmp_path / "companion", device_http)


@pytest.fixture
async def browser(live_server: LiveServer, tmp_path: Path) -> AsyncIterator[Browser]:
    async with Browser(live_server.base_url, tmp_path) as person:
        yield person
