"""Bring a database to the newest schema (at start-up, and from `vouchsim migrate`).

Alembic is imported only when a migration runs: a database already at the newest schema (every start but the first)
is recognised with one SELECT and the migration files read as text, and a new (empty) database gets the newest
schema straight from the models, recorded as Alembic's head, so a serving process never holds Alembic and Mako
(~12 MiB of its resident memory). Only a database behind the newest schema goes through the migrations."""

from __future__ import annotations

import ast
import functools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import Column, MetaData, PrimaryKeyConstraint, String, Table, insert, inspect, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from vouchsim.server.storage.engine import create_engine

if TYPE_CHECKING:
    from alembic.config import Config

T = TypeVar("T")

MIGRATIONS = Path(__file__).with_name("migrations")
# Where Alembic records the revision a database is at: its default name and definition (env.py keeps them).
_VERSION_TABLE = Table(
    "alembic_version",
    MetaData(),
    Column("version_num", String(32), nullable=False),
    PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


@dataclass(frozen=True)
class SchemaChange:
    """The schema revision before and after an upgrade (None: an empty database)."""

    before: str | None
    after: str | None

    def describe(self) -> str:
        """`schema 0004`, `schema 0004, migrated from 0002`, or `schema 0004, new database`."""
        if self.before == self.after:
            return f"schema {self.after}"
        return f"schema {self.after}, " + ("new database" if self.before is None else f"migrated from {self.before}")


@functools.cache
def head_revision() -> str | None:
    """The newest revision of the migrations shipped with this package (they do not change while it runs), read
    from each file's `revision` and `down_revision` assignments as Alembic writes them, without importing Alembic
    or the files: the one revision no other revises. None when that is not exactly one (then Alembic decides)."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        assigned = _module_constants(path.read_text(encoding="utf-8"), ("revision", "down_revision"))
        revision, down = assigned.get("revision"), assigned.get("down_revision")
        if not isinstance(revision, str):
            return None
        revisions.add(revision)
        if isinstance(down, str):
            revised.add(down)
        elif isinstance(down, tuple):  # a merge revises several
            revised.update(str(each) for each in down)
    heads = revisions - revised
    return heads.pop() if len(heads) == 1 else None


def _module_constants(source: str, names: tuple[str, ...]) -> dict[str, object]:
    """The literal values assigned to `names` at the top level of a module's source."""
    found: dict[str, object] = {}
    for node in ast.parse(source).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        if node.targets[0].id in names:
            try:
                found[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return found


def current_revision(connection: Connection) -> str | None:
    """The revision the database is at, as Alembic records it (None: an empty database, or not exactly one row)."""
    if not inspect(connection).has_table(_VERSION_TABLE.name):
        return None
    rows = connection.execute(select(_VERSION_TABLE.c.version_num)).scalars().all()
    return rows[0] if len(rows) == 1 else None


async def schema_at_head(engine: AsyncEngine) -> SchemaChange | None:
    """The schema when the database is at the newest revision already, else None; one SELECT, Alembic not loaded."""
    async with engine.connect() as connection:
        current = await connection.run_sync(current_revision)
        await connection.rollback()
    return SchemaChange(current, current) if current is not None and current == head_revision() else None


async def create_at_head(engine: AsyncEngine) -> SchemaChange | None:
    """On a database with no table at all: the newest schema, made from the models in one transaction and recorded
    as Alembic's head, with the rows the migrations seed. None when the database has a table (the migrations'
    business) or the head is not known without Alembic.

    Why not the migrations: on a new SQLite database they cost ~0.25 s of CPU, and `serve` ran them in a child
    process (its interpreter and imports: ~0.6 s of CPU and ~0.7 s before the server could start); this takes
    ~16 ms. A test makes a database both ways, on each backend, and compares their tables, columns, keys, indexes
    and rows."""
    head = head_revision()
    if head is None:
        return None
    async with engine.connect() as connection:
        if await connection.run_sync(lambda sync: inspect(sync).get_table_names()):
            await connection.rollback()
            return None
        if connection.dialect.name == "sqlite":
            # sqlite3 would run each CREATE in autocommit: one transaction, so a start cut short leaves no half schema.
            await connection.exec_driver_sql("BEGIN IMMEDIATE")
        await connection.run_sync(_create_tables, head)
        await connection.commit()
    return SchemaChange(None, head)


def _create_tables(connection: Connection, head: str) -> None:
    from vouchsim.server.storage.models import Base, TestbedState
    from vouchsim.server.storage.repositories.testbed import CLOCK

    Base.metadata.create_all(connection)
    _VERSION_TABLE.create(connection)
    connection.execute(insert(_VERSION_TABLE).values(version_num=head))
    # What migration 0008 seeds: the testbed clock's row, which instances only ever update (under a row lock).
    connection.execute(
        insert(TestbedState).values(name=CLOCK, value={"offset_seconds": 0.0}, updated_at=datetime.now(UTC))
    )


async def upgrade(engine: AsyncEngine, revision: str = "head") -> SchemaChange:
    """To the newest schema (or `revision`): nothing when the database is there already (one SELECT: every start but
    the first, every test's copy of the migrated template), the models' schema on an empty database
    (`create_at_head`), else Alembic's migrations."""
    if revision == "head":
        if unchanged := await schema_at_head(engine):
            return unchanged
        if created := await create_at_head(engine):
            return created
    return await migrate(engine, revision)


async def migrate(engine: AsyncEngine, revision: str = "head") -> SchemaChange:
    """Alembic's migrations up to `revision`, whatever the database holds (an empty one goes through all of them)."""
    from alembic import command

    async with engine.connect() as connection:
        return await connection.run_sync(_migrate, command.upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str) -> SchemaChange:
    from alembic import command

    async with engine.connect() as connection:
        return await connection.run_sync(_migrate, command.downgrade, revision)


def _migrate(connection: Connection, step: Callable[[Config, str], None], revision: str) -> SchemaChange:
    """Alembic's `step` (upgrade or downgrade) on `connection`, committed.

    On SQLite, with foreign keys off while it runs: batch mode rebuilds a table by copying it and dropping the
    original, which a referenced table does not survive with foreign keys on.
    SQLite's procedure for such rebuilds (https://sqlite.org/lang_altertable.html, "other kinds of table schema
    changes"): keys off before the transaction starts (the pragma is ignored inside one), `foreign_key_check`
    before committing, keys on again before the connection goes back to the pool."""
    from alembic.runtime.migration import MigrationContext

    sqlite = connection.dialect.name == "sqlite"
    try:
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")  # the first statement: no transaction yet
        before = MigrationContext.configure(connection).get_current_revision()
        step(alembic_config(connection), revision)
        after = MigrationContext.configure(connection).get_current_revision()
        if sqlite and (broken := connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
            raise RuntimeError(f"a migration left rows whose foreign keys point nowhere: {broken[:5]}")
        connection.commit()
        if sqlite:
            connection.exec_driver_sql("PRAGMA foreign_keys=ON")
            connection.commit()
    except BaseException:
        if sqlite:
            connection.invalidate()  # never back to the pool with foreign keys off
        raise
    return SchemaChange(before, after)


def display_url(database_url: str) -> str:
    """The URL to show a person: its password hidden."""
    try:
        return make_url(database_url).render_as_string(hide_password=True)
    except (ArgumentError, ValueError):
        return database_url.partition("://")[0] + "://…"


class DatabaseUnavailable(Exception):
    """The database could not be reached or opened; the message names it (without its password) and why."""


async def upgrade_database(database_url: str) -> SchemaChange:
    """`upgrade` on a short-lived engine of its own (the command line's `migrate`, and `serve` before it starts)."""
    return await _on_own_engine(database_url, upgrade)


async def upgrade_without_alembic(database_url: str) -> SchemaChange | None:
    """What `serve` does before it starts, on a short-lived engine of its own, without loading Alembic: nothing on a
    database at the newest schema, the models' schema on an empty one (`create_at_head`); None for a database that
    is behind, which only Alembic's migrations can bring up to date."""

    async def at_head_or_created(engine: AsyncEngine) -> SchemaChange | None:
        return await schema_at_head(engine) or await create_at_head(engine)

    return await _on_own_engine(database_url, at_head_or_created)


async def _on_own_engine(database_url: str, step: Callable[[AsyncEngine], Awaitable[T]]) -> T:
    try:
        engine = create_engine(database_url)
    except (ArgumentError, ValueError) as error:  # a URL SQLAlchemy cannot parse (a port that is not a number)
        raise DatabaseUnavailable(f"the database URL {display_url(database_url)} is not valid: {error}") from None
    try:
        return await step(engine)
    except (OSError, DBAPIError) as error:
        reason = getattr(error, "orig", None) or error
        raise DatabaseUnavailable(f"cannot use the database {display_url(database_url)}: {reason}") from None
    finally:
        await engine.dispose()
