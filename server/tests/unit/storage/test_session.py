"""Units of work (server.storage.session): as many open at once as the pool has connections, the others waiting for
their turn before they make a session; a unit opened inside another never waits for a turn again."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import text

from vouchsim.server.storage.engine import create_sessionmaker
from vouchsim.server.storage.session import own_transactions

pytestmark = pytest.mark.anyio


async def test_at_most_so_many_units_are_open_at_once(engine: Any) -> None:
    units = own_transactions(create_sessionmaker(engine), at_once=2)
    release, two_inside = asyncio.Event(), asyncio.Event()
    inside: list[int] = []
    most = 0

    async def work(number: int) -> None:
        nonlocal most
        async with units() as session:
            inside.append(number)
            most = max(most, len(inside))
            if len(inside) == 2:
                two_inside.set()
            await session.execute(text("SELECT 1"))
            await release.wait()
            inside.remove(number)

    tasks = [asyncio.create_task(work(number)) for number in range(5)]
    await two_inside.wait()
    for _ in range(20):  # the other three get every chance to come in: they must not
        await asyncio.sleep(0)
    assert len(inside) == 2
    release.set()
    await asyncio.gather(*tasks)
    assert most == 2
    assert inside == []


async def test_a_unit_inside_a_unit_does_not_wait_for_a_turn(engine: Any) -> None:
    units = own_transactions(create_sessionmaker(engine), at_once=1)
    async with units() as outer:
        await outer.execute(text("SELECT 1"))
        async with units() as inner:  # with one turn, held by the outer unit: waiting would never end
            assert (await inner.execute(text("SELECT 2"))).scalar() == 2
    async with units() as again:  # the turn was given back
        assert (await again.execute(text("SELECT 3"))).scalar() == 3


async def test_a_unit_given_up_while_waiting_takes_no_turn(engine: Any) -> None:
    units = own_transactions(create_sessionmaker(engine), at_once=1)
    held, release = asyncio.Event(), asyncio.Event()

    async def holder() -> None:
        async with units():
            held.set()
            await release.wait()

    async def wait_for_a_turn() -> None:
        async with units():
            pass

    holding = asyncio.create_task(holder())
    await held.wait()
    waiting = asyncio.create_task(wait_for_a_turn())
    for _ in range(20):
        await asyncio.sleep(0)
    assert not waiting.done()  # the one turn is taken
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    release.set()
    await holding
    async with units() as session:  # the cancelled waiter left the turn free
        assert (await session.execute(text("SELECT 1"))).scalar() == 1


async def test_a_freed_turn_goes_first_to_a_task_that_had_one_before(engine: Any) -> None:
    units = own_transactions(create_sessionmaker(engine), at_once=1)
    held, release, go_on = asyncio.Event(), asyncio.Event(), asyncio.Event()
    order: list[str] = []

    async def holder() -> None:
        async with units():
            held.set()
            await release.wait()

    async def newcomer() -> None:
        async with units():
            order.append("newcomer")

    async def returning() -> None:
        async with units():
            pass  # its first turn, before the holder's
        await go_on.wait()
        async with units():
            order.append("returning")

    back = asyncio.create_task(returning())
    for _ in range(20):
        await asyncio.sleep(0)
    holding = asyncio.create_task(holder())
    await held.wait()
    new = asyncio.create_task(newcomer())  # waits first
    for _ in range(20):
        await asyncio.sleep(0)
    go_on.set()  # waits second, having had a turn before
    for _ in range(20):
        await asyncio.sleep(0)
    release.set()
    await asyncio.gather(holding, new, back)
    assert order == ["returning", "newcomer"]


async def test_statement_by_statement_skips_begin_and_commit_on_postgresql_only(engine: Any) -> None:
    """Each statement commits on its own (a rollback keeps it) on PostgreSQL; SQLite keeps its transaction. The next
    unit on the same pooled connection is transactional again."""
    from vouchsim.server.storage.session import statement_by_statement, transaction

    sessions = create_sessionmaker(engine)
    async with transaction(sessions) as session:
        await session.execute(text("CREATE TABLE kept (n INTEGER)"))

    async def write_then_fail(n: int, *, by_statement: bool) -> None:
        async with transaction(sessions) as session:
            if by_statement:
                await statement_by_statement(session)
            await session.execute(text("INSERT INTO kept VALUES (:n)"), {"n": n})
            raise RuntimeError("a bug, after the write")

    with pytest.raises(RuntimeError):
        await write_then_fail(1, by_statement=True)
    with pytest.raises(RuntimeError):
        await write_then_fail(2, by_statement=False)
    async with transaction(sessions) as session:
        kept = (await session.execute(text("SELECT n FROM kept ORDER BY n"))).scalars().all()
    assert kept == ([1] if engine.dialect.name == "postgresql" else [])
