"""The trusted device's live feed of its user's delegations (`GET /device/delegations/events` streams it).

Every pending delegation first (oldest first), then each delegation of this user as it is created or changes, and
`None` every `keepalive` seconds of quiet (the stream's keepalive).

Woken by `user:<id>#<delegation id>` events, it takes the delegation each event carries when it was committed on
this instance (`DelegationRecord` payloads: a decision costs the feed no read), reads just the delegations named
without one (a change committed by another instance), and those of its pending ones that reached their expiry. At
each keepalive it reads the whole window again, which also covers an event lost while a PostgreSQL listener
reconnected (that one arrives without a detail and triggers the same full read).

What it reads comes from the delegation service (`FeedSource`: a snapshot of the window, and some delegations by
id), so the rules of reading (expiry first, shielded transactions) stay in one place, the service.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field

from vouchsim.server.core.clock import Clock
from vouchsim.server.delegation.schemas import DelegationRecord, DelegationView
from vouchsim.server.delegation.states import DelegationStatus
from vouchsim.server.storage import topics
from vouchsim.server.storage.events import EventBus, Subscription, detail_of, payload_of

_PENDING = DelegationStatus.PENDING


@dataclass(frozen=True)
class FeedSource:
    events: EventBus
    clock: Clock
    # every pending delegation plus the newest others, newest first
    snapshot: Callable[[str], Awaitable[list[DelegationView]]]
    # these delegations of this user as they are now, newest first
    read: Callable[[str, Collection[str]], Awaitable[list[DelegationView]]]

    def seconds_until_first_expiry(self, known: dict[str, DelegationView]) -> float:
        first = min((view.expires_at for view in known.values() if view.status == _PENDING), default=None)
        return (first - self.clock.now()).total_seconds() if first is not None else float("inf")

    def due(self, known: dict[str, DelegationView]) -> set[str]:
        """The pending delegations among `known` whose expiry has come (the clock read once: a user with a
        thousand pending is woken once per change)."""
        now = self.clock.now()
        return {key for key, view in known.items() if view.status == _PENDING and view.expires_at <= now}


async def follow(source: FeedSource, user_id: str, *, keepalive: float) -> AsyncGenerator[DelegationView | None, None]:
    loop = asyncio.get_running_loop()
    async with source.events.subscribe(topics.user(user_id)) as queue:
        views = await source.snapshot(user_id)
        known = {view.delegation_id: view for view in views}
        for view in reversed(views):
            if view.status == _PENDING:
                yield view
        next_ping = loop.time() + keepalive
        while True:
            wake = await woken(queue, max(0.0, min(next_ping - loop.time(), source.seconds_until_first_expiry(known))))
            quiet = loop.time() >= next_ping
            if quiet or wake.everything:
                views = await source.snapshot(user_id)
                changed = _changed(known, views)
                known = {view.delegation_id: view for view in views}
            else:
                wanted = wake.delegation_ids | source.due(known)
                read = await source.read(user_id, wanted) if wanted else []
                carried = [record.view for key, record in wake.records.items() if key not in wanted]
                views = sorted([*read, *carried], key=_newest_first, reverse=True)
                changed = _changed(known, views)
                known |= {view.delegation_id: view for view in views}
            for view in changed:
                yield view
            if quiet:
                yield None
                next_ping = loop.time() + keepalive


def _newest_first(view: DelegationView) -> tuple[object, str]:
    return view.created_at, view.delegation_id


def _changed(known: dict[str, DelegationView], views: Iterable[DelegationView]) -> list[DelegationView]:
    """What differs from the last look, oldest first."""
    return [view for view in reversed(list(views)) if known.get(view.delegation_id) != view]


@dataclass(frozen=True)
class Wake:
    """What woke a waiter: the delegations its events named without carrying them (`delegation_ids`: read them),
    those they carried as committed (`records`, by id), and `everything` when an event named none and carried
    none (read it all)."""

    delegation_ids: frozenset[str] = frozenset()
    records: dict[str, DelegationRecord] = field(default_factory=dict)
    everything: bool = False

    def __bool__(self) -> bool:
        """Whether any event arrived (an empty wake is a timeout)."""
        return self.everything or bool(self.delegation_ids) or bool(self.records)


async def woken(queue: Subscription, within: float) -> Wake:
    """What arrived within `within` seconds (nothing: an empty wake); everything queued is consumed, so one
    read covers a burst. A carried record stands for its delegation unless a later event about it came without
    one (then it must be read: that change may be newer than the record)."""
    try:
        if within > 0:
            # A timeout around the get, not `wait_for`, which runs it as a task of its own: one fewer task (and
            # its coroutine and context) per waiting call, of which a burst holds a thousand.
            async with asyncio.timeout(within):
                messages = [await queue.get()]
        else:
            messages = [queue.get_nowait()]
    except (TimeoutError, asyncio.QueueEmpty):
        return Wake()
    while not queue.empty():
        messages.append(queue.get_nowait())
    unread: set[str] = set()
    records: dict[str, DelegationRecord] = {}
    everything = False
    for message in messages:
        record = payload_of(message)
        if isinstance(record, DelegationRecord):
            records[record.view.delegation_id] = record
            unread.discard(record.view.delegation_id)
            continue
        detail = detail_of(message)
        if detail is None:
            everything = True
        else:
            unread.add(detail)
            records.pop(detail, None)
    return Wake(frozenset(unread), records, everything)
