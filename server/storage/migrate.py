"""Apply Alembic migrations programmatically (at start-up, and from `vouchsim migrate`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from vouchsim.server.storage.engine import create_engine

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


async def upgrade(engine: AsyncEngine, revision: str = "head") -> None:
    async with engine.connect() as connection:
        await connection.run_sync(_migrate, command.upgrade, revision)


async def downgrade(engine: AsyncEngine, revision: str) -> None:
    async with engine.connect() as connection:
        await connection.run_sync(_migrate, command.downgrade, revision)


def _migrate(connection: Connection, step: Callable[[Config, str], None], revision: str) -> None:
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
        step(alembic_config(connection), revision)
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


class DatabaseUnavailable(Exception):
    """The database could not be reached or opened; the message names it (without its password) and why."""


async def upgrade_database(database_url: str) -> None:
    """`upgrade` on a short-lived engine of its own (the command line's `migrate`, and `serve` before it starts)."""
    engine = create_engine(database_url)
    try:
        await upgrade(engine)
    except (OSError, DBAPIError) as error:
        where = make_url(database_url).render_as_string(hide_password=True)
        reason = getattr(error, "orig", None) or error
        raise DatabaseUnavailable(f"cannot use the database {where}: {reason}") from None
    finally:
        await engine.dispose()
