"""Delegations (see `server.delegation.states`): every state change is a compare-and-swap UPDATE.

`UPDATE … WHERE id = ? AND status IN (…)` (and, for a decision, `AND expires_at > now`) with a rowcount
check, so an approval racing a revocation or an expiry has exactly one winner. Statuses arrive as plain
strings: the state machine itself lives above storage, in `server.delegation`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple, cast

from sqlalchemy import BindParameter, Executable, Select, Table, bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key

from vouchsim.server.storage.models import Delegation, Device, OAuthClient


class DelegationRow(NamedTuple):
    """A delegation with its client's display name (the client id when it registered none)."""

    delegation: Delegation
    client_name: str


class DecisionEvidence(NamedTuple):
    """What a device's decision is checked against, read in one statement: the delegation (with its client's
    name), the deciding device's key (None unless it is this user's and still trusted), and whether the device
    has signed a decision with this nonce before."""

    found: DelegationRow
    device_key: str | None
    nonce_used: bool


_CLIENT_NAME = func.coalesce(OAuthClient.client_name, OAuthClient.client_id)


def _decision_statement() -> Select[Any]:
    """`for_decision`'s statement, built once: its aliased self-join (the nonce check) costs far more to construct
    than to run (SQLAlchemy adapts every column of a fresh alias anew), and the compiled form is cached anyway."""
    earlier = aliased(Delegation)
    device_id: BindParameter[str] = bindparam("device_id")
    device_key = (
        select(Device.public_key)
        .where(Device.id == device_id, Device.user_id == bindparam("user_id"), Device.revoked_at.is_(None))
        .scalar_subquery()
    )
    nonce_used = (
        select(earlier.id).where(earlier.device_id == device_id, earlier.decision_nonce == bindparam("nonce")).exists()
    )
    return (
        select(Delegation, _CLIENT_NAME, device_key, nonce_used)
        .join(OAuthClient, OAuthClient.client_id == Delegation.client_id)
        .where(Delegation.id == bindparam("delegation_id"))
        .execution_options(populate_existing=True)
    )


_FOR_DECISION = _decision_statement()
# State changes are Core UPDATEs of the table: the ORM's bulk-update path (synchronize_session and all) cost more
# than the statement itself, and `update_if` brings the loaded row up to date on its own.
_TABLE = cast(Table, Delegation.__table__)
# `get`'s statement, built once too (every decision reads its delegation a few times: the waiting call, its token)
_GET = (
    select(Delegation, _CLIENT_NAME)
    .join(OAuthClient, OAuthClient.client_id == Delegation.client_id)
    .where(Delegation.id == bindparam("delegation_id"))
    # Always the database's current row, never a stale copy from this session's identity map.
    .execution_options(populate_existing=True)
)


@lru_cache(maxsize=64)
def _compare_and_swap(changed: tuple[str, ...], due: bool, live: bool) -> Executable:
    """`update_if`'s UPDATE for these changed columns and guards, built once (building one per decision was a few per
    cent of its CPU); the values arrive as bound parameters."""
    columns = _TABLE.c
    conditions = [columns.id == bindparam("cas_id"), columns.status.in_(bindparam("cas_status_in", expanding=True))]
    if due:
        conditions.append(columns.expires_at <= bindparam("cas_due_by", type_=columns.expires_at.type))
    if live:
        conditions.append(columns.expires_at > bindparam("cas_live_at", type_=columns.expires_at.type))
    values: dict[str, Any] = {name: bindparam(f"new_{name}", type_=columns[name].type) for name in changed}
    return update(_TABLE).where(*conditions).values(**values)


class DelegationRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, row: Delegation) -> None:
        self.session.add(row)
        await self.session.flush()

    async def get(self, delegation_id: str) -> DelegationRow | None:
        found = (await self.session.execute(_GET, {"delegation_id": delegation_id})).first()
        return DelegationRow(found[0], found[1]) if found else None

    async def for_decision(
        self, delegation_id: str, *, device_id: str, user_id: str, nonce: str
    ) -> DecisionEvidence | None:
        """The delegation and the evidence a decision on it needs, in one round trip (see `DecisionEvidence`)."""
        parameters = {"delegation_id": delegation_id, "device_id": device_id, "user_id": user_id, "nonce": nonce}
        found = (await self.session.execute(_FOR_DECISION, parameters)).first()
        if found is None:
            return None
        return DecisionEvidence(DelegationRow(found[0], found[1]), found[2], bool(found[3]))

    async def get_many(self, delegation_ids: Collection[str]) -> list[DelegationRow]:
        """These delegations (those that exist), as the database has them now."""
        rows = await self.session.execute(
            select(Delegation, _CLIENT_NAME)
            .join(OAuthClient, OAuthClient.client_id == Delegation.client_id)
            .where(Delegation.id.in_(list(delegation_ids)))
            .execution_options(populate_existing=True)
        )
        return [DelegationRow(delegation, name) for delegation, name in rows]

    async def list_for_user(
        self, user_id: str, *, status_in: Collection[str] | None = None, status_not_in: Collection[str] = (), limit: int
    ) -> list[DelegationRow]:
        """The user's delegations, newest first, at most `limit`."""
        conditions = [Delegation.user_id == user_id]
        if status_in is not None:
            conditions.append(Delegation.status.in_(list(status_in)))
        if status_not_in:
            conditions.append(Delegation.status.not_in(list(status_not_in)))
        rows = await self.session.execute(
            select(Delegation, _CLIENT_NAME)
            .join(OAuthClient, OAuthClient.client_id == Delegation.client_id)
            .where(*conditions)
            .order_by(Delegation.created_at.desc(), Delegation.id.desc())
            .limit(limit)
            .execution_options(populate_existing=True)
        )
        return [DelegationRow(delegation, name) for delegation, name in rows]

    async def due(self, status: str, now: datetime) -> list[Delegation]:
        """Delegations in `status` (pending) whose `expires_at` has come, any user's, oldest first."""
        rows = await self.session.scalars(
            select(Delegation)
            .where(Delegation.status == status, Delegation.expires_at <= now)
            .order_by(Delegation.expires_at, Delegation.id)
            .execution_options(populate_existing=True)
        )
        return list(rows)

    async def client_name(self, client_id: str) -> str | None:
        return await self.session.scalar(select(_CLIENT_NAME).where(OAuthClient.client_id == client_id))

    async def has_trusted_device(self, user_id: str) -> bool:
        """Whether any device of this user is still trusted (none: a lost phone was revoked)."""
        found = await self.session.scalar(
            select(Device.id).where(Device.user_id == user_id, Device.revoked_at.is_(None)).limit(1)
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
    ) -> bool:
        """Compare-and-swap: apply `changes` only while the row is in one of `status_in`.

        Optional guards: `expires_at` not after `due_by` (an expiry), or after `live_at` (a decision, which
        must not land once the delegation is due even if nobody has marked it expired yet). True when this
        call changed the row.
        """
        statement = _compare_and_swap(tuple(changes), due_by is not None, live_at is not None)
        parameters = {
            "cas_id": delegation_id,
            "cas_status_in": list(status_in),
            "cas_due_by": due_by,
            "cas_live_at": live_at,
            **{f"new_{name}": value for name, value in changes.items()},
        }
        result = await self.session.execute(statement, parameters)
        if not result.rowcount:  # type: ignore[attr-defined]
            return False
        # The row this session loaded, if any, now says what the database says, without being marked changed
        # (so without a second UPDATE at commit) and without reading it again.
        loaded = self.session.sync_session.identity_map.get(identity_key(Delegation, delegation_id))
        if loaded is not None:
            for name, value in changes.items():
                set_committed_value(loaded, name, value)
        return True
