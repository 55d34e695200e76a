"""Shared fixtures: a fresh database per test (SQLite always; PostgreSQL too when VOUCHSIM_TEST_POSTGRES_URL is
set), copied from one made once per session, a frozen clock, and the app under test."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from server.tests.postgres_copies import PostgresCopies
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


async def _run_admin(sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(_admin_dsn(POSTGRES_URL)[0])
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


async def _create_database(name: str, template: str | None = None) -> None:
    """CREATE DATABASE (a copy of `template`, else of template1), retried briefly: it fails while anything else is
    connected to the database it copies."""
    import asyncio

    import asyncpg

    sql = f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else "")
    for attempt in range(50):
        try:
            await _run_admin(sql)
            return
        except asyncpg.exceptions.ObjectInUseError:
            await asyncio.sleep(0.1 * (attempt + 1))
    await _run_admin(sql)


async def _migrate(url: str) -> None:
    from vouchsim.server.storage.engine import create_engine
    from vouchsim.server.storage.migrate import upgrade

    engine = create_engine(url)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()  # nothing may stay connected to a PostgreSQL template


@pytest.fixture(scope="session")
def migrated_templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One database per backend, brought to the newest schema once per test session (`upgrade`: an empty database
    gets the models' schema, which a storage test checks against the migrations'): each test gets a copy (a file
    copy on SQLite, CREATE DATABASE … TEMPLATE on PostgreSQL). Measured on SQLite, when each test ran every
    migration itself: an HTTP test's set-up took 0.78 s of CPU that way, 0.29 s with a copy."""
    import asyncio

    templates: dict[str, str] = {}
    path = tmp_path_factory.mktemp("template") / "vouchsim.db"
    asyncio.run(_migrate(f"sqlite+aiosqlite:///{path}"))
    templates["sqlite"] = str(path)
    name = ""
    try:
        if POSTGRES_URL:
            name = f"vouchsim_template_{secrets.token_hex(6)}"
            asyncio.run(_create_database(name))
            asyncio.run(_migrate(f"{_admin_dsn(POSTGRES_URL)[1]}/{name}"))
            templates["postgres"] = name
        yield templates
    finally:
        if name:
            asyncio.run(_run_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _fresh_database(backend: str, tmp_path: Path, template: str | None) -> Iterator[str]:
    import asyncio

    if backend == "sqlite":
        path = tmp_path / "vouchsim.db"
        if template is not None:
            shutil.copyfile(template, path)
        yield f"sqlite+aiosqlite:///{path}"
        return
    name = f"vouchsim_test_{secrets.token_hex(6)}"
    asyncio.run(_create_database(name, template))
    try:
        yield f"{_admin_dsn(POSTGRES_URL)[1]}/{name}"
    finally:
        asyncio.run(_run_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _serve_once(url: str) -> None:
    """Start and stop an app on `url`, at the `clock` fixture's time: what a server's first start writes (the HMAC
    key, the first signing keys) is then in the database, as a test's own app would have written it."""
    from litestar.testing import TestClient

    from vouchsim.server.app import create_app
    from vouchsim.server.settings import Settings

    with TestClient(create_app(Settings(database_url=url), clock=FrozenClock())):
        pass


@pytest.fixture(scope="session")
def served_templates(
    migrated_templates: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """Copies of the migrated templates that an app has started on once (`_serve_once`), for the HTTP tests, whose
    every test starts an app: its start then reads the keys instead of making them, about 7 ms less per test on
    SQLite and 11 ms on PostgreSQL (of the 21 and 55 ms an app's start and stop took). The storage and unit tests keep
    the bare migrated templates (the first keys, their races)."""
    import asyncio

    templates: dict[str, str] = {}
    path = tmp_path_factory.mktemp("served") / "vouchsim.db"
    shutil.copyfile(migrated_templates["sqlite"], path)
    _serve_once(f"sqlite+aiosqlite:///{path}")
    templates["sqlite"] = str(path)
    name = ""
    try:
        if "postgres" in migrated_templates:
            name = f"vouchsim_served_{secrets.token_hex(6)}"
            asyncio.run(_create_database(name, migrated_templates["postgres"]))
            _serve_once(f"{_admin_dsn(POSTGRES_URL)[1]}/{name}")
            templates["postgres"] = name
        yield templates
    finally:
        if name:
            asyncio.run(_run_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _copies_of(templates: dict[str, str]) -> Iterator[PostgresCopies | None]:
    if "postgres" not in templates:
        yield None
        return
    from vouchsim.server.storage.models import Base

    admin_dsn, url_prefix = _admin_dsn(POSTGRES_URL)
    tables = [table.name for table in Base.metadata.sorted_tables]
    copies = PostgresCopies(admin_dsn, url_prefix, templates["postgres"], tables)
    try:
        yield copies
    finally:
        copies.drop_all()


@pytest.fixture(scope="session")
def postgres_copies(migrated_templates: dict[str, str]) -> Iterator[PostgresCopies | None]:
    """The session's copies of the PostgreSQL template, reused from test to test (None without PostgreSQL)."""
    yield from _copies_of(migrated_templates)


@pytest.fixture(scope="session")
def served_postgres_copies(served_templates: dict[str, str]) -> Iterator[PostgresCopies | None]:
    """The same, of the served template (`served_templates`)."""
    yield from _copies_of(served_templates)


Templates = tuple[dict[str, str], PostgresCopies | None]


@pytest.fixture(scope="session")
def templates(migrated_templates: dict[str, str], postgres_copies: PostgresCopies | None) -> Templates:
    """What `database_url` copies: the migrated templates here; the HTTP tests' conftest names the served ones."""
    return migrated_templates, postgres_copies


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path, templates: Templates) -> Iterator[str]:
    """A database nobody else uses, at the newest schema with the template's rows only (`fresh_database`)."""
    with fresh_database(request.param, tmp_path, *templates) as url:
        yield url


@contextmanager
def fresh_database(
    backend: str, tmp_path: Path, templates: dict[str, str], postgres_copies: PostgresCopies | None
) -> Iterator[str]:
    """On SQLite a copy of the session's migrated template, on PostgreSQL a copy too, reused by later tests once put
    back (postgres_copies)."""
    if backend == "postgres" and postgres_copies is not None:
        url = postgres_copies.acquire()
        try:
            yield url
        finally:
            postgres_copies.release(url)
        return
    yield from _fresh_database(backend, tmp_path, templates[backend])


@pytest.fixture(params=BACKENDS)
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database nobody else uses with no schema at all: for the tests of the migrations themselves."""
    yield from _fresh_database(request.param, tmp_path, None)


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
