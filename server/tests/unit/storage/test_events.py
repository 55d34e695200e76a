"""The event bus wakes waiters only once the publishing transaction commits, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from vouchsim.server.storage.engine import create_sessionmaker
from vouchsim.server.storage.events import EventBus, Subscription, detail_of, payload_of, with_detail

pytestmark = pytest.mark.anyio


async def _next(queue: Subscription, within: float = 5.0) -> str:
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


async def test_a_payload_reaches_this_instances_subscribers_once_and_others_bare(
    engine: Any, database_url: str
) -> None:
    """What the publisher committed travels with the topic in process (`payload_of`); on PostgreSQL the NOTIFY's
    echo is not dispatched a second time here, while another instance hears the bare topic and reads."""
    bus = EventBus()
    await bus.start(database_url)
    elsewhere = EventBus() if database_url.startswith("postgresql") else None
    if elsewhere is not None:
        await elsewhere.start(database_url)
    sessions = create_sessionmaker(engine)
    committed = {"status": "approved"}
    try:
        async with (
            bus.subscribe("delegation:p") as here,
            bus.subscribe("user:p") as feed,
            contextlib.AsyncExitStack() as stack,
        ):
            there = await stack.enter_async_context(elsewhere.subscribe("delegation:p")) if elsewhere else None
            async with sessions() as session, session.begin():
                await bus.publish(session, "delegation:p", with_detail("user:p", "dlg_p"), payload=committed)
            message = await _next(here)
            assert message == "delegation:p" and payload_of(message) is committed
            detailed = await _next(feed)
            assert detail_of(detailed) == "dlg_p" and payload_of(detailed) is committed
            if there is not None:
                bare = await _next(there)
                assert bare == "delegation:p" and payload_of(bare) is None
            # Not twice here: the NOTIFY that came back (PostgreSQL) was this bus's own.
            with pytest.raises(TimeoutError):
                await _next(here, 0.5)
        assert payload_of("delegation:p") is None
    finally:
        await bus.stop()
        if elsewhere is not None:
            await elsewhere.stop()


async def test_topics_without_a_payload_still_come_back_through_postgres(engine: Any, database_url: str) -> None:
    """Unchanged for topics published bare: on PostgreSQL they are dispatched here when the NOTIFY returns."""
    bus = EventBus()
    await bus.start(database_url)
    sessions = create_sessionmaker(engine)
    try:
        async with bus.subscribe("delegation:b") as queue, bus.subscribe("user:b") as other:
            async with sessions() as session, session.begin():
                await bus.publish(session, "delegation:b", "user:b")
            assert await _next(queue) == "delegation:b"
            assert await _next(other) == "user:b"
    finally:
        await bus.stop()


async def test_a_subscription_hands_messages_over_in_order_and_a_cancelled_get_takes_none() -> None:
    subscription = Subscription()
    getter = asyncio.create_task(subscription.get())
    await asyncio.sleep(0)
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    subscription.put_nowait("delegation:1")
    subscription.put_nowait("delegation:2")
    assert subscription.qsize() == 2
    assert await subscription.get() == "delegation:1"
    assert subscription.get_nowait() == "delegation:2"
    assert subscription.empty()
    with pytest.raises(asyncio.QueueEmpty):
        subscription.get_nowait()
    waiting = asyncio.create_task(subscription.get())
    await asyncio.sleep(0)
    subscription.put_nowait("delegation:3")  # wakes the reader waiting
    assert await waiting == "delegation:3"
