"""The testbed's state and the changes to it, HTTP-free: the movable clock, the faults, reset, and the journal.

One `Testbed` per process, made in `create_app` when the testbed is on. What must hold on every instance of a
deployment (the clock offset, the faults) lives in the database (`testbed_state`, `testbed_faults`), with a copy
in memory that requests read without a round trip. A change is written, then announced on the event bus
(`testbed#<nonce>:<what>`; on PostgreSQL through LISTEN/NOTIFY, so every process hears it); each instance
reloads its copy from the database and answers `testbed-applied#<nonce>:<instance>`. The instance that made the
change waits (up to `APPLY_TIMEOUT`) until every worker of its `vouchsim serve --workers N` has answered, so
`POST /testbed/clock`, a new fault or a reset is in force everywhere once its HTTP answer arrives.

The journal is not shared: it is per instance (`server.testbed.journal`).

The clock is an `OffsetClock` over the real one and is the Runtime's clock, so everything that expires (codes,
tokens, pairings, sessions, delegations, delegation token claims) follows it. Moving it also expires, at once,
every pending delegation it made due, which answers the calls waiting for them.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from datetime import datetime

import msgspec

from vouchsim.server.core.clock import OffsetClock, real_now
from vouchsim.server.core.crypto import hash_secret, new_id
from vouchsim.server.delegation.service import DelegationService
from vouchsim.server.oauth.preregistered import PreregisteredClients
from vouchsim.server.settings import Settings
from vouchsim.server.storage import topics
from vouchsim.server.storage.events import EventBus, Subscription, detail_of, with_detail
from vouchsim.server.storage.models import TestbedFault
from vouchsim.server.storage.repositories.clients import ClientRepository
from vouchsim.server.storage.repositories.testbed import CLOCK, TestbedRepository
from vouchsim.server.storage.session import DbSession, SessionFactory, Transactions, own_transactions
from vouchsim.server.testbed.faults import Fault, FaultAction, FaultMatch, FaultRequest
from vouchsim.server.testbed.journal import Journal
from vouchsim.server.testbed.observe import AnswerFacts, RequestFacts

log = logging.getLogger("vouchsim.testbed")

CHANGED = "testbed"
APPLIED = "testbed-applied"
APPLY_TIMEOUT = 5.0  # seconds to wait for every worker to apply a change before answering anyway
MAX_ADVANCE = 100 * 365 * 24 * 3600  # a century: beyond it, datetimes overflow soon enough
_NAMES = 10_000  # remembered token / pairing / request → client names, per kind

# A change to the shared state, made inside one transaction.
_Change = Callable[[TestbedRepository], Awaitable[None]]


class ClockView(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /testbed/clock`: the server's now, and how far it is ahead of real time."""

    now: datetime
    offset_seconds: float


class _Names:
    """Which client a bearer token, a pairing page or an authorization request belongs to: learned from the
    answers this process gave (a token response, a redirect to a pairing page), else looked up once."""

    def __init__(self) -> None:
        self.tokens: OrderedDict[str, str | None] = OrderedDict()
        self.pairings: OrderedDict[str, str | None] = OrderedDict()
        self.requests: OrderedDict[str, str | None] = OrderedDict()

    @staticmethod
    def remember(table: OrderedDict[str, str | None], key: str, client_id: str | None) -> None:
        table[key] = client_id
        table.move_to_end(key)
        while len(table) > _NAMES:
            table.popitem(last=False)

    def clear(self) -> None:
        self.tokens.clear()
        self.pairings.clear()
        self.requests.clear()


