"""Apply Alembic migrations programmatically (at start-up, and from `vouchsim migrate`)."""

from __future__ import annotations

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
    async with engine.begin() as connection:
        await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), revision))


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
