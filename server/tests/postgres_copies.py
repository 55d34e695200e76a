"""PostgreSQL databases for tests, copied from the session's migrated template and reused from test to test.

A copy that a test is done with is put back to the template's state and handed to the next test: its rows are
deleted and the template's own rows (the testbed clock's) written again, where `CREATE DATABASE … TEMPLATE` and
`DROP DATABASE` took about 180 ms per test on 2 cores (and PostgreSQL's own CPU besides). A copy whose schema the
test changed (a downgrade, say) is dropped instead, as is every copy at the end.

Each copy keeps one connection for its resets, on one event loop for the session (`asyncio.Runner`), and a reset
sends its deletions in one round trip: a reset took 21 ms of wall time (5 ms of it in this process) when it
connected each time (5 ms, and 4 ms to close) and sent a DELETE per table; it takes about 4 ms (1.2 ms here).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import asyncpg

# What a copy's schema is, in one string: every column of every relation (tables, indexes, sequences), every
# constraint, and the Alembic revision. A test that changed any of it leaves a copy that cannot be reused.
SCHEMA_FINGERPRINT = """
SELECT coalesce((SELECT string_agg(c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                                   || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END, ','
                                   ORDER BY c.relname, a.attnum)
                 FROM pg_class c JOIN pg_attribute a ON a.attrelid = c.oid
                 WHERE c.relnamespace = 'public'::regnamespace AND a.attnum > 0 AND NOT a.attisdropped), '')
    || '|' || coalesce((SELECT string_agg(conname || ' ' || pg_get_constraintdef(oid), ',' ORDER BY conname)
                        FROM pg_constraint WHERE connamespace = 'public'::regnamespace), '')
    || '|' || coalesce((SELECT string_agg(version_num, ',') FROM alembic_version), '')
"""
T = TypeVar("T")
OTHER_SESSIONS = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()
"""


@dataclass
class _Baseline:
    fingerprint: str
    tables: list[str]  # in foreign-key order: rows are deleted from the last one first
    rows: dict[str, tuple[list[str], list[tuple[Any, ...]]]]  # the template's rows per table: columns, records
    sequences: list[str]

    @property
    def wipe(self) -> str:
        """Every row deleted, children first, and every sequence restarted: statements sent as one string."""
        deletes = [f'DELETE FROM "{table}"' for table in reversed(self.tables)]  # noqa: S608  # the models' names
        restarts = [f"ALTER SEQUENCE {sequence} RESTART" for sequence in self.sequences]
        return ";\n".join(deletes + restarts)


@dataclass
class PostgresCopies:
    """The copies of `template` that one test session (one xdist worker) uses; `admin_dsn` is an asyncpg DSN of a
    database to run CREATE and DROP DATABASE from, `url_prefix` what a database name is appended to for a URL."""

    admin_dsn: str
    url_prefix: str
    template: str
    tables: list[str]  # the schema's tables in foreign-key order (the models' metadata), alembic_version aside
    free: list[str] = field(default_factory=list)
    made: list[str] = field(default_factory=list)
    _baseline: _Baseline | None = None
    _runner: asyncio.Runner | None = None
    _resetters: dict[str, asyncpg.Connection] = field(default_factory=dict)  # each copy's connection for its resets

    def acquire(self) -> str:
        """The URL of a database at the template's state that no other test uses."""
        name = self.free.pop() if self.free else self._run(self._create())
        return f"{self.url_prefix}/{name}"

    def release(self, url: str) -> None:
        """Put a copy back to the template's state for the next test, or drop it when that cannot be done."""
        name = url.rsplit("/", 1)[1]
        if self._run(self._reset(name)):
            self.free.append(name)
        else:
            self._run(self._drop(name))

    def drop_all(self) -> None:
        try:
            self._run(self._drop_all())
        finally:
            if self._runner is not None:
                self._runner.close()
                self._runner = None

    def _run(self, work: Coroutine[Any, Any, T]) -> T:
        """`work` on the session's loop: the copies' connections belong to it."""
        if self._runner is None:
            self._runner = asyncio.Runner()
        return self._runner.run(work)

    async def _create(self) -> str:
        name = f"vouchsim_test_{secrets.token_hex(6)}"
        sql = f'CREATE DATABASE "{name}" TEMPLATE "{self.template}"'
        for attempt in range(50):  # CREATE DATABASE fails while anything else is connected to the template
            try:
                await self._admin(sql)
                break
            except asyncpg.exceptions.ObjectInUseError:
                await asyncio.sleep(0.1 * (attempt + 1))
        else:
            await self._admin(sql)
        self.made.append(name)
        if self._baseline is None:
            self._baseline = await self._read_baseline(name)
        return name

    async def _read_baseline(self, name: str) -> _Baseline:
        connection = await asyncpg.connect(self._dsn(name))
        try:
            rows = {}
            for table in self.tables:
                records = await connection.fetch(f'SELECT * FROM "{table}"')  # noqa: S608  # the models' names
                if records:
                    rows[table] = (list(records[0].keys()), [tuple(record.values()) for record in records])
            sequences = [
                row[0]
                for row in await connection.fetch(
                    "SELECT quote_ident(sequencename) FROM pg_sequences WHERE schemaname = 'public'"
                )
            ]
            return _Baseline(await connection.fetchval(SCHEMA_FINGERPRINT), self.tables, rows, sequences)
        finally:
            await connection.close()

    async def _reset(self, name: str) -> bool:
        baseline = self._baseline
        assert baseline is not None
        try:
            connection = await self._resetter(name)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False
        try:
            await connection.execute(OTHER_SESSIONS)  # a test's leftover connection may hold locks or LISTEN
            if await connection.fetchval(SCHEMA_FINGERPRINT) != baseline.fingerprint:
                return False
            async with connection.transaction():
                await connection.execute(baseline.wipe)  # every DELETE and sequence restart, in one round trip
                for table, (columns, records) in baseline.rows.items():
                    await connection.copy_records_to_table(table, records=records, columns=columns)
            return True
        except (asyncpg.PostgresError, asyncpg.InterfaceError):
            await self._forget_resetter(name)
            return False

    async def _resetter(self, name: str) -> asyncpg.Connection:
        """The copy's connection for resets, opened again when a test's work closed it."""
        connection = self._resetters.get(name)
        if connection is None or connection.is_closed():
            connection = self._resetters[name] = await asyncpg.connect(self._dsn(name))
        return connection

    async def _forget_resetter(self, name: str) -> None:
        connection = self._resetters.pop(name, None)
        if connection is not None:
            connection.terminate()  # no goodbye to wait for: the copy is reset or dropped without it

    async def _drop(self, name: str) -> None:
        await self._forget_resetter(name)
        await self._admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        self.made.remove(name)

    async def _drop_all(self) -> None:
        for name in list(self.made):
            await self._drop(name)
        self.free.clear()

    async def _admin(self, sql: str) -> None:
        connection = await asyncpg.connect(self.admin_dsn)
        try:
            await connection.execute(sql)
        finally:
            await connection.close()

    def _dsn(self, name: str) -> str:
        return self.admin_dsn.rsplit("/", 1)[0] + "/" + name
