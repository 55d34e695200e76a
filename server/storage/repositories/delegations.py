"""Delegations (see `server.delegation.states`): every state change is a compare-and-swap UPDATE.

`UPDATE … WHERE id = ? AND status IN (…)` (and, for a decision, `AND expires_at > now`) with a rowcount
check, so an approval racing a revocation or an expiry has exactly one winner. Statuses arrive as plain
strings: the state machine itself lives above storage, in `server.delegation`.

Read and written with Core statements on the table, built once, into plain `StoredDelegation` values: the ORM's
identity map, loading and unit of work cost a decision more than its statements did, and nothing here needs them
(the service keeps its copy up to date after a compare-and-swap it won).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple, cast

from sqlalchemy import BindParameter, Executable, Row, Select, Table, bindparam, case, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vouchsim.server.storage.events import notify_columns, notify_parameters
from vouchsim.server.storage.models import Delegation, Device, OAuthClient
from vouchsim.server.storage.repositories.devices import (
    NONCES,
    SIGNER_COLUMNS,
    DeviceSigner,
    RequestNonce,
    remember_nonce_statement,
)

_TABLE = cast(Table, Delegation.__table__)


@dataclass(slots=True)
class StoredDelegation:
    """A delegation's row as stored (the `delegations` table's columns, in its order)."""

    id: str
    user_id: str
    client_id: str
    connection_id: str
    audience_id: str
    scopes: list[str]
    purpose: str
    binding_message: str
    status: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None = None
    device_id: str | None = None
    decision_statement: str | None = None
    decision_nonce: str | None = None
    decision_signature: str | None = None
    token_jti: str | None = None
    token_expires_at: datetime | None = None
    revoked_at: datetime | None = None

    def update(self, changes: Mapping[str, Any]) -> None:
        """What a compare-and-swap that won wrote, so this copy says what the database says."""
        for name, value in changes.items():
            setattr(self, name, value)


_COLUMNS = tuple(field.name for field in fields(StoredDelegation))
if tuple(_TABLE.c.keys()) != _COLUMNS:  # rows are read by position
    raise RuntimeError("StoredDelegation must list the delegations table's columns, in their order")
_WIDTH = len(_COLUMNS)


class NonceReplayed(Exception):
    """`update_if(…, remember=…)` found the request's nonce remembered already: it changed nothing."""


class DelegationRow(NamedTuple):
    """A delegation with its client's display name (the client id when it registered none)."""

    delegation: StoredDelegation
    client_name: str


class DecisionEvidence(NamedTuple):
    """What a device's decision is checked against, read in one statement: the deciding device as its signature
    check reads it (`DeviceSigner`), the delegation with its client's name (None when there is no such delegation),
    and whether the device has signed a decision with this nonce before."""

    signer: DeviceSigner
    found: DelegationRow | None
    nonce_used: bool
    # Whether the signed request's own nonce is remembered already; None when it was not looked up (see
    # `for_decision`).
    request_nonce_seen: bool | None = None


# Tables, not mapped classes, throughout: a statement naming one mapped attribute takes the ORM's execution path.
_CLIENTS = cast(Table, OAuthClient.__table__)
_DEVICES = cast(Table, Device.__table__)
_CLIENT_NAME = func.coalesce(_CLIENTS.c.client_name, _CLIENTS.c.client_id)
_WITH_CLIENT = select(_TABLE, _CLIENT_NAME).join(_CLIENTS, _CLIENTS.c.client_id == _TABLE.c.client_id)


def _decision_statement(*, request_nonce: bool = False) -> Select[Any]:
    """`for_decision`'s statement, built once: its aliased self-join (the nonce check) costs far more to construct
    than to run, and the compiled form is cached anyway.

    Driven by the device (no row: no such device), the delegation joined to it when there is one: the signed
    request's check and the decision read what they need in one round trip instead of two."""
    earlier = _TABLE.alias("earlier")
    device_id: BindParameter[str] = bindparam("device_id")
    nonce_used = (
        select(earlier.c.id)
        .where(earlier.c.device_id == device_id, earlier.c.decision_nonce == bindparam("nonce"))
        .exists()
    )
    delegation = _TABLE.join(_CLIENTS, _CLIENTS.c.client_id == _TABLE.c.client_id)
    columns: list[Any] = [_TABLE, _CLIENT_NAME, *SIGNER_COLUMNS, nonce_used]
    if request_nonce:
        nonces = NONCES.c
        seen = select(nonces.nonce).where(nonces.device_id == device_id, nonces.nonce == bindparam("request_nonce"))
        columns.append(seen.exists())
    return (
        select(*columns)
        .select_from(_DEVICES.outerjoin(delegation, _TABLE.c.id == bindparam("delegation_id")))
        .where(_DEVICES.c.id == device_id)
    )


