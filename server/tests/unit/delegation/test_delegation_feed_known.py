"""The feed's memory of what it last showed (`server.delegation.feed.Known`): the first pending expiry and the due
ones, from a heap that must agree with a plain scan of the views whatever happened to them since."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from vouchsim.server.delegation.feed import Known
from vouchsim.server.delegation.schemas import DelegationView

T0 = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def view(number: int, status: str = "pending", *, expires_in: int | None = None) -> DelegationView:
    return DelegationView(
        delegation_id=f"dlg_{number}",
        status=status,
        client_id="vsc_1",
        client_name="Agent",
        connection_id="conn_1",
        audience_id="aud_test_payments",
        audience_name="Payments",
        scopes=("payments.identity",),
        purpose="p",
        binding_message="b",
        created_at=T0,
        expires_at=T0 + timedelta(seconds=expires_in if expires_in is not None else 100 + number),
        decided_at=None,
        decided_by=None,
        token_expires_at=None,
    )


def scan(known: Known, now: datetime) -> tuple[datetime | None, set[str]]:
    pending = [v for v in known.views.values() if v.status == "pending"]
    first = min((v.expires_at for v in pending), default=None)
    return first, {v.delegation_id for v in pending if v.expires_at <= now}


def test_the_first_expiry_and_the_due_ones_follow_every_change() -> None:
    known = Known([view(1), view(2), view(3)])
    assert known.first_expiry() == T0 + timedelta(seconds=101)
    known.update([msgspec.structs.replace(view(1), status="approved")])  # decided: no longer expires
    assert known.first_expiry() == T0 + timedelta(seconds=102)
    known.update([view(4, expires_in=50), view(2)])  # a new one, sooner; one seen again (a duplicate entry)
    now = T0 + timedelta(seconds=102)
    assert (
        (known.first_expiry(), known.due(now)) == scan(known, now) == (T0 + timedelta(seconds=50), {"dlg_4", "dlg_2"})
    )
    # Still pending until read back as expired: due again at the next wake, then gone once it is.
    assert known.due(now) == {"dlg_4", "dlg_2"}
    known.update([msgspec.structs.replace(view(4, expires_in=50), status="expired")])
    assert known.due(now) == {"dlg_2"} == scan(known, now)[1]
    known.update([msgspec.structs.replace(view(n), status="denied") for n in (2, 3)])
    assert known.first_expiry() is None and known.due(T0 + timedelta(days=1)) == set()
