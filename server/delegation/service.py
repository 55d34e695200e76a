"""The delegation flow, HTTP-free (docs/delegations.md; the state machine is `server.delegation.states`).

An agent asks (`request`), waits (`wait`), reads (`get`), takes its token (`token`) or withdraws (`withdraw`);
the user's trusted device lists and follows its delegations (`list_for_user`, `changes`), decides with a signed
statement (`decide_signed`) and revokes (`revoke_by_device`); an audience checks a token online (`introspect`).

Database access goes through `Transactions` (`server.storage.session`), one unit of work per step, never a
session held across a wait: the app-wide service opens a short transaction per unit, so a call waiting 45 s
for a decision holds no connection while it waits; `within(session)` gives the same service running inside
a request's own transaction (the device API, where the request's signature check and the decision commit
together). Every state change is a compare-and-swap and announces `delegation:<id>` and `user:<id>` on the
event bus when it commits; waiters subscribe *before* they read, so no change slips between.
"""

from __future__ import annotations

import asyncio
import math
import unicodedata
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

import anyio

from vouchsim.server.core.clock import Clock
from vouchsim.server.core.crypto import new_id
from vouchsim.server.core.errors import VouchsimError
from vouchsim.server.core.subjects import audience_subject
from vouchsim.server.delegation import decisions, feed
from vouchsim.server.delegation.audiences import Audience, AudienceRegistry
from vouchsim.server.delegation.binding import binding_message
from vouchsim.server.delegation.errors import (
    DelegationClosed,
    DelegationNotFound,
    InvalidDecision,
    InvalidDelegationRequest,
    ScopeNotAllowed,
    UnknownAudience,
)
from vouchsim.server.delegation.schemas import DelegationRecord, DelegationView, IssuedToken
from vouchsim.server.delegation.states import FINAL, DelegationEvent, DelegationStatus, next_status
from vouchsim.server.delegation.tokens import (
    ALGORITHM,
    ALGORITHMS,
    Algorithm,
    SigningKeyStore,
    delegation_claims,
    mint,
    verified_claims,
)
from vouchsim.server.settings import Settings
from vouchsim.server.storage import topics
from vouchsim.server.storage.events import EventBus
from vouchsim.server.storage.repositories.delegations import (
    DecisionEvidence,
    DelegationRepository,
    DelegationRow,
    NonceReplayed,
    StoredDelegation,
)
from vouchsim.server.storage.repositories.devices import DeviceSigner, RequestNonce
from vouchsim.server.storage.repositories.signing_keys import SigningKeyRepository
from vouchsim.server.storage.session import DbSession, Transactions, shared_transaction

__all__ = ["DelegationRecord", "DelegationService", "DelegationView", "IssuedToken"]

PURPOSE_MAX_LENGTH = 500
LIST_LIMIT = 100  # newest first; the device API documents the cap
# Pending delegations are bounded by their expiry, and a device must see every one it could still decide.
PENDING_LIMIT = 5000
WHICH = ("pending", "history", "all")
_T = TypeVar("_T")
_PENDING = DelegationStatus.PENDING
_MAX_CAS_ROUNDS = 3  # pending → approved → revoked: a caller can lose at most twice


@dataclass(frozen=True)
class Admitted:
    """A decision's request, authenticated (`Admit`): the user its device acts for; and, when the read looked the
    request's nonce up (`DecisionEvidence.request_nonce_seen`), that nonce, still to be remembered: with the
    compare-and-swap, or by `remember` (a refusal from here on, which must keep the nonce as any request's)."""

    user_id: str
    nonce: RequestNonce | None = None
    remember: Callable[[], Awaitable[None]] | None = None


# A decision's authentication (`decide_signed`): given the deciding device as read (None: no such device) and whether
# the request's nonce was found remembered (None: not looked up), who it is, or the error that refuses the request.
Admit = Callable[[DeviceSigner | None, bool | None], Awaitable[Admitted]]


@dataclass(frozen=True)
class _Unit:
    session: DbSession
    delegations: DelegationRepository
    keys: SigningKeyRepository


