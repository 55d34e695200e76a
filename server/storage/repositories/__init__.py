"""Repositories: one module per aggregate; each takes the request's `AsyncSession` and never commits."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sqlalchemy.dialects import postgresql, sqlite


def dialect_insert(dialect: str, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT into `table` that can say ON CONFLICT, in `dialect`'s spelling (PostgreSQL's or SQLite's).

    Each dialect's module is imported on first use: PostgreSQL's costs a SQLite server ~4 MiB of resident memory."""
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
