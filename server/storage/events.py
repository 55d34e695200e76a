"""Push, not polling: wake whoever waits on a topic when a transaction that changed it commits.

On one instance the bus dispatches in-process, right after the commit. On PostgreSQL it publishes with
`pg_notify` inside the transaction (PostgreSQL delivers it at commit, to every listening instance, this one
included), so a decision taken through one instance wakes a call held by another, and a revocation empties
every instance's cache at once.

Topics are short strings such as `delegation:<id>`, `user:<id>` or `revoked:<kind>:<id>`, built and read by
`server.storage.topics` only. A topic may carry a
detail, what changed (`user:<id>#<delegation id>`, see `with_detail`): its subscribers receive the whole string,
so a reader woken by many changes reads just those rather than everything again.

A publisher may hand the committed state along (`payload`): subscribers on the publishing instance receive the
topic as an `Announcement` carrying it, so a waiter woken by a decision needs no read of what the decision just
wrote. Other instances receive the bare topic (NOTIFY carries text) and read. On PostgreSQL such topics are
dispatched here at commit and their NOTIFY, marked with this bus's origin, is not dispatched again when it comes back.

Repositories that revoke something (tokens, connections, MCP sessions) announce it themselves through
`announce`, using the bus their session was made with (`create_sessionmaker(engine, events)`), so no caller
can revoke without the caches hearing of it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from functools import lru_cache
from typing import Any

from sqlalchemy import BindParameter, bindparam, event, func, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from vouchsim.server.storage import topics

log = logging.getLogger("vouchsim.events")

CHANNEL = "vouchsim_events"
_PENDING = "vouchsim_pending_topics"  # a session's info: {bus: topics to dispatch at its commit}
# The key under which a sessionmaker hands its bus to every session it makes (`EventBus.session_info`).
_BUS = "vouchsim_event_bus"
DETAIL = topics.DETAIL
# Separates the origin of a NOTIFY that its publisher already dispatched in process from the topic.
_ORIGIN = "\x1f"


class Announcement(str):
    """A topic (a `str`, as every subscriber reads it) with what its publisher committed, in process only."""

    payload: object

    def __new__(cls, topic: str, payload: object) -> Announcement:
        announcement = super().__new__(cls, topic)
        announcement.payload = payload
        return announcement


def payload_of(message: str) -> object | None:
    """What the publisher handed along with `message`; None for a bare topic (read the state instead)."""
    return message.payload if isinstance(message, Announcement) else None


def with_detail(topic: str, detail: str) -> str:
    """`topic`, telling its subscribers what changed; they receive it under `topic`."""
    return f"{topic}{DETAIL}{detail}"


def detail_of(message: str) -> str | None:
    """What a received message says changed; None when it does not say (then anything may have)."""
    _, separator, detail = message.partition(DETAIL)
    return detail if separator and detail else None


class Subscription:
    """What one subscriber has received and not taken yet: the part of `asyncio.Queue` its readers use (`get`,
    `get_nowait`, `empty`), for one reader at a time. A Queue carries three deques and an Event, about 3 KB, and
    every waiting MCP call holds a subscription: a burst of a thousand held 3 MB of empty queues."""

    __slots__ = ("_messages", "_waiter")

    def __init__(self) -> None:
        self._messages: list[str] = []
        self._waiter: asyncio.Future[None] | None = None

    def put_nowait(self, message: str) -> None:
        self._messages.append(message)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def empty(self) -> bool:
        return not self._messages

    def qsize(self) -> int:
        return len(self._messages)

    def get_nowait(self) -> str:
        if not self._messages:
            raise asyncio.QueueEmpty
        return self._messages.pop(0)

    async def get(self) -> str:
        """The oldest message not taken yet, once there is one. Cancelled, it takes nothing."""
        while not self._messages:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        return self._messages.pop(0)


class EventBus:
    def __init__(self) -> None:
        self._queues: dict[str, set[Subscription]] = defaultdict(set)
        self._listeners: list[Callable[[str], None]] = []
        self._dsn: str | None = None
        self._connection: Any = None
        self._keeper: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._origin = secrets.token_hex(6)

    @property
    def crosses_instances(self) -> bool:
        return self._dsn is not None

    async def start(self, database_url: str) -> None:
        self._loop = asyncio.get_running_loop()
        url = make_url(database_url)
        if url.get_backend_name() != "postgresql":
            return
        self._dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
        await self._listen()
        self._keeper = asyncio.create_task(self._keep_listening())

    async def stop(self) -> None:
        if self._keeper is not None:
            self._keeper.cancel()
            with suppress(asyncio.CancelledError):
                await self._keeper
        if self._connection is not None:
            with suppress(Exception):
                await self._connection.close()
        self._connection = None

    async def _listen(self) -> None:
        import asyncpg

        self._connection = await asyncpg.connect(self._dsn)
        await self._connection.add_listener(CHANNEL, self._on_notify)

    async def _keep_listening(self) -> None:
        """Reconnect the LISTEN connection if the database drops it; meanwhile local dispatch goes on."""
        while True:
            await asyncio.sleep(5)
            if self._connection is not None and not self._connection.is_closed():
                continue
            try:
                await self._listen()
                log.info("event listener reconnected")
                self._dispatch_all()  # anything may have changed while we were deaf
            except Exception as error:  # the database may still be down; try again later
                log.warning("event listener cannot reconnect yet: %s", error)

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        origin, marked, topic = payload.rpartition(_ORIGIN)
        if marked and origin == self._origin:
            return  # published here with its payload: dispatched at commit already
        self._dispatch(topic)

    # -- subscribing -------------------------------------------------------------------------------------------
    @asynccontextmanager
    async def subscribe(self, *topics: str) -> AsyncIterator[Subscription]:
        """A subscription that receives each of `topics` when it is published (with its detail, if it has one).
        Subscribe *before* reading the state you wait on, so a change committed between the read and the wait
        is not missed."""
        queue = Subscription()
        for topic in topics:
            self._queues[topic].add(queue)
        try:
            yield queue
        finally:
            for topic in topics:
                self._queues[topic].discard(queue)
                if not self._queues[topic]:
                    del self._queues[topic]

    def waiting_on(self, topic: str) -> int:
        """How many subscriptions wait on `topic` now (a call that went away must hold none)."""
        return len(self._queues.get(topic, ()))

    def add_listener(self, listener: Callable[[str], None]) -> None:
        """Called with every topic published (cache invalidation listens to everything)."""
        self._listeners.append(listener)

    def _dispatch(self, message: str) -> None:
        for listener in self._listeners:
            listener(message)
        for queue in list(self._queues.get(message.partition(DETAIL)[0], ())):
            queue.put_nowait(message)

    def _dispatch_with(self, topic: str, payload: object) -> None:
        self._dispatch(topic if payload is None else Announcement(topic, payload))

    def _dispatch_all(self) -> None:
        for topic in list(self._queues):
            self._dispatch(topic)
        for listener in self._listeners:
            listener(topics.EVERYTHING)

    # -- publishing --------------------------------------------------------------------------------------------
    def notices(self, *topics: str, marked: bool) -> list[str]:
        """What `publish` sends on PostgreSQL for `topics` (`marked`: it has a payload, dispatched here at commit), for
        a statement that sends them itself (`notify_statement`); nothing where the bus does not cross instances."""
        if self._dsn is None:
            return []
        return [f"{self._origin}{_ORIGIN}{topic}" if marked else topic for topic in topics]

    async def publish(
        self,
        session: AsyncSession,
        *topics: str,
        at_once_here: bool = False,
        payload: object = None,
        notified: bool = False,
    ) -> None:
        """Announce `topics` when `session`'s transaction commits (never before, and not at all on rollback).

        `at_once_here`: on PostgreSQL, also dispatch on this instance right at commit rather than when the NOTIFY
        comes back (listeners then hear it twice). Revocations use it: the instance that revoked a token must not
        accept it again, not even in the moment the notification takes.

        `payload`: what was committed, handed to this instance's subscribers with each topic (`payload_of`); on
        PostgreSQL they get it at commit, and not again from the NOTIFY.

        `notified`: the statement that made the change sent `notices(*topics, …)` already (a repository's
        compare-and-swap with its NOTIFY, one round trip); only the dispatch here at commit is left to do.
        """
        if self._dsn is not None:
            marked = payload is not None
            if not notified:
                # One statement for all of them: each statement is a round trip of its own.
                notices = self.notices(*topics, marked=marked)
                await session.execute(_notify_statement(len(notices)), {"channel": CHANNEL, **_numbered(notices)})
            if not (at_once_here or marked):
                return
        pending: dict[EventBus, dict[str, object]] = session.info.setdefault(_PENDING, {})
        announced = pending.setdefault(self, {})
        for topic in topics:
            announced.pop(topic, None)  # the latest payload, in the latest order
            announced[topic] = payload

    def _deliver(self, announced: dict[str, object]) -> None:
        loop = self._loop
        if loop is None:
            for topic, payload in announced.items():
                self._dispatch_with(topic, payload)
            return
        # Commits run on the loop's thread (SQLAlchemy's greenlet, SQLite inline): `call_soon` then, as the
        # thread-safe variant also writes to the loop's wake-up pipe, a system call per topic for nothing.
        schedule = loop.call_soon if asyncio._get_running_loop() is loop else loop.call_soon_threadsafe
        for topic, payload in announced.items():
            schedule(self._dispatch_with, topic, payload)

    # -- binding to sessions -----------------------------------------------------------------------------------
    def session_info(self) -> dict[str, Any]:
        """`info` for a sessionmaker whose sessions announce through this bus (see `announce`)."""
        return {_BUS: self}


async def announce(session: AsyncSession, *topics: str) -> None:
    """Publish `topics` at commit through the bus `session` was made with; without one (a bare test session)
    there is nobody to tell."""
    bus = session.info.get(_BUS)
    if isinstance(bus, EventBus) and topics:
        await bus.publish(session, *topics, at_once_here=True)


# Hooked once, for every session: `event.listen` on each session that publishes was a few per cent of a decision's
# CPU (py-spy). A session with nothing pending finds nothing to do.
def _after_commit(sync_session: Session) -> None:
    pending: dict[EventBus, dict[str, object]] = sync_session.info.pop(_PENDING, {})
    for bus, announced in pending.items():
        bus._deliver(announced)


def _after_rollback(sync_session: Session, _previous_transaction: Any) -> None:
    sync_session.info.pop(_PENDING, None)


event.listen(Session, "after_commit", _after_commit)
event.listen(Session, "after_soft_rollback", _after_rollback)


@lru_cache(maxsize=8)
def _notify_statement(count: int) -> Any:
    return text("SELECT " + ", ".join(f"pg_notify(:channel, :topic{i})" for i in range(count)))


def notify_columns(count: int) -> list[Any]:
    """`pg_notify(:channel, :topic<i>)` for `count` notices, as columns of a repository's own statement (bound by
    `notify_parameters`): a NOTIFY sent only for the rows that statement returns."""
    channel: BindParameter[str] = bindparam("notify_channel")
    return [func.pg_notify(channel, bindparam(f"notify_topic{i}")) for i in range(count)]


def notify_parameters(notices: list[str]) -> dict[str, str]:
    return {"notify_channel": CHANNEL, **{f"notify_topic{i}": notice for i, notice in enumerate(notices)}}


def _numbered(notices: list[str]) -> dict[str, str]:
    return {f"topic{i}": notice for i, notice in enumerate(notices)}
