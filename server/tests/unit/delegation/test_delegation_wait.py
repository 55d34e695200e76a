"""Waiting for a decision is woken by push (the event bus), never by polling: a decision made through another
session wakes the waiter within milliseconds; with nothing happening it returns the pending view at its
timeout. The device's feed (`changes`) is pushed the same way. Timeouts here are fractions of a second."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from server.tests.delegation_support import World, ask, decide
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.delegation.errors import DelegationNotFound
from vouchsim.server.delegation.schemas import DelegationRecord, DelegationView
from vouchsim.server.delegation.service import DelegationService
from vouchsim.server.settings import Settings
from vouchsim.server.storage.events import EventBus

pytestmark = pytest.mark.anyio

WAKE_WITHIN = 0.5  # seconds: a generous bound for "milliseconds" on a loaded CI machine


S = TypeVar("S", bound=DelegationService)


class ReadSignal(DelegationService):
    """Sets `read` once `wait` has subscribed and made its first read: from then on only a push can wake it."""

    read: asyncio.Event

    async def get_record(self, delegation_id: str, *, connection_id: str) -> DelegationRecord:
        record = await super().get_record(delegation_id, connection_id=connection_id)
        self.read.set()
        return record


def like(service: DelegationService, kind: type[S], events: EventBus | None = None) -> S:
    """A `kind` with `service`'s parts (and, if given, another event bus)."""
    return kind(
        service.transactions, service.audiences, service.keys, events or service.events, service.clock,
        service.settings, service.hmac_key,
    )  # fmt: skip


def waiter(service: DelegationService) -> ReadSignal:
    watched = like(service, ReadSignal)
    watched.read = asyncio.Event()
    return watched


class TickingClock(FrozenClock):
    """Time that passes as it really does, from a chosen start."""

    def __init__(self, start: datetime) -> None:
        super().__init__(start)
        self._origin = asyncio.get_running_loop().time()

    def now(self) -> datetime:
        return super().now() + timedelta(seconds=asyncio.get_running_loop().time() - self._origin)


async def timed(work: Any) -> tuple[Any, float]:
    loop = asyncio.get_running_loop()
    started = loop.time()
    result = await work
    return result, loop.time() - started


