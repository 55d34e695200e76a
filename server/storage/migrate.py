"""Apply Alembic migrations programmatically (at start-up, and from `vouchsim migrate`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from vouchsim.server.storage.engine import create_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
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
    """The newest revision of the migrations shipped with this package (they do not change while it runs)."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def upgrade(engine: AsyncEngine, revision: str = "head") -> SchemaChange:
    async with engine.connect() as connection:
        if revision == "head":
            # A database already at the newest schema (every start but the first, every test's copy of the
            # migrated template) needs one SELECT, not Alembic's environment and every migration file loaded again.
            current = await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
            if current is not None and current == head_revision():
                await connection.rollback()
                return SchemaChange(current, current)
            await connection.rollback()
        return await connection.run_sync(_migrate, command.upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str) -> SchemaChange:
    async with engine.connect() as connection:
        return await connection.run_sync(_migrate, command.downgrade, revision)


def _migrate(connection: Connection, step: Callable[[Config, str], None], revision: str) -> SchemaChange:
    """Alembic's `step` (upgrade or downgrade) on `connection`, committed.

    On SQLite, with foreign keys off while it runs: batch mode rebuilds a table by copying it and dropping the
    original, which a referenced table does not survive with foreign keys on.
    SQLite's procedure for such rebuilds (https://sqlite.org/lang_altertable.html, "other kinds of table schema
    changes"): keys off before the transaction starts (the pragma is ignored inside one), `foreign_key_check`
    before committing, keys on again before the connection goes back to the pool."""
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
    try:
        engine = create_engine(database_url)
    except (ArgumentError, ValueError) as error:  # a URL SQLAlchemy cannot parse (a port that is not a number)
        raise DatabaseUnavailable(f"the database URL {display_url(database_url)} is not valid: {error}") from None
    try:
        return await upgrade(engine)
    except (OSError, DBAPIError) as error:
        reason = getattr(error, "orig", None) or error
        raise DatabaseUnavailable(f"cannot use the database {display_url(database_url)}: {reason}") from None
    finally:
        await engine.dispose()