class Testbed:
    def __init__(self, settings: Settings, clock: OffsetClock, *, token: str) -> None:
        self.settings = settings
        self.clock = clock
        self.token = token
        self.instance_id = secrets.token_hex(4)
        self.journal = Journal(settings.testbed_journal_size)
        self._faults: list[Fault] = []
        self._names = _Names()
        self._transaction: Transactions | None = None
        self._events: EventBus | None = None
        self._delegations: DelegationService | None = None
        self._listener: asyncio.Task[None] | None = None
        self._reset_hooks: list[Callable[[], None]] = []

    # -- life ---------------------------------------------------------------------------------------------------
    async def start(
        self,
        sessions: SessionFactory,
        events: EventBus,
        delegations: DelegationService,
    ) -> None:
        """Load the shared state and start following its changes (call in the app's lifespan)."""
        self._transaction = own_transactions(sessions)
        self._events = events
        self._delegations = delegations
        listening = asyncio.Event()
        self._listener = asyncio.create_task(self._listen(listening))
        await listening.wait()
        await self._reload()

    async def stop(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            with suppress(asyncio.CancelledError):
                await self._listener
            self._listener = None

    # -- the clock ----------------------------------------------------------------------------------------------
    def clock_view(self) -> ClockView:
        return ClockView(now=self.clock.now(), offset_seconds=self.clock.offset_seconds)

    async def advance(self, seconds: float) -> ClockView:
        """Move the clock `seconds` forward on every instance, then expire the delegations that made due."""
        if not 0 <= seconds <= MAX_ADVANCE:
            raise ValueError(f"advance_seconds must be between 0 and {MAX_ADVANCE}")

        async def change(repo: TestbedRepository) -> None:
            current = await repo.state(CLOCK, for_update=True) or {}
            offset = float(current.get("offset_seconds", 0.0)) + seconds
            await repo.set_state(CLOCK, {"offset_seconds": offset}, real_now(self.clock))
            self.clock.set_offset(offset)

        await self._change("clock", change)
        await self._expire_due()
        return self.clock_view()

    async def reset_clock(self) -> ClockView:
        """Back to real time, on every instance."""

        async def change(repo: TestbedRepository) -> None:
            await repo.set_state(CLOCK, {"offset_seconds": 0.0}, real_now(self.clock))
            self.clock.set_offset(0.0)

        await self._change("clock", change)
        return self.clock_view()

    async def _expire_due(self) -> None:
        assert self._delegations is not None
        expired = await self._delegations.expire_due()
        if expired:
            log.info("testbed clock: %d pending delegation(s) expired", expired)

    # -- faults -------------------------------------------------------------------------------------------------
    async def add_fault(self, request: FaultRequest) -> Fault:
        row = TestbedFault(
            id=new_id("flt", 9),
            match=msgspec.to_builtins(request.match),
            action=msgspec.to_builtins(request.action),
            times=request.times,
            remaining=request.times,
            fired=0,
            created_at=real_now(self.clock),
        )

        async def change(repo: TestbedRepository) -> None:
            await repo.add_fault(row)

        await self._change("faults", change)
        return _fault(row)

    async def faults(self) -> list[Fault]:
        """Every fault with its counts as they are now (read from the database: other instances fire too)."""
        async with self._unit() as repo:
            return [_fault(row) for row in await repo.faults()]

    async def remove_fault(self, fault_id: str) -> bool:
        removed = False

        async def change(repo: TestbedRepository) -> None:
            nonlocal removed
            removed = await repo.remove_fault(fault_id)

        await self._change("faults", change)
        return removed

    async def remove_faults(self) -> int:
        count = 0

        async def change(repo: TestbedRepository) -> None:
            nonlocal count
            for fault in await repo.faults():
                count += await repo.remove_fault(fault.id)

        await self._change("faults", change)
        return count

    async def fault_for(self, facts: RequestFacts) -> Fault | None:
        """The fault that answers this request (its firing used up), or None. No database round trip unless
        a fault could apply."""
        candidates = [fault for fault in self._faults if fault.applies_to(facts)]
        if not candidates:
            return None
        client_id = facts.client_id
        if client_id is None and any(fault.match.client_id is not None for fault in candidates):
            client_id = await self.client_of(facts)
        for fault in candidates:
            if fault.match.holds_for(facts, client_id) and await self._fire(fault):
                return fault
        return None

    async def _fire(self, fault: Fault) -> bool:
        async with self._unit() as repo:
            fired = await repo.fire(fault.id)
            if fired is not None and fired[0] == 0:
                await self._publish(repo.session, "faults")  # used up: every instance stops trying it
        if fired is None:  # used up or removed meanwhile, by another instance
            self._faults = [known for known in self._faults if known.id != fault.id]
            return False
        updated = msgspec.structs.replace(fault, remaining=fired[0], fired=fault.fired + 1)
        self._faults = [updated if known.id == fault.id else known for known in self._faults]
        return True

    # -- reset --------------------------------------------------------------------------------------------------
    async def reset(self) -> None:
        """Wipe clients, users, devices, connections, tokens, sessions, delegations and faults, return the clock
        to real time and clear the journal, the rate limits and the cached metadata documents, on every instance;
        signing keys stay. The pre-registered clients are read again from `VOUCHSIM_CLIENTS_FILE` and written
        back, so the file can be edited between two runs; a file that is no longer valid raises `ClientsFileError`
        before anything is wiped."""
        preregistered = PreregisteredClients.from_settings(self.settings)

        async def change(repo: TestbedRepository) -> None:
            await repo.wipe()
            await repo.set_state(CLOCK, {"offset_seconds": 0.0}, real_now(self.clock))
            await preregistered.seed(ClientRepository(repo.session), real_now(self.clock))
            assert self._events is not None
            # Anything any instance has cached (validated tokens and sessions of /mcp) is gone.
            await self._events.publish(repo.session, topics.EVERYTHING, at_once_here=True)

        await self._change("reset", change)

    def on_reset(self, forget: Callable[[], None]) -> None:
        """Call `forget` on this instance at every reset (state kept in process elsewhere: the rate limits, the
        cached client metadata documents)."""
        self._reset_hooks.append(forget)

    def _clear_local(self) -> None:
        for forget in self._reset_hooks:
            forget()
        self.journal.clear()
        self._names.clear()
        self._faults = []
        self.clock.set_offset(0.0)

    # -- naming a request's client -------------------------------------------------------------------------------
    async def client_of(self, facts: RequestFacts) -> str | None:
        """The request's client: said by the request itself, or found from its bearer token, pairing page or
        authorization request."""
        if facts.client_id is not None:
            return facts.client_id
        names = self._names
        if facts.bearer is not None:
            key = hash_secret(facts.bearer)
            if key not in names.tokens:
                async with self._unit() as repo:
                    names.remember(names.tokens, key, await repo.client_of_access_token(key))
            return names.tokens[key]
        if facts.pairing_id is not None:
            if facts.pairing_id not in names.pairings:
                async with self._unit() as repo:
                    names.remember(names.pairings, facts.pairing_id, await repo.client_of_pairing(facts.pairing_id))
            return names.pairings[facts.pairing_id]
        if facts.request_id is not None:
            if facts.request_id not in names.requests:
                async with self._unit() as repo:
                    found = await repo.client_of_authorization_request(facts.request_id)
                names.remember(names.requests, facts.request_id, found)
            return names.requests[facts.request_id]
        return None

    def learn(self, facts: RequestFacts, answer: AnswerFacts, client_id: str | None) -> None:
        """Remember whose token, pairing page or authorization request an answer revealed."""
        if client_id is None:
            return
        names = self._names
        if answer.access_token is not None:
            names.remember(names.tokens, hash_secret(answer.access_token), client_id)
        if answer.pairing_id is not None:
            names.remember(names.pairings, answer.pairing_id, client_id)
        if answer.request_id is not None:
            names.remember(names.requests, answer.request_id, client_id)

    # -- sharing changes ----------------------------------------------------------------------------------------
    @asynccontextmanager
    async def _unit(self) -> AsyncIterator[TestbedRepository]:
        assert self._transaction is not None, "the testbed was not started"
        async with self._transaction() as session:
            yield TestbedRepository(session)

    async def _publish(self, session: DbSession, what: str, nonce: str | None = None) -> None:
        assert self._events is not None
        await self._events.publish(session, with_detail(CHANGED, f"{nonce or secrets.token_hex(8)}:{what}"))

    async def _change(self, what: str, change: _Change) -> None:
        """Run `change` in a transaction, announce it, apply it here, and wait until every worker has."""
        assert self._events is not None
        nonce = secrets.token_hex(8)
        async with self._events.subscribe(APPLIED) as applied:
            async with self._unit() as repo:
                await change(repo)
                await self._publish(repo.session, what, nonce)
            if what == "reset":
                self._clear_local()
            await self._reload()
            await self._await_applied(applied, nonce)

    async def _await_applied(self, applied: Subscription, nonce: str) -> None:
        expected = self.settings.workers
        seen: set[str] = set()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + APPLY_TIMEOUT
        while len(seen) < expected:
            left = deadline - loop.time()
            try:
                message = await asyncio.wait_for(applied.get(), max(left, 0.0)) if left > 0 else None
            except TimeoutError:
                message = None
            if message is None:
                log.warning(
                    "testbed change %s: %d of %d workers confirmed within %.0f s",
                    nonce,
                    len(seen),
                    expected,
                    APPLY_TIMEOUT,
                )
                return
            got, _, instance = (detail_of(message) or "").partition(":")
            if got == nonce:
                seen.add(instance)

    async def _listen(self, listening: asyncio.Event) -> None:
        """Follow changes announced by any instance: reload, then confirm."""
        events = self._events
        assert events is not None
        async with events.subscribe(CHANGED) as changes:
            listening.set()
            while True:
                message = await changes.get()
                nonce, _, what = (detail_of(message) or "").partition(":")
                try:
                    if what == "reset":
                        self._clear_local()
                    await self._reload()
                    if nonce:
                        async with self._unit() as repo:
                            await events.publish(repo.session, with_detail(APPLIED, f"{nonce}:{self.instance_id}"))
                except Exception:  # the database may be away for a moment; the next change reloads again
                    log.exception("testbed: cannot apply a change announced by another instance")

    async def _reload(self) -> None:
        async with self._unit() as repo:
            state = await repo.state(CLOCK) or {}
            rows = await repo.faults()
        self.clock.set_offset(float(state.get("offset_seconds", 0.0)))
        self._faults = [_fault(row) for row in rows]


def _fault(row: TestbedFault) -> Fault:
    return Fault(
        id=row.id,
        match=msgspec.convert(row.match, FaultMatch),
        action=msgspec.convert(row.action, FaultAction),
        times=row.times,
        remaining=row.remaining,
        fired=row.fired,
        created_at=row.created_at,
    )
