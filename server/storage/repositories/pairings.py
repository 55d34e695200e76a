"""Pairing sessions (see `server.pairing.states`): every state change is a compare-and-swap UPDATE.

`UPDATE … WHERE id = ? AND status IN (…)` and a rowcount check, so two racing decisions cannot both win.
Statuses arrive as plain strings: the state machine itself lives above storage, in `server.pairing`.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from datetime import datetime
from functools import lru_cache
from typing import Any, NamedTuple, cast

from sqlalchemy import Executable, Table, bindparam, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from vouchsim.server.storage.models import AuthorizationRequest, Device, OAuthClient, PairingSession

_COLUMNS = cast(Table, PairingSession.__table__).c
# The statements of every step of a pairing, built once with their values bound at execution: building them cost
# more than running them (py-spy, the whole flow in process). Bound parameters take no column's name (SQLAlchemy
# keeps those for an UPDATE's SET clause).
_BUNDLE = (
    select(PairingSession, AuthorizationRequest, OAuthClient, Device)
    .join(AuthorizationRequest, AuthorizationRequest.id == PairingSession.authorization_request_id)
    .join(OAuthClient, OAuthClient.client_id == AuthorizationRequest.client_id)
    .outerjoin(Device, Device.id == PairingSession.device_id)
    # Always the database's current row, never a stale copy from this session's identity map.
    .execution_options(populate_existing=True)
)
_BUNDLE_BY_ID = _BUNDLE.where(PairingSession.id == bindparam("pairing_id"))
_BUNDLE_BY_SECRET_HASH = _BUNDLE.where(PairingSession.secret_hash == bindparam("pairing_secret_hash"))
_RESERVE_ATTEMPT = (
    update(PairingSession)
    .where(
        PairingSession.id == bindparam("cas_id"),
        PairingSession.status.in_(bindparam("cas_status_in", expanding=True)),
        PairingSession.failed_attempts < bindparam("cas_max_attempts"),
        or_(
            PairingSession.code_expires_at.is_(None),
            PairingSession.code_expires_at > bindparam("cas_now", type_=_COLUMNS.code_expires_at.type),
        ),
    )
    .values(failed_attempts=PairingSession.failed_attempts + 1)
    .returning(
        PairingSession.failed_attempts,
        PairingSession.status,
        PairingSession.code_hash,
        PairingSession.code_expires_at,
    )
    .execution_options(synchronize_session=False)
)


@lru_cache(maxsize=64)
def _compare_and_swap(changed: tuple[str, ...], device: bool, code: bool, due: bool) -> Executable:
    """`update_if`'s UPDATE for these changed columns and guards; the values arrive as bound parameters."""
    conditions = [
        PairingSession.id == bindparam("cas_id"),
        PairingSession.status.in_(bindparam("cas_status_in", expanding=True)),
    ]
    if device:
        conditions.append(PairingSession.device_id == bindparam("cas_device_id"))
    if code:
        conditions.append(PairingSession.code_hash == bindparam("cas_code_hash"))
    if due:
        conditions.append(PairingSession.expires_at <= bindparam("cas_due_by", type_=_COLUMNS.expires_at.type))
    values = {name: bindparam(f"new_{name}", type_=_COLUMNS[name].type) for name in changed}
    return update(PairingSession).where(*conditions).values(**values).execution_options(synchronize_session=False)


class PairingBundle(NamedTuple):
    """A pairing with what its service needs to answer about it, read in one query."""

    pairing: PairingSession
    request: AuthorizationRequest
    client: OAuthClient
    device: Device | None


class AttemptReservation(NamedTuple):
    """The pairing as it was when a code attempt was counted (read atomically with the count)."""

    failed_attempts: int
    status: str
    code_hash: str | None
    code_expires_at: datetime | None


class PairingRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(
        self,
        *,
        pairing_id: str,
        authorization_request_id: str,
        secret_hash: str,
        status: str,
        now: datetime,
        expires_at: datetime,
    ) -> PairingSession:
        row = PairingSession(
            id=pairing_id,
            authorization_request_id=authorization_request_id,
            secret_hash=secret_hash,
            status=status,
            failed_attempts=0,
            created_at=now,
            expires_at=expires_at,
        )
        self.session.add(row)
        await self.session.flush()
        return row

    async def bundle(self, pairing_id: str) -> PairingBundle | None:
        return await self._bundle(_BUNDLE_BY_ID, {"pairing_id": pairing_id})

    async def bundle_by_secret_hash(self, secret_hash: str) -> PairingBundle | None:
        return await self._bundle(_BUNDLE_BY_SECRET_HASH, {"pairing_secret_hash": secret_hash})

    async def _bundle(self, statement: Executable, params: dict[str, str]) -> PairingBundle | None:
        row = (await self.session.execute(statement, params)).first()
        return PairingBundle(*row) if row else None

    async def update_if(
        self,
        pairing_id: str,
        *,
        status_in: Collection[str],
        changes: Mapping[str, Any],
        device_id: str | None = None,
        code_hash: str | None = None,
        due_by: datetime | None = None,
    ) -> bool:
        """Compare-and-swap: apply `changes` only while the row is in one of `status_in`.

        Optional guards: still claimed by `device_id`, still holding `code_hash`, `expires_at` not after
        `due_by`. True when this call changed the row.
        """
        changed = tuple(sorted(changes))
        statement = _compare_and_swap(changed, device_id is not None, code_hash is not None, due_by is not None)
        params: dict[str, Any] = {f"new_{name}": changes[name] for name in changed}
        params.update(cas_id=pairing_id, cas_status_in=list(status_in))
        if device_id is not None:
            params["cas_device_id"] = device_id
        if code_hash is not None:
            params["cas_code_hash"] = code_hash
        if due_by is not None:
            params["cas_due_by"] = due_by
        result = await self.session.execute(statement, params)
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def reserve_attempt(
        self, pairing_id: str, *, status_in: Collection[str], max_attempts: int, now: datetime
    ) -> AttemptReservation | None:
        """Count one code attempt before checking it, so no more than `max_attempts` are ever checked.

        None when the pairing is not in `status_in`, has no attempts left, or holds a code that expired by `now`
        (nothing is compared then, so nothing is counted). The row's state is returned from the same UPDATE, so the
        code is checked against exactly what was current when counted.
        """
        params = {
            "cas_id": pairing_id,
            "cas_status_in": list(status_in),
            "cas_max_attempts": max_attempts,
            "cas_now": now,
        }
        row = (await self.session.execute(_RESERVE_ATTEMPT, params)).first()
        return AttemptReservation(*row) if row else None