async def test_a_decision_in_another_session_wakes_the_waiter_at_once(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    watched = waiter(service)
    waiting = asyncio.create_task(
        watched.wait(view.delegation_id, connection_id=world.runtime.connection_id, timeout=10)
    )
    await asyncio.wait_for(watched.read.wait(), 5)
    loop = asyncio.get_running_loop()
    await decide(service, world.phone, view)  # its own session and transaction, committed here
    decided = loop.time()
    result = await asyncio.wait_for(waiting, 5)
    assert result.status == "approved"
    assert loop.time() - decided < WAKE_WITHIN


async def test_a_withdrawal_wakes_the_waiter_too(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    watched = waiter(service)
    conn = world.runtime.connection_id
    waiting = asyncio.create_task(watched.wait(view.delegation_id, connection_id=conn, timeout=10))
    await asyncio.wait_for(watched.read.wait(), 5)
    await service.withdraw(view.delegation_id, connection_id=conn)
    result, elapsed = await timed(asyncio.wait_for(waiting, 5))
    assert result.status == "cancelled" and elapsed < WAKE_WITHIN


async def test_a_quiet_wait_returns_the_pending_view_at_its_timeout(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    result, elapsed = await timed(
        service.wait(view.delegation_id, connection_id=world.runtime.connection_id, timeout=0.2)
    )
    assert result == view
    assert 0.15 <= elapsed < 0.2 + WAKE_WITHIN


async def test_an_unrelated_change_does_not_end_the_wait(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    other = await ask(service, world.runtime)
    watched = waiter(service)
    waiting = asyncio.create_task(
        watched.wait(view.delegation_id, connection_id=world.runtime.connection_id, timeout=0.3)
    )
    await asyncio.wait_for(watched.read.wait(), 5)
    await decide(service, world.phone, other)
    assert (await asyncio.wait_for(waiting, 5)).status == "pending"


async def test_a_decided_delegation_returns_without_waiting(service: DelegationService, world: World) -> None:
    view = await decide(service, world.phone, await ask(service, world.runtime))
    result, elapsed = await timed(
        service.wait(view.delegation_id, connection_id=world.runtime.connection_id, timeout=10)
    )
    assert result.status == "approved" and elapsed < WAKE_WITHIN


async def test_the_expiry_ends_the_wait(make_service: Any, world: World) -> None:
    clock = TickingClock(datetime(2026, 11, 25, 12, 0, 0, 900_000, tzinfo=UTC))  # expires 0.1 s from now
    service = make_service(on_clock=clock, with_settings=Settings(delegation_ttl=1))
    view = await ask(service, world.runtime)
    assert view.expires_at == datetime(2026, 11, 25, 12, 0, 1, tzinfo=UTC)
    result, elapsed = await timed(
        service.wait(view.delegation_id, connection_id=world.runtime.connection_id, timeout=10)
    )
    assert result.status == "expired" and elapsed < 0.1 + WAKE_WITHIN


async def test_waiting_on_another_runtimes_delegation_is_refused(service: DelegationService, world: World) -> None:
    view = await ask(service, world.runtime)
    with pytest.raises(DelegationNotFound):
        await service.wait(view.delegation_id, connection_id=world.strangers_runtime.connection_id, timeout=0.1)


async def test_a_decision_through_another_instance_wakes_the_waiter(
    make_service: Any, world: World, database_url: str
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("crossing instances needs PostgreSQL LISTEN/NOTIFY")
    elsewhere = EventBus()
    await elsewhere.start(database_url)
    try:
        here, there = make_service(), make_service(events=elsewhere)
        view = await ask(here, world.runtime)
        watched = waiter(here)
        waiting = asyncio.create_task(
            watched.wait(view.delegation_id, connection_id=world.runtime.connection_id, timeout=10)
        )
        await asyncio.wait_for(watched.read.wait(), 5)
        await decide(there, world.phone, view)
        result, elapsed = await timed(asyncio.wait_for(waiting, 5))
        assert result.status == "approved" and elapsed < WAKE_WITHIN
    finally:
        await elsewhere.stop()


# -- the device's feed ---------------------------------------------------------------------------------------


async def next_of(feed: AsyncGenerator[DelegationView | None, None], within: float = 5) -> DelegationView | None:
    return await asyncio.wait_for(anext(feed), within)


async def test_the_feed_replays_pending_then_follows_changes(
    service: DelegationService, world: World, clock: FrozenClock
) -> None:
    first = await ask(service, world.runtime)
    clock.advance(1)
    second = await ask(service, world.runtime)
    decided = await decide(service, world.phone, await ask(service, world.runtime), "deny")
    feed = service.changes(world.phone.user_id, keepalive=30)
    try:
        assert await next_of(feed) == first  # oldest first
        assert await next_of(feed) == second
        created = await ask(service, world.runtime)  # made through another session
        assert await next_of(feed) == created
        approved = await decide(service, world.phone, first)
        assert await next_of(feed) == approved
        await ask(service, world.strangers_runtime)  # another user's: not on this feed
        await service.withdraw(second.delegation_id, connection_id=world.runtime.connection_id)
        cancelled = await next_of(feed)
        assert cancelled is not None and (cancelled.delegation_id, cancelled.status) == (
            second.delegation_id,
            "cancelled",
        )
        assert decided.status == "denied"  # decided before the feed opened: never replayed
    finally:
        await feed.aclose()


async def test_the_feed_keeps_the_connection_alive_when_quiet(service: DelegationService, world: World) -> None:
    feed = service.changes(world.phone.user_id, keepalive=0.05)
    try:
        assert await next_of(feed, 1) is None
        assert await next_of(feed, 1) is None
    finally:
        await feed.aclose()


async def test_the_feed_reports_an_expiry_when_it_falls_due(make_service: Any, world: World) -> None:
    clock = TickingClock(datetime(2026, 11, 25, 12, 0, 0, 900_000, tzinfo=UTC))
    service = make_service(on_clock=clock, with_settings=Settings(delegation_ttl=1))
    view = await ask(service, world.runtime)
    feed = service.changes(world.phone.user_id, keepalive=30)
    try:
        assert await next_of(feed) == view
        expired = await next_of(feed, 0.1 + WAKE_WITHIN)
        assert expired is not None and (expired.delegation_id, expired.status) == (view.delegation_id, "expired")
    finally:
        await feed.aclose()


async def test_the_feed_replays_every_pending_delegation_beyond_the_history_window(
    service: DelegationService, world: World
) -> None:
    asked = [await ask(service, world.runtime, purpose=f"burst {n}") for n in range(130)]
    feed = service.changes(world.phone.user_id, keepalive=30)
    try:
        replayed = [await next_of(feed) for _ in asked]
        assert {view.delegation_id for view in replayed if view} == {view.delegation_id for view in asked}
        # A burst after the feed opened reaches it whole too.
        more = [await ask(service, world.runtime, purpose=f"later {n}") for n in range(110)]
        followed = [await next_of(feed) for _ in more]
        assert {view.delegation_id for view in followed if view} == {view.delegation_id for view in more}
    finally:
        await feed.aclose()
    assert len(await service.list_for_user(world.phone.user_id, "pending")) == 240


class CountedWindowReads(DelegationService):
    """Counts the feed's reads of the whole window (every pending delegation plus the newest others)."""

    window_reads = 0

    async def _feed_snapshot(self, user_id: str) -> list[DelegationView]:
        self.window_reads += 1
        return await super()._feed_snapshot(user_id)


async def test_a_burst_wakes_the_feed_into_reading_only_what_changed(service: DelegationService, world: World) -> None:
    """Reading the whole window on every event made a burst of n requests cost n² rows on the device's stream."""
    watched = like(service, CountedWindowReads)
    feed = watched.changes(world.phone.user_id, keepalive=30)
    try:
        first = await ask(service, world.runtime)
        assert await next_of(feed) == first
        assert watched.window_reads == 1  # the opening read only
        burst = [await ask(service, world.runtime, purpose=f"burst {n}") for n in range(20)]
        approved = await decide(service, world.phone, first)
        followed = [await next_of(feed) for _ in range(21)]
        assert {view.delegation_id: view for view in followed if view} == {
            view.delegation_id: view for view in [*burst, approved]
        }
        assert watched.window_reads == 1
    finally:
        await feed.aclose()


async def test_an_event_that_names_nothing_makes_the_feed_read_everything(
    service: DelegationService, world: World
) -> None:
    """What a PostgreSQL listener sends after it reconnected (`EventBus._dispatch_all`): anything may have
    changed meanwhile, so the feed reads its whole window."""
    watched = like(service, CountedWindowReads)
    feed = watched.changes(world.phone.user_id, keepalive=30)
    try:
        opened = await ask(service, world.runtime)
        assert await next_of(feed) == opened  # the feed is open and listening
        silent = EventBus()  # a bus nobody listens to: this request reaches the feed through no event
        quiet = like(service, DelegationService, events=silent)
        unannounced = await ask(quiet, world.runtime)
        pulled = asyncio.ensure_future(next_of(feed))
        await asyncio.sleep(0.1)
        assert not pulled.done()
        service.events._dispatch(f"user:{world.phone.user_id}")
        assert await pulled == unannounced
        assert watched.window_reads == 2
    finally:
        await feed.aclose()


# -- a change committed here arrives with the delegation: no read back -----------------------------------------


class CountedReads(ReadSignal):
    """Counts `wait`'s reads of its delegation and the feed's reads of named delegations."""

    reads = 0
    feed_reads = 0

    async def get_record(self, delegation_id: str, *, connection_id: str) -> DelegationRecord:
        self.reads += 1
        return await super().get_record(delegation_id, connection_id=connection_id)

    async def _feed_views(self, user_id: str, delegation_ids: Any) -> list[DelegationView]:
        self.feed_reads += 1
        return await super()._feed_views(user_id, delegation_ids)


def counted(service: DelegationService, events: EventBus | None = None) -> CountedReads:
    watched = like(service, CountedReads, events)
    watched.read = asyncio.Event()
    return watched


async def test_a_decision_committed_here_reaches_the_waiter_and_its_token_without_a_read(
    service: DelegationService, world: World
) -> None:
    """The decision's commit hands the delegation, as committed, to the call waiting on this instance; its token is
    minted from that (the decision path's CPU was in these reads)."""
    view = await ask(service, world.runtime)
    watched = counted(service)
    waiting = asyncio.create_task(
        watched.wait_record(view.delegation_id, connection_id=world.runtime.connection_id, timeout=10)
    )
    await asyncio.wait_for(watched.read.wait(), 5)
    decided = await decide(service, world.phone, view)
    record = await asyncio.wait_for(waiting, 5)
    assert watched.reads == 1  # the opening read only
    assert record.view == decided and record.user_id == world.phone.user_id and record.token_jti
    issued = await watched.token(record, issuer="https://vouch.test")
    assert issued is not None and issued.expires_at == decided.token_expires_at
    # The same token as one minted after reading the delegation back (minting is deterministic for Ed25519).
    assert issued == await service.token(decided, issuer="https://vouch.test")


async def test_a_carried_record_is_not_taken_for_a_later_change_that_came_unread(
    service: DelegationService, world: World
) -> None:
    """A change that arrives without the delegation (from another instance) after one that carried it: the
    waiter reads, since that change may be the newer one."""
    view = await ask(service, world.runtime)
    watched = counted(service)
    waiting = asyncio.create_task(
        watched.wait_record(view.delegation_id, connection_id=world.runtime.connection_id, timeout=10)
    )
    await asyncio.wait_for(watched.read.wait(), 5)
    decided = await decide(service, world.phone, view)
    service.events._dispatch(f"delegation:{view.delegation_id}")  # as a NOTIFY from elsewhere arrives
    record = await asyncio.wait_for(waiting, 5)
    assert record.view == decided
    assert watched.reads in (1, 2)  # the bare topic may land after the waiter already returned


async def test_the_feed_takes_what_a_decision_here_carried(service: DelegationService, world: World) -> None:
    watched = counted(service)
    feed = watched.changes(world.phone.user_id, keepalive=30)
    try:
        first = await ask(service, world.runtime)
        assert await next_of(feed) == first
        approved = await decide(service, world.phone, first)
        assert await next_of(feed) == approved
        assert watched.feed_reads == 0
    finally:
        await feed.aclose()


async def test_a_decision_through_another_instance_is_read_back(
    make_service: Any, world: World, database_url: str
) -> None:
    """What another instance committed arrives as a bare NOTIFY: the waiter here reads it, and mints after
    reading, while that instance's own waiters took the record it committed."""
    if not database_url.startswith("postgresql"):
        pytest.skip("crossing instances needs PostgreSQL LISTEN/NOTIFY")
    elsewhere = EventBus()
    await elsewhere.start(database_url)
    try:
        here, there = make_service(), make_service(events=elsewhere)
        async with elsewhere.subscribe(f"user:{world.phone.user_id}") as heard_there:
            view = await ask(here, world.runtime)
            # The request's own NOTIFY reaches the other instance bare; let it land before anyone waits there, or
            # it would wake that waiter into a read of its own.
            await asyncio.wait_for(heard_there.get(), 5)
        watched_here, watched_there = counted(here), counted(there, events=elsewhere)
        conn = world.runtime.connection_id
        waiting_here = asyncio.create_task(watched_here.wait_record(view.delegation_id, connection_id=conn, timeout=10))
        waiting_there = asyncio.create_task(
            watched_there.wait_record(view.delegation_id, connection_id=conn, timeout=10)
        )
        await asyncio.wait_for(watched_here.read.wait(), 5)
        await asyncio.wait_for(watched_there.read.wait(), 5)
        decided = await decide(there, world.phone, view)
        record_here, record_there = await asyncio.wait_for(asyncio.gather(waiting_here, waiting_there), 5)
        assert record_here.view == record_there.view == decided
        assert (watched_here.reads, watched_there.reads) == (2, 1)
        assert record_here.token_jti == record_there.token_jti is not None
    finally:
        await elsewhere.stop()
