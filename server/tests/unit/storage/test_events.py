"""The event bus wakes waiters only once the publishing transaction commits, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vouchsim.server.storage.engine import create_sessionmaker
from vouchsim.server.storage.events import EventBus, detail_of, with_detail

pytestmark = pytest.mark.anyio


async def _next(queue: asyncio.Queue[str], within: float = 5.0) -> str:
    return await asyncio.wait_for(queue.get(), within)


async def test_published_topics_arrive_after_commit_only(engine: Any, database_url: str) -> None:
    bus = EventBus()
    await bus.start(database_url)
    sessions = create_sessionmaker(engine)
    seen: list[str] = []
    bus.add_listener(seen.append)
    try:
        async with bus.subscribe("delegation:1") as queue:
            async with sessions() as session:
                async with session.begin():
                    await bus.publish(session, "delegation:1", "user:9")
                    await asyncio.sleep(0)
                    assert queue.empty()  # not before the commit
                assert await _next(queue) == "delegation:1"
            async with sessions() as session, session.begin():
                await bus.publish(session, "delegation:1")
                await session.rollback()
            async with sessions() as session, session.begin():
                await bus.publish(session, "delegation:2")
            # Only the rolled-back publication is missing; the next commit's topic is not ours.
            with pytest.raises(TimeoutError):
                await _next(queue, 0.3)
        assert "user:9" in seen and "delegation:2" in seen
    finally:
        await bus.stop()


async def test_a_second_bus_hears_the_first_on_postgres(engine: Any, database_url: str) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("crossing instances needs PostgreSQL LISTEN/NOTIFY")
    first, second = EventBus(), EventBus()
    await first.start(database_url)
    await second.start(database_url)
    sessions = create_sessionmaker(engine)
    try:
        async with second.subscribe("delegation:x") as queue:
            async with sessions() as session, session.begin():
                await first.publish(session, "delegation:x")
            assert await _next(queue) == "delegation:x"
    finally:
        await first.stop()
        await second.stop()


async def test_a_topic_with_a_detail_reaches_the_topics_subscribers_whole(engine: Any, database_url: str) -> None:
    bus = EventBus()
    await bus.start(database_url)
    sessions = create_sessionmaker(engine)
    seen: list[str] = []
    bus.add_listener(seen.append)
    try:
        async with bus.subscribe("user:9") as queue, bus.subscribe("user:9#dlg_1") as detailed:
            async with sessions() as session, session.begin():
                await bus.publish(session, with_detail("user:9", "dlg_1"))
            message = await _next(queue)
            assert (message, detail_of(message)) == ("user:9#dlg_1", "dlg_1")
            assert detailed.empty()  # one subscribes to a topic, never to one detail of it
        assert "user:9#dlg_1" in seen
    finally:
        await bus.stop()


def test_a_message_without_a_detail_says_nothing_changed_in_particular() -> None:
    assert detail_of("user:9") is None
    assert detail_of("user:9#") is None
    assert detail_of(with_detail("user:9", "dlg_1")) == "dlg_1"


async def test_publishing_hooks_no_listener_on_the_session(engine: Any, database_url: str) -> None:
    """The commit hook is registered once for every session, not per publishing session (`event.listen` on a
    session instance showed in the decision path's profile); the topic still arrives at commit."""
    bus = EventBus()
    await bus.start(database_url)
    sessions = create_sessionmaker(engine)
    try:
        async with bus.subscribe("delegation:7") as queue:
            async with sessions() as session:
                async with session.begin():
                    await bus.publish(session, "delegation:7")
                hooks = session.sync_session.dispatch
                assert not hooks.after_commit.listeners and not hooks.after_soft_rollback.listeners
            assert await _next(queue) == "delegation:7"
    finally:
        await bus.stop()