_FOR_DECISION = _decision_statement()
_FOR_DECISION_AND_NONCE = _decision_statement(request_nonce=True)
# `get`'s statement, built once too (every decision reads its delegation a few times: the waiting call, its token)
_GET = _WITH_CLIENT.where(_TABLE.c.id == bindparam("delegation_id"))
_INSERT = insert(_TABLE).values({name: bindparam(name, type_=_TABLE.c[name].type) for name in _COLUMNS})


def _found(row: Row[Any]) -> DelegationRow:
    return DelegationRow(StoredDelegation(*row[:_WIDTH]), row[_WIDTH])


@lru_cache(maxsize=64)
def _compare_and_swap(
    changed: tuple[str, ...], due: bool, live: bool, one_status: bool, notices: int, remember: bool = False
) -> Executable:
    """`update_if`'s UPDATE for these changed columns and guards, built once (building one per decision was a few per
    cent of its CPU); the values arrive as bound parameters. One expected status (every state change) is compared
    with `=`: expanding an `IN` parameter at each execution was a tenth of a decision's CPU (py-spy).

    With `notices` (PostgreSQL), the UPDATE is a CTE and the statement selects one `pg_notify` per notice from the row
    it changed: announced only when the swap won, in the same round trip. With `remember` (PostgreSQL), a signed
    request's nonce is inserted first, in a CTE too, and the UPDATE happens only if that insert did (a replay
    changes nothing); the statement then answers one row: (nonce inserted, row changed, the notices' results)."""
    columns = _TABLE.c
    status = (
        columns.status == bindparam("cas_status")
        if one_status
        else columns.status.in_(bindparam("cas_status_in", expanding=True))
    )
    conditions = [columns.id == bindparam("cas_id"), status]
    if due:
        conditions.append(columns.expires_at <= bindparam("cas_due_by", type_=columns.expires_at.type))
    if live:
        conditions.append(columns.expires_at > bindparam("cas_live_at", type_=columns.expires_at.type))
    values: dict[str, Any] = {name: bindparam(f"new_{name}", type_=columns[name].type) for name in changed}
    if remember:
        remembered = remember_nonce_statement("postgresql", "remember_").returning(NONCES.c.nonce).cte("remembered")
        fresh = select(remembered.c.nonce).exists()
        conditions.append(fresh)
    statement = update(_TABLE).where(*conditions).values(**values)
    if not (notices or remember):
        return statement
    moved = statement.returning(columns.id).cte("moved")
    if not remember:
        return select(*notify_columns(notices)).select_from(moved)
    won = select(moved.c.id).exists()
    return select(fresh, won, *(case((won, column)) for column in notify_columns(notices)))


class DelegationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    def _dialect(self) -> str:
        return self.session.get_bind().dialect.name

    async def add(self, row: StoredDelegation) -> None:
        await self.session.execute(_INSERT, {name: getattr(row, name) for name in _COLUMNS})

    async def get(self, delegation_id: str) -> DelegationRow | None:
        found = (await self.session.execute(_GET, {"delegation_id": delegation_id})).first()
        return _found(found) if found else None

    async def for_decision(
        self, delegation_id: str, *, device_id: str, nonce: str | None, request_nonce: str | None = None
    ) -> DecisionEvidence | None:
        """The deciding device, the delegation and the nonce check in one round trip (see `DecisionEvidence`); None
        when there is no such device. `nonce` None: not looked up (`nonce_used` is False).

        `request_nonce`, on PostgreSQL: also whether the signed request's nonce is remembered already, so that
        remembering it can wait for the decision's compare-and-swap and go in its statement (`update_if`'s
        `remember`). Elsewhere it is not looked up (`request_nonce_seen` None): remember it at once, as any request."""
        folds = request_nonce is not None and self._dialect() == "postgresql"
        parameters = {"delegation_id": delegation_id, "device_id": device_id, "nonce": nonce}
        if folds:
            parameters["request_nonce"] = request_nonce
        found = (await self.session.execute(_FOR_DECISION_AND_NONCE if folds else _FOR_DECISION, parameters)).first()
        if found is None:
            return None
        signer = DeviceSigner(*found[_WIDTH + 1 : _WIDTH + 6])
        delegation = _found(found) if found[0] is not None else None
        seen = bool(found[_WIDTH + 7]) if folds else None
        return DecisionEvidence(signer, delegation, nonce is not None and bool(found[_WIDTH + 6]), seen)

    async def get_many(self, delegation_ids: Collection[str]) -> list[DelegationRow]:
        """These delegations (those that exist), as the database has them now."""
        rows = await self.session.execute(_WITH_CLIENT.where(_TABLE.c.id.in_(list(delegation_ids))))
        return [_found(row) for row in rows]

    async def list_for_user(
        self, user_id: str, *, status_in: Collection[str] | None = None, status_not_in: Collection[str] = (), limit: int
    ) -> list[DelegationRow]:
        """The user's delegations, newest first, at most `limit`."""
        columns = _TABLE.c
        conditions = [columns.user_id == user_id]
        if status_in is not None:
            conditions.append(columns.status.in_(list(status_in)))
        if status_not_in:
            conditions.append(columns.status.not_in(list(status_not_in)))
        rows = await self.session.execute(
            _WITH_CLIENT.where(*conditions).order_by(columns.created_at.desc(), columns.id.desc()).limit(limit)
        )
        return [_found(row) for row in rows]

    async def due(self, status: str, now: datetime) -> list[StoredDelegation]:
        """Delegations in `status` (pending) whose `expires_at` has come, any user's, oldest first."""
        columns = _TABLE.c
        rows = await self.session.execute(
            select(_TABLE)
            .where(columns.status == status, columns.expires_at <= now)
            .order_by(columns.expires_at, columns.id)
        )
        return [StoredDelegation(*row) for row in rows]

    async def client_name(self, client_id: str) -> str | None:
        name: str | None = await self.session.scalar(select(_CLIENT_NAME).where(_CLIENTS.c.client_id == client_id))
        return name

    async def has_trusted_device(self, user_id: str) -> bool:
        """Whether any device of this user is still trusted (none: a lost phone was revoked)."""
        devices = _DEVICES.c
        found = await self.session.scalar(
            select(devices.id).where(devices.user_id == user_id, devices.revoked_at.is_(None)).limit(1)
        )
        return found is not None

    async def update_if(
        self,
        delegation_id: str,
        *,
        status_in: Collection[str],
        changes: Mapping[str, Any],
        due_by: datetime | None = None,
        live_at: datetime | None = None,
        notices: list[str] | None = None,
        remember: RequestNonce | None = None,
    ) -> bool:
        """Compare-and-swap: apply `changes` only while the row is in one of `status_in`.

        Optional guards: `expires_at` not after `due_by` (an expiry), or after `live_at` (a decision, which
        must not land once the delegation is due even if nobody has marked it expired yet). True when this
        call changed the row (the caller's copy is then its to bring up to date: `StoredDelegation.update`).
        `notices` (`EventBus.notices`, PostgreSQL only): NOTIFY them in the same statement if it changed the row.
        `remember` (PostgreSQL only, see `for_decision`): insert this request nonce in the same statement, and change
        nothing if it was there already: `NonceReplayed` then.
        """
        expected = list(status_in)
        statement = _compare_and_swap(
            tuple(changes),
            due_by is not None,
            live_at is not None,
            len(expected) == 1,
            len(notices or ()),
            remember is not None,
        )
        parameters = {
            "cas_id": delegation_id,
            "cas_status": expected[0] if expected else None,
            "cas_status_in": expected,
            "cas_due_by": due_by,
            "cas_live_at": live_at,
            **{f"new_{name}": value for name, value in changes.items()},
        }
        if notices:
            parameters.update(notify_parameters(notices))
        if remember is not None:
            parameters.update({f"remember_{name}": value for name, value in remember._asdict().items()})
            fresh, won, *_ = (await self.session.execute(statement, parameters)).one()
            if not fresh:
                raise NonceReplayed()
            return bool(won)
        if notices:
            return (await self.session.execute(statement, parameters)).first() is not None
        result = await self.session.execute(statement, parameters)
        return bool(result.rowcount)  # type: ignore[attr-defined]
