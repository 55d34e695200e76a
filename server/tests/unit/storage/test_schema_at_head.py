"""A database at the newest schema is recognised without Alembic (one SELECT, the migration files read as text), so
a serving process never imports it; a database behind, or empty, is left for Alembic to migrate."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory

from vouchsim.server.storage.engine import create_engine
from vouchsim.server.storage.migrate import (
    SchemaChange,
    alembic_config,
    database_at_head,
    downgrade,
    head_revision,
    upgrade,
    upgrade_database,
)

pytestmark = pytest.mark.anyio


def test_the_head_read_from_the_files_is_alembics() -> None:
    assert head_revision() is not None
    assert head_revision() == ScriptDirectory.from_config(alembic_config()).get_current_head()


async def test_a_migrated_database_is_at_head(database_url: str) -> None:
    head = head_revision()
    assert await database_at_head(database_url) == SchemaChange(head, head)


async def test_an_empty_database_is_not_at_head_until_migrated(empty_database_url: str) -> None:
    assert await database_at_head(empty_database_url) is None
    engine = create_engine(empty_database_url)
    try:
        assert await upgrade(engine) == SchemaChange(None, head_revision())
    finally:
        await engine.dispose()
    assert await database_at_head(empty_database_url) == SchemaChange(head_revision(), head_revision())


async def test_a_database_one_revision_behind_is_not_at_head(database_url: str) -> None:
    engine = create_engine(database_url)
    try:
        await downgrade(engine, "-1")
        assert await database_at_head(database_url) is None
        change = await upgrade(engine)
        assert change.after == head_revision() and change.before not in (None, head_revision())
    finally:
        await engine.dispose()


def test_recognising_a_database_at_head_imports_no_alembic(tmp_path: Path) -> None:
    """In a fresh interpreter (this one has Alembic loaded already), as `serve` checks before it starts."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'at-head.db'}"
    asyncio.run(upgrade_database(url))
    script = (
        "import asyncio, sys\n"
        "from vouchsim.server.storage.migrate import database_at_head\n"
        f"print(asyncio.run(database_at_head({url!r})).describe())\n"
        "print(sorted(m for m in sys.modules if m.startswith(('alembic', 'mako'))))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"schema {head_revision()}", "[]"]
