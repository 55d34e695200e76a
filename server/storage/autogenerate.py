"""`python -m vouchsim.server.storage.autogenerate "message"`: write the next migration from the models (developers)."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from vouchsim.server.storage.engine import create_engine
from vouchsim.server.storage.migrate import alembic_config


async def autogenerate(message: str) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(scratch) / 'autogen.db'}")
        try:
            async with engine.begin() as connection:
                await connection.run_sync(lambda c: command.upgrade(alembic_config(c), "head"))
                head = ScriptDirectory.from_config(alembic_config()).get_current_head() or "0000"
                rev_id = f"{int(head) + 1:04d}"
                await connection.run_sync(
                    lambda c: command.revision(alembic_config(c), message=message, autogenerate=True, rev_id=rev_id)
                )
        finally:
            await engine.dispose()


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit('usage: python -m vouchsim.server.storage.autogenerate "what changed"')
    asyncio.run(autogenerate(sys.argv[1]))
