"""A database at the newest schema is recognised without Alembic (one SELECT, the migration files read as text), and
an empty one gets the models' schema without it, so a serving process never imports Alembic; a database behind is
left for Alembic to migrate. The models' schema is the migrations' schema: a test makes it both ways and compares."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import column, inspect, select, table
from sqlalchemy.engine import Connection

from vouchsim.server.storage.engine import create_engine
from vouchsim.server.storage.migrate import (
    SchemaChange,
    alembic_config,
    create_at_head,
    downgrade,
    head_revision,
    migrate,
    schema_at_head,
    upgrade,
    upgrade_without_alembic,
)

pytestmark = pytest.mark.anyio


def test_the_head_read_from_the_files_is_alembics() -> None:
    assert head_revision() is not None
    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


async def at_head(database_url: str) -> SchemaChange | None:
    engine = create_engine(database_url)
    try:
        return await schema_at_head(engine)
    finally:
        await engine.dispose()


async def test_a_migrated_database_is_at_head(database_url: str) -> None:
    head = head_revision()
    assert await at_head(database_url) == SchemaChange(head, head)


async def test_an_empty_database_gets_the_models_schema_at_head_without_alembic(empty_database_url: str) -> None:
    assert await at_head(empty_database_url) is None
    assert await upgrade_without_alembic(empty_database_url) == SchemaChange(None, head_revision())
    assert await at_head(empty_database_url) == SchemaChange(head_revision(), head_revision())
    # Then it is a database like any other: nothing more to do, and Alembic sees it at its head.
    assert await upgrade_without_alembic(empty_database_url) == SchemaChange(head_revision(), head_revision())
    engine = create_engine(empty_database_url)
    try:
        async with engine.connect() as connection:
            current = await connection.run_sync(lambda sync: MigrationContext.configure(sync).get_current_revision())
        assert current == ScriptDirectory.from_config(alembic_config()).get_current_head()
    finally:
        await engine.dispose()


async def test_a_database_one_revision_behind_is_left_to_the_migrations(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await downgrade(engine, "-1")
        assert await schema_at_head(engine) is None
        assert await create_at_head(engine) is None
        change = await upgrade(engine)
        assert change.after == head_revision() and change.before not in (None, head_revision())
    finally:
        await engine.dispose()


async def test_a_database_with_any_table_is_left_to_the_migrations(empty_database_url: str) -> None:
    engine = create_engine(empty_database_url)
    try:
        async with engine.begin() as connection:
            await connection.exec_driver_sql("CREATE TABLE someone_elses (id INTEGER PRIMARY KEY)")
        assert await create_at_head(engine) is None
        async with engine.connect() as connection:
            tables = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
        assert tables == ["someone_elses"]
    finally:
        await engine.dispose()


async def test_a_database_made_from_the_models_is_the_one_the_migrations_make(
    empty_database_url: str, tmp_path: Path
) -> None:
    """Every table, column (type, nullability, default), key, index and row the same, but for when a row was
    written: what keeps `create_at_head` honest when a model or a migration changes."""
    made = await _made_twice(empty_database_url, tmp_path)
    migrated, created = made["migrated"], made["created"]
    assert migrated["tables"] == created["tables"]
    assert migrated == created


async def _made_twice(empty_database_url: str, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """The schema and rows of a database migrated by Alembic from nothing and of one made by `create_at_head`."""
    made: dict[str, dict[str, Any]] = {}
    postgres = not empty_database_url.startswith("sqlite")
    base, _, name = empty_database_url.rpartition("/")
    other = f"{base}/{name}_created" if postgres else f"sqlite+aiosqlite:///{tmp_path / 'created.db'}"
    if postgres:
        await _postgres_admin(empty_database_url, f'CREATE DATABASE "{name}_created"')
    try:
        for way, url in (("migrated", empty_database_url), ("created", other)):
            engine = create_engine(url)
            try:
                change = await (migrate(engine) if way == "migrated" else create_at_head(engine))
                assert change == SchemaChange(None, head_revision()), way
                async with engine.connect() as connection:
                    made[way] = await connection.run_sync(_describe)
            finally:
                await engine.dispose()
    finally:
        if postgres:
            await _postgres_admin(empty_database_url, f'DROP DATABASE IF EXISTS "{name}_created" WITH (FORCE)')
    return made


async def _postgres_admin(url: str, sql: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await connection.execute(sql)
    finally:
        await connection.close()


def _describe(connection: Connection) -> dict[str, Any]:
    inspector = inspect(connection)
    described: dict[str, Any] = {"tables": sorted(inspector.get_table_names())}
    for name in described["tables"]:
        columns = [c["name"] for c in inspector.get_columns(name)]
        described[name] = {
            "columns": [
                (c["name"], str(c["type"]), c["nullable"], str(c.get("default")), c.get("autoincrement"))
                for c in inspector.get_columns(name)
            ],
            "primary key": inspector.get_pk_constraint(name),
            "foreign keys": sorted(
                (
                    fk["name"] or "",
                    fk["constrained_columns"],
                    fk["referred_table"],
                    fk["referred_columns"],
                    str(fk.get("options")),
                )
                for fk in inspector.get_foreign_keys(name)
            ),
            "indexes": sorted(
                (ix["name"] or "", ix["column_names"], ix["unique"], _where(ix)) for ix in inspector.get_indexes(name)
            ),
            "unique": sorted((uq["name"] or "", uq["column_names"]) for uq in inspector.get_unique_constraints(name)),
            "checks": sorted((ck["name"] or "", ck["sqltext"]) for ck in inspector.get_check_constraints(name)),
            "rows": sorted(
                repr({k: v for k, v in row.items() if not k.endswith("_at")})
                for row in connection.execute(select(table(name, *map(column, columns)))).mappings()
            ),
        }
    return described


def _where(index: Any) -> str:
    """A partial index's predicate, as the database gives it back."""
    options = index.get("dialect_options", {})
    where = next((str(value) for key, value in options.items() if key.endswith("_where")), "")
    return " ".join(where.split())


def test_recognising_or_creating_a_database_at_head_imports_no_alembic(tmp_path: Path) -> None:
    """In a fresh interpreter (this one has Alembic loaded already), as `serve` does before it starts: a new
    database made, then the same one recognised."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'new.db'}"
    script = (
        "import asyncio, sys\n"
        "from vouchsim.server.storage.migrate import upgrade_without_alembic\n"
        f"print(asyncio.run(upgrade_without_alembic({url!r})).describe())\n"
        f"print(asyncio.run(upgrade_without_alembic({url!r})).describe())\n"
        "print(sorted(m for m in sys.modules if m.startswith(('alembic', 'mako'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"schema {head_revision()}, new database",
        f"schema {head_revision()}",
        "[]",
    ]
