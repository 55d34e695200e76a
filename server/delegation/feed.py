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
import heapq
from collections.abc import AsyncGenerator, Awaitable, Callable, Collection, Iterable
from dataclasses import dataclass, field
from datetime import datetime

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

    def seconds_until_first_expiry(self, known: Known) -> float:
        first = known.first_expiry()
        return (first - self.clock.now()).total_seconds() if first is not None else float("inf")

    def due(self, known: Known) -> set[str]:
        """The pending delegations among `known` whose expiry has come (the clock read once)."""
        return known.due(self.clock.now())


class Known:
    """The feed's last look at each delegation, and a heap of the pending ones' expiries.

    The feed asks for the first expiry and for the due ones at every wake: scanning a thousand pending delegations
    twice per wake was a few per cent of a burst of decisions. Heap entries are checked against the views when they
    come up (a delegation decided since, or seen again, leaves a stale entry behind, dropped then); a snapshot
    starts a new heap."""

    def __init__(self, views: Iterable[DelegationView] = ()) -> None:
        self.views: dict[str, DelegationView] = {}
        self._expiries: list[tuple[datetime, str]] = []
        self.update(views)

    def update(self, views: Iterable[DelegationView]) -> None:
        for view in views:
            self.views[view.delegation_id] = view
            if view.status == _PENDING:
                heapq.heappush(self._expiries, (view.expires_at, view.delegation_id))

    def get(self, delegation_id: str) -> DelegationView | None:
        return self.views.get(delegation_id)

    def first_expiry(self) -> datetime | None:
        while self._expiries:
            if self._current(*self._expiries[0]):
                return self._expiries[0][0]
            heapq.heappop(self._expiries)
        return None

    def due(self, now: datetime) -> set[str]:
        due: set[str] = set()
        while self._expiries and self._expiries[0][0] <= now:
            entry = heapq.heappop(self._expiries)
            if self._current(*entry):
                due.add(entry[1])
        for delegation_id in due:  # still pending until read back as expired
            view = self.views[delegation_id]
            heapq.heappush(self._expiries, (view.expires_at, delegation_id))
        return due

    def _current(self, expires_at: datetime, delegation_id: str) -> bool:
        view = self.views.get(delegation_id)
        return view is not None and view.status == _PENDING and view.expires_at == expires_at


async def follow(source: FeedSource, user_id: str, *, keepalive: float) -> AsyncGenerator[DelegationView | None, None]:
    loop = asyncio.get_running_loop()
    async with source.events.subscribe(topics.user(user_id)) as queue:
        views = await source.snapshot(user_id)
        known = Known(views)
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
                known = Known(views)
            else:
                wanted = wake.delegation_ids | source.due(known)
                read = await source.read(user_id, wanted) if wanted else []
                carried = [record.view for key, record in wake.records.items() if key not in wanted]
                views = sorted([*read, *carried], key=_newest_first, reverse=True)
                changed = _changed(known, views)
                known.update(views)
            for view in changed:
                yield view
            if quiet:
                yield None
                next_ping = loop.time() + keepalive


def _newest_first(view: DelegationView) -> tuple[object, str]:
    return view.created_at, view.delegation_id


def _changed(known: Known, views: Iterable[DelegationView]) -> list[DelegationView]:
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