class DelegationService:
    def __init__(
        self,
        transactions: Transactions,
        audiences: AudienceRegistry,
        keys: SigningKeyStore,
        events: EventBus,
        clock: Clock,
        settings: Settings,
        hmac_key: bytes,
        *,
        repository: Callable[[DbSession], DelegationRepository] = DelegationRepository,
    ) -> None:
        """`transactions`: `own_transactions(sessions)` for the app-wide service. `repository` lets a test line
        racing requests up before their compare-and-swap."""
        self.transactions = transactions
        self.audiences = audiences
        self.keys = keys
        self.events = events
        self.clock = clock
        self.settings = settings
        self.hmac_key = hmac_key
        self.repository = repository

    def within(self, session: DbSession) -> DelegationService:
        """This service inside one request's transaction (its owner commits). Not for `wait` or `changes`,
        which must see other transactions' commits between their reads."""
        return DelegationService(
            shared_transaction(session),
            self.audiences,
            self.keys,
            self.events,
            self.clock,
            self.settings,
            self.hmac_key,
            repository=self.repository,
        )

    # -- signing keys --------------------------------------------------------------------------------------

    async def prepare(self) -> None:
        """Make the first signing keys at startup, so the first request does not race another for them: the
        default algorithm's and those the audiences name. The JWKS makes the others when first asked for."""
        in_use = {ALGORITHM, *(audience.alg for audience in self.audiences)}
        async with self._unit() as unit:
            await self.keys.prepare(unit.keys, [algorithm for algorithm in ALGORITHMS if algorithm in in_use])

    async def jwks(self) -> dict[str, Any]:
        """Every published key; a key for each algorithm, made here for those no audience names (once per process:
        it is cached once read back)."""
        if not self.keys.complete():
            async with self.keys.making, self._unit() as unit:
                await self.keys.prepare(unit.keys)
        async with self._unit() as unit:
            return await self.keys.jwks(unit.keys)

    async def rotate_keys(self, algorithm: Algorithm = ALGORITHM) -> str:
        """A new signing key for `algorithm`; tokens signed by the old one keep verifying until they expire.
        Returns its kid."""
        async with self._unit() as unit:
            return await self.keys.rotate(unit.keys, algorithm)

    # -- the agent (MCP tools) -----------------------------------------------------------------------------

    async def request(
        self, *, user_id: str, client_id: str, connection_id: str, audience_id: str, purpose: str, scopes: list[str]
    ) -> DelegationView:
        """A new pending delegation, shown on the user's devices at once. A user with no trusted device left (a lost
        phone, revoked) has nobody to ask: the delegation is denied at once, as `deny_without_device` does."""
        audience = self._audience(audience_id)
        granted = _checked_scopes(audience, scopes)
        text = _checked_purpose(purpose)
        now = self.clock.now()
        async with self._unit() as unit:
            client_name = await unit.delegations.client_name(client_id)
            if client_name is None:
                raise InvalidDelegationRequest("This client is not registered.")
            nobody_to_ask = not await unit.delegations.has_trusted_device(user_id)
            row = StoredDelegation(
                id=new_id("dlg"),
                user_id=user_id,
                client_id=client_id,
                connection_id=connection_id,
                audience_id=audience.audience_id,
                scopes=list(granted),
                purpose=text,
                binding_message=binding_message(),
                status=DelegationStatus.DENIED if nobody_to_ask else _PENDING,
                created_at=now,
                expires_at=_whole(now) + timedelta(seconds=self.settings.delegation_ttl),
                decided_at=_whole(now) if nobody_to_ask else None,
            )
            await unit.delegations.add(row)
            await self._announce(unit, row, client_name)
            return self._view(DelegationRow(row, client_name))

    async def get(self, delegation_id: str, *, connection_id: str) -> DelegationView:
        """One of this runtime connection's delegations, expired first if it is due."""
        return (await self.get_record(delegation_id, connection_id=connection_id)).view

    async def get_record(self, delegation_id: str, *, connection_id: str) -> DelegationRecord:
        """`get`, with what `token` needs to mint without reading it again."""
        async with self._unit() as unit:
            return self._record(await self._of_connection(unit, delegation_id, connection_id))

    async def wait(
        self,
        delegation_id: str,
        *,
        connection_id: str,
        timeout: float,  # noqa: ASYNC109 - not a cancellation: after it the still-pending view is the answer
        tick: Callable[[float], Awaitable[None]] | None = None,
        interval: float = math.inf,
    ) -> DelegationView:
        """`wait_record`'s delegation, as its view."""
        record = await self.wait_record(
            delegation_id, connection_id=connection_id, timeout=timeout, tick=tick, interval=interval
        )
        return record.view

    async def wait_record(
        self,
        delegation_id: str,
        *,
        connection_id: str,
        timeout: float,  # noqa: ASYNC109 - not a cancellation: after it the still-pending view is the answer
        tick: Callable[[float], Awaitable[None]] | None = None,
        interval: float = math.inf,
    ) -> DelegationRecord:
        """The delegation once it is no longer pending, or as it is after `timeout` seconds.

        Woken by the event bus, not by polling: it subscribes first, then reads, so a decision committed in
        between is not missed. A change committed on this instance arrives with the delegation as committed (a
        `DelegationRecord` payload), so a decision costs the waiting call no read at all; a change from another
        instance is read, each read its own short unit of work; nothing is held while waiting. A pending delegation
        reaching its `expires_at` wakes it too (and is then read as expired). `tick(elapsed)`, if given, is awaited
        at the start and every `interval` seconds while it is still pending (the MCP tool's progress
        notifications): one loop, one subscription, and a read only when something changed that arrived unread.
        The record returned goes to `token` as it is (no second read).
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + max(0.0, timeout)
        next_tick = started if tick is not None else math.inf
        async with self.events.subscribe(topics.delegation(delegation_id)) as queue:
            record = await self._read_shielded(delegation_id, connection_id)
            while record.view.status == _PENDING:
                now = loop.time()
                if deadline - now <= 0:
                    break
                if tick is not None and now >= next_tick:
                    await tick(now - started)
                    next_tick = loop.time() + interval
                expiry = self._seconds_until(record.view.expires_at)
                within = min(deadline - loop.time(), expiry, next_tick - loop.time())
                woke = await feed.woken(queue, max(0.0, within))
                carried = woke.records.get(delegation_id)
                if carried is not None and not woke.everything:
                    record = carried
                    continue
                if not woke and loop.time() < deadline and within < expiry:
                    continue  # only the next tick is due: nothing changed, nothing to read
                record = await self._read_shielded(delegation_id, connection_id)
        return record

    async def _read_shielded(self, delegation_id: str, connection_id: str) -> DelegationRecord:
        # A cancelled wait (the agent hung up or sent notifications/cancelled) is cancelled between reads,
        # never inside one, whose interrupted rollback SQLAlchemy would log as an error.
        return await _uninterrupted(self.get_record(delegation_id, connection_id=connection_id))

    async def withdraw(self, delegation_id: str, *, connection_id: str) -> DelegationView:
        """The agent's `delegation_revoke`: a pending delegation is cancelled, an approved one revoked.

        Idempotent; a delegation already denied, expired, cancelled or revoked is returned as it is. An
        approval landing first is revoked in turn: the agent's wish to end it wins either way.
        """
        async with self._unit() as unit:
            found = await self._of_connection(unit, delegation_id, connection_id)
            for _ in range(_MAX_CAS_ROUNDS):
                status = DelegationStatus(found.delegation.status)
                event = {_PENDING: DelegationEvent.CANCEL, DelegationStatus.APPROVED: DelegationEvent.REVOKE}.get(
                    status
                )
                if event is None:
                    break
                if await self._move(unit, found.delegation, event, client_name=found.client_name):
                    break
                found = await self._reload(unit, delegation_id)
            return self._view(found)  # a compare-and-swap that won brought `found` up to date: no re-read

    async def withdraw_for_client(self, delegation_id: str, *, client_id: str) -> DelegationView | None:
        """`withdraw`, asked by the agent client holding the delegation's token at `/oauth/revoke` (RFC 7009)
        rather than through one of its runtime connections; None (nothing done) for another client's."""
        async with self._unit() as unit:
            found = await unit.delegations.get(delegation_id)
        if found is None or found.delegation.client_id != client_id:
            return None
        return await self.withdraw(delegation_id, connection_id=found.delegation.connection_id)

    async def token(self, of: DelegationView | DelegationRecord, *, issuer: str) -> IssuedToken | None:
        """The delegation token while the delegation is approved and its token unexpired; None otherwise.

        A view is checked against the database first (it may be stale); a record is what was committed or read a
        moment ago (`wait_record`), so it is minted from as it is: a decision costs no read here."""
        view = of.view if isinstance(of, DelegationRecord) else of
        if view.status != DelegationStatus.APPROVED:
            return None
        now = self.clock.now()
        if isinstance(of, DelegationRecord):
            record: DelegationRecord | None = of
            key = self.keys.current_key(self._algorithm(view.audience_id))
            if key is None:
                async with self._unit() as unit:
                    key = await self.keys.signing_key(unit.keys, self._algorithm(view.audience_id))
        else:
            async with self._unit() as unit:
                found = await unit.delegations.get(view.delegation_id)
                if found is None or found.delegation.connection_id != view.connection_id:
                    return None
                record = self._record(found)
                key = await self.keys.signing_key(unit.keys, self._algorithm(view.audience_id))
        assert record is not None
        claims = self._claims(record, issuer, now)
        if claims is None:
            return None
        assert record.view.token_expires_at is not None
        return IssuedToken(
            token=mint(key, claims, self._algorithm(view.audience_id)), expires_at=record.view.token_expires_at
        )

    async def expire_due(self) -> int:
        """Move every pending delegation past its `expires_at` to `expired` now, announcing each, so a call
        waiting for one is answered at once (after the testbed moved the clock, say). Returns how many."""
        async with self._unit() as unit:
            due = await unit.delegations.due(_PENDING, self.clock.now())
            expired = 0
            for row in due:
                expired += await self._move(unit, row, DelegationEvent.TIME)
            return expired

    # -- the trusted device --------------------------------------------------------------------------------

    async def list_for_user(self, user_id: str, which: str) -> list[DelegationView]:
        """`pending`, `history` (everything else) or `all`: the newest `LIST_LIMIT`, newest first."""
        if which not in WHICH:
            raise InvalidDelegationRequest('status must be "pending", "history" or "all".')
        async with self._unit() as unit:
            rows = await self._list(unit, user_id, which)
            due = [row.delegation for row in rows if self._due(row.delegation)]
            if not due:  # reads of live delegations never write (nor take SQLite's write lock)
                return [self._view(row) for row in rows]
            for delegation in due:
                await self._move(unit, delegation, DelegationEvent.TIME)
            return [self._view(row) for row in await self._list(unit, user_id, which)]

    async def decide_signed(
        self,
        *,
        device_id: str,
        delegation_id: str,
        decision: str,
        nonce: str,
        signature: str,
        admit: Admit,
        request_nonce: str | None = None,
    ) -> DelegationView:
        """Approve or deny with a statement signed by the device's key; stored as evidence. The request is not
        authenticated yet: the deciding device is read with the delegation and handed to `admit`, which checks the
        request's signature (its errors come first, as they would have had it run before) and says who it is.
        `request_nonce`: the signed request's, looked up by the same read where the storage can then remember it
        with the compare-and-swap (PostgreSQL: one round trip fewer).

        InvalidDecision for an unknown decision, a bad signature or a nonce this device used before;
        DelegationClosed when the delegation is no longer pending (a racing decision, revocation or expiry won).
        """
        async with self._unit() as unit:
            # The device, the delegation and the nonce checks in one round trip; then one compare-and-swap.
            looked_up = nonce if decisions.well_formed_nonce(nonce) else None
            evidence = await unit.delegations.for_decision(
                delegation_id, device_id=device_id, nonce=looked_up, request_nonce=request_nonce
            )
            if evidence is None:
                admitted = await admit(None, None)
            else:
                admitted = await admit(evidence.signer, evidence.request_nonce_seen)
            return await self._decide_admitted(
                unit, evidence, admitted, device_id, delegation_id, decision, nonce, signature
            )

    async def _decide_admitted(
        self,
        unit: _Unit,
        evidence: DecisionEvidence | None,
        admitted: Admitted,
        device_id: str,
        delegation_id: str,
        decision: str,
        nonce: str,
        signature: str,
    ) -> DelegationView:
        user_id = admitted.user_id
        try:
            event = decisions.decision_event(decision)
            decisions.check_shape(nonce, signature)
            if evidence is None or evidence.found is None or evidence.found.delegation.user_id != user_id:
                raise DelegationNotFound()
            signer = evidence.signer
            # The statement must be signed by a key of this user's that is still trusted.
            trusted = signer.user_id == user_id and signer.revoked_at is None
            found = await self._expire_if_due(unit, evidence.found)
            row = found.delegation
            _require_pending(row)
            text = decisions.statement(row, decision, nonce)
            decisions.verify(signer.public_key if trusted else None, text, signature)
            # Checked, not enforced by an index: two decisions racing with one nonce are still two genuine
            # statements, each bound to its own delegation id, so neither is a replay of the other.
            if evidence.nonce_used:
                raise InvalidDecision("This nonce was already used for a decision: sign with a new one.")
        except VouchsimError:
            if admitted.remember is not None:
                await admitted.remember()  # a refused request keeps its nonce too (or is a replay after all)
            raise
        moment = self.clock.now()
        now = _whole(moment)
        changes: dict[str, Any] = {
            "decided_at": now,
            "device_id": device_id,
            "decision_statement": text,
            "decision_nonce": nonce,
            "decision_signature": signature,
        }
        if event is DelegationEvent.APPROVE:
            changes["token_jti"] = new_id("jti")
            changes["token_expires_at"] = now + timedelta(seconds=self.settings.delegation_token_ttl)
        client_name = found.client_name
        try:
            won = await self._move(
                unit, row, event, changes, live_at=moment, client_name=client_name, remember=admitted.nonce
            )
        except NonceReplayed:  # the same request, racing: whichever remembered the nonce first goes on
            assert admitted.remember is not None
            await admitted.remember()  # raises: a replay
            won = await self._move(unit, row, event, changes, live_at=moment, client_name=client_name)
        if not won:
            # A racing decision, withdrawal or expiry won: say which.
            raise DelegationClosed((await self._reload(unit, delegation_id)).delegation.status)
        return self._view(found)  # the compare-and-swap brought `row` up to date

    async def revoke_by_device(self, *, user_id: str, delegation_id: str) -> DelegationView:
        """Revoke an approved delegation of this user; its token introspects as inactive at once. Idempotent."""
        async with self._unit() as unit:
            found = await self._of_user(unit, delegation_id, user_id)
            for _ in range(_MAX_CAS_ROUNDS):
                status = DelegationStatus(found.delegation.status)
                if status is DelegationStatus.REVOKED:
                    break
                if status is _PENDING:
                    raise InvalidDelegationRequest("This delegation is still pending: deny it instead.")
                if status in FINAL:
                    raise DelegationClosed(status, f"This delegation is {status}: there is nothing to revoke.")
                if await self._move(unit, found.delegation, DelegationEvent.REVOKE, client_name=found.client_name):
                    break
                found = await self._reload(unit, delegation_id)
            return self._view(found)  # a compare-and-swap that won brought `found` up to date: no re-read

    async def deny_without_device(self, user_id: str) -> list[str]:
        """The user's last trusted device was revoked (a lost phone): nobody can decide their pending delegations
        any more, so each is denied now, with no signed statement (`decided_by` null), and the agents waiting on
        them are answered at once. Returns the ids denied, oldest first."""
        denied: list[str] = []
        async with self._unit() as unit:
            pending = await unit.delegations.list_for_user(user_id, status_in=[_PENDING], limit=PENDING_LIMIT)
            for found in reversed(pending):
                row = await self._expire_if_due(unit, found)
                changes = {"decided_at": _whole(self.clock.now())}
                if await self._move(unit, row.delegation, DelegationEvent.DENY, changes, client_name=row.client_name):
                    denied.append(row.delegation.id)
        return denied

    def changes(self, user_id: str, *, keepalive: float) -> AsyncGenerator[DelegationView | None, None]:
        """The device's live feed (`server.delegation.feed`): every pending delegation first, then each
        delegation of this user as it is created or changes; `None` every `keepalive` seconds of quiet."""
        return feed.follow(self._feed_source(), user_id, keepalive=keepalive)

    def _feed_source(self) -> feed.FeedSource:
        return feed.FeedSource(
            events=self.events,
            clock=self.clock,
            snapshot=self._feed_snapshot,
            read=self._feed_views,
        )

    async def _feed_snapshot(self, user_id: str) -> list[DelegationView]:
        """Every pending delegation plus the newest others, newest first: a burst of requests larger than the
        history window must still reach the device.

        Shielded: a device hanging up cancels its stream, and a cancellation landing inside these short
        transactions would interrupt the connection's rollback (SQLAlchemy logs that as an error)."""
        pending, recent = await _uninterrupted(self._pending_and_recent(user_id))
        merged = {view.delegation_id: view for view in recent} | {view.delegation_id: view for view in pending}
        return sorted(merged.values(), key=lambda view: (view.created_at, view.delegation_id), reverse=True)

    async def _feed_views(self, user_id: str, delegation_ids: Collection[str]) -> list[DelegationView]:
        """These delegations of this user as they are now (due ones expired first), newest first; shielded as
        `_feed_snapshot` is."""
        views = await _uninterrupted(self._views_now(user_id, delegation_ids))
        return sorted(views, key=lambda view: (view.created_at, view.delegation_id), reverse=True)

    async def _pending_and_recent(self, user_id: str) -> tuple[list[DelegationView], list[DelegationView]]:
        return await self.list_for_user(user_id, "pending"), await self.list_for_user(user_id, "all")

    async def _views_now(self, user_id: str, delegation_ids: Collection[str]) -> list[DelegationView]:
        async with self._unit() as unit:
            rows = [await self._expire_if_due(unit, row) for row in await unit.delegations.get_many(delegation_ids)]
        return [self._view(row) for row in rows if row.delegation.user_id == user_id]

    # -- audiences verifying online (RFC 7662) -------------------------------------------------------------

    async def introspect(self, token: str, *, issuer: str) -> dict[str, Any] | None:
        """The token's claims while it is ours, for this issuer, unexpired, and its delegation still approved;
        None otherwise (a revoked delegation's token included)."""
        async with self._unit() as unit:
            claims = verified_claims(token, await self.keys.key_set(unit.keys))
            if claims is None or claims.get("iss") != issuer or not isinstance(claims.get("delegation_id"), str):
                return None
            found = await unit.delegations.get(claims["delegation_id"])
        now = self.clock.now()
        if found is None or not _token_live(found.delegation, now) or found.delegation.token_jti != claims.get("jti"):
            return None
        if not isinstance(claims.get("exp"), int) or claims["exp"] <= now.timestamp():
            return None
        act = claims.get("act")
        return {"active": True, **claims, "client_id": act.get("sub") if isinstance(act, dict) else None}

    # -- loading, expiry, changes --------------------------------------------------------------------------

    @asynccontextmanager
    async def _unit(self) -> AsyncIterator[_Unit]:
        async with self.transactions() as session:
            yield _Unit(session, self.repository(session), SigningKeyRepository(session))

    async def _of_connection(self, unit: _Unit, delegation_id: str, connection_id: str) -> DelegationRow:
        found = await unit.delegations.get(delegation_id)
        if found is None or found.delegation.connection_id != connection_id:
            raise DelegationNotFound()
        return await self._expire_if_due(unit, found)

    async def _of_user(self, unit: _Unit, delegation_id: str, user_id: str) -> DelegationRow:
        found = await unit.delegations.get(delegation_id)
        if found is None or found.delegation.user_id != user_id:
            raise DelegationNotFound()
        return await self._expire_if_due(unit, found)

    async def _reload(self, unit: _Unit, delegation_id: str) -> DelegationRow:
        found = await unit.delegations.get(delegation_id)
        assert found is not None  # delegations are never deleted
        return await self._expire_if_due(unit, found)

    async def _expire_if_due(self, unit: _Unit, found: DelegationRow) -> DelegationRow:
        """Every read first moves a pending delegation past its `expires_at` to `expired`."""
        if not self._due(found.delegation):
            return found
        await self._move(unit, found.delegation, DelegationEvent.TIME, client_name=found.client_name)
        reloaded = await unit.delegations.get(found.delegation.id)
        assert reloaded is not None
        return reloaded

    async def _move(
        self,
        unit: _Unit,
        row: StoredDelegation,
        event: DelegationEvent,
        changes: dict[str, Any] | None = None,
        *,
        live_at: datetime | None = None,
        client_name: str | None = None,
        remember: RequestNonce | None = None,
    ) -> bool:
        """Compare-and-swap `row` along `event` from the status it was read in; announce it if this call won
        (with the delegation as committed when `client_name` is given: see `_announce`). `remember`: a decision's
        request nonce, remembered by the same statement (`NonceReplayed` if it was already)."""
        status = DelegationStatus(row.status)
        target = next_status(status, event)
        if target is None:
            return False
        now = self.clock.now()
        values: dict[str, Any] = {"status": target, **(changes or {})}
        if event in (DelegationEvent.CANCEL, DelegationEvent.REVOKE):
            values["revoked_at"] = _whole(now)
        if event is DelegationEvent.CANCEL:
            live_at = now  # a due delegation expires; it is not cancelled
        # On PostgreSQL the compare-and-swap sends the announcement's NOTIFY itself, if it wins: one round trip.
        notices = self.events.notices(*_topics(row), marked=client_name is not None)
        won = await unit.delegations.update_if(
            row.id,
            status_in=[status],
            changes=values,
            due_by=now if event is DelegationEvent.TIME else None,
            live_at=live_at,
            notices=notices,
            remember=remember,
        )
        if won:
            row.update(values)  # what the database now holds: nobody reads it back
            await self._announce(unit, row, client_name, notified=bool(notices))
        return won

    async def _announce(
        self, unit: _Unit, row: StoredDelegation, client_name: str | None, *, notified: bool = False
    ) -> None:
        """`delegation:<id>` and `user:<id>#<id>` at commit; with `client_name`, carrying the delegation as it is
        now (`row` is up to date: `_move` brought it there), so the calls and the feed waiting on this
        instance need not read it back. `notified`: its NOTIFY went with the change (`_move`)."""
        payload = None if client_name is None else self._record(DelegationRow(row, client_name))
        await self.events.publish(unit.session, *_topics(row), payload=payload, notified=notified)

    async def _list(self, unit: _Unit, user_id: str, which: str) -> list[DelegationRow]:
        if which == "pending":
            return await unit.delegations.list_for_user(user_id, status_in=[_PENDING], limit=PENDING_LIMIT)
        if which == "history":
            return await unit.delegations.list_for_user(user_id, status_not_in=[_PENDING], limit=LIST_LIMIT)
        return await unit.delegations.list_for_user(user_id, limit=LIST_LIMIT)

    def _due(self, row: StoredDelegation) -> bool:
        return row.status == _PENDING and self.clock.now() >= row.expires_at

    def _seconds_until(self, moment: datetime) -> float:
        return (moment - self.clock.now()).total_seconds()

    def _past(self, view: DelegationView) -> bool:
        return self._seconds_until(view.expires_at) <= 0

    def _algorithm(self, audience_id: str) -> Algorithm:
        """The algorithm the audience verifies (the default for one removed from the registry since)."""
        audience = self.audiences.get(audience_id)
        return audience.alg if audience is not None else ALGORITHM

    def _audience(self, audience_id: str) -> Audience:
        audience = self.audiences.get(audience_id)
        if audience is None:
            raise UnknownAudience(f"No audience is called {audience_id!r}.")
        return audience

    def _claims(self, record: DelegationRecord, issuer: str, now: datetime) -> dict[str, Any] | None:
        """The token's claims while the record's token is live; None otherwise."""
        view = record.view
        if (
            view.status != DelegationStatus.APPROVED
            or record.token_jti is None
            or view.decided_at is None
            or view.token_expires_at is None
            or now >= view.token_expires_at
        ):
            return None
        return delegation_claims(
            issuer=issuer,
            subject=audience_subject(self.hmac_key, record.user_id, view.audience_id),
            audience_id=view.audience_id,
            scopes=list(view.scopes),
            client_id=view.client_id,
            client_name=view.client_name,
            delegation_id=view.delegation_id,
            jti=record.token_jti,
            issued_at=view.decided_at,
            expires_at=view.token_expires_at,
        )

    def _record(self, found: DelegationRow) -> DelegationRecord:
        row = found.delegation
        return DelegationRecord(view=self._view(found), user_id=row.user_id, token_jti=row.token_jti)

    def _view(self, found: DelegationRow) -> DelegationView:
        row = found.delegation
        return DelegationView(
            delegation_id=row.id,
            status=row.status,
            client_id=row.client_id,
            client_name=found.client_name,
            connection_id=row.connection_id,
            audience_id=row.audience_id,
            audience_name=self.audiences.name_of(row.audience_id),
            scopes=tuple(row.scopes),
            purpose=row.purpose,
            binding_message=row.binding_message,
            created_at=row.created_at,
            expires_at=row.expires_at,
            decided_at=row.decided_at,
            decided_by=row.device_id,
            token_expires_at=row.token_expires_at,
        )


# -- validation and small helpers ------------------------------------------------------------------------------


def _checked_scopes(audience: Audience, scopes: list[str]) -> tuple[str, ...]:
    """The requested scopes, each offered by the audience, duplicates dropped, order kept."""
    if not scopes:
        raise InvalidDelegationRequest(f"Ask for at least one scope of {audience.audience_id}.")
    for scope in scopes:
        if scope not in audience.scopes:
            offered = ", ".join(audience.scopes)
            raise ScopeNotAllowed(f"{audience.audience_id} does not offer the scope {scope!r} (it offers: {offered}).")
    return tuple(dict.fromkeys(scopes))


def _checked_purpose(purpose: str) -> str:
    """Shown to the person deciding: trimmed, 1 to 500 characters, no control characters but line breaks."""
    text = purpose.strip()
    if not 1 <= len(text) <= PURPOSE_MAX_LENGTH:
        raise InvalidDelegationRequest(f"purpose must be 1 to {PURPOSE_MAX_LENGTH} characters.")
    if any(unicodedata.category(char) == "Cc" and char != "\n" for char in text):
        raise InvalidDelegationRequest("purpose must not contain control characters.")
    return text


def _require_pending(row: StoredDelegation) -> None:
    if row.status != _PENDING:
        raise DelegationClosed(row.status)


def _token_live(row: StoredDelegation, now: datetime) -> bool:
    return (
        row.status == DelegationStatus.APPROVED
        and row.token_jti is not None
        and row.decided_at is not None
        and row.token_expires_at is not None
        and now < row.token_expires_at
    )


def _topics(row: StoredDelegation) -> tuple[str, str]:
    """What a change of `row` announces: `delegation:<id>` and `user:<id>#<id>`."""
    return topics.delegation(row.id), topics.user(row.user_id, changed=row.id)


def _whole(moment: datetime) -> datetime:
    """Whole seconds: these times appear in JWT claims and in the signed statement, which have no fractions."""
    return moment.replace(microsecond=0)


async def _uninterrupted(work: Awaitable[_T]) -> _T:
    """Await `work` so that no cancellation lands inside it: neither an anyio cancel scope's (the shield) nor a
    native `task.cancel()` (asyncio.shield; the device's stream cancels its feed task that way when it hangs up).
    The caller still sees its cancellation, once `work` has finished its short transaction; an interrupted one
    would interrupt the connection's rollback, which SQLAlchemy logs as an error."""
    with anyio.CancelScope(shield=True):
        result = await asyncio.shield(work)
    return result
