"""The delegation state machine (docs/delegations.md, "Statuses").

```
             approve (device, signed)
  pending ─────────────────────────────▶ approved ──revoke (agent or device)──▶ revoked
     │ ├──deny (device, signed)──▶ denied
     │ ├──time passes (expires_at)──▶ expired
     │ └──cancel (agent: delegation_revoke)──▶ cancelled
```

`denied`, `expired`, `cancelled` and `revoked` are final. An approved delegation's token expiring changes
nothing here: the delegation stays `approved` and its token simply stops being issued or accepted.

Services change state only through `next_status` and a compare-and-swap update
(`UPDATE … WHERE status IN sources(event)`), so of two racing changes exactly one wins.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class DelegationStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    REVOKED = "revoked"


class DelegationEvent(enum.StrEnum):
    APPROVE = "approve"
    DENY = "deny"
    TIME = "time"
    CANCEL = "cancel"
    REVOKE = "revoke"


FINAL: frozenset[DelegationStatus] = frozenset(
    {DelegationStatus.DENIED, DelegationStatus.EXPIRED, DelegationStatus.CANCELLED, DelegationStatus.REVOKED}
)

TRANSITIONS: Mapping[tuple[DelegationStatus, DelegationEvent], DelegationStatus] = {
    (DelegationStatus.PENDING, DelegationEvent.APPROVE): DelegationStatus.APPROVED,
    (DelegationStatus.PENDING, DelegationEvent.DENY): DelegationStatus.DENIED,
    (DelegationStatus.PENDING, DelegationEvent.TIME): DelegationStatus.EXPIRED,
    (DelegationStatus.PENDING, DelegationEvent.CANCEL): DelegationStatus.CANCELLED,
    (DelegationStatus.APPROVED, DelegationEvent.REVOKE): DelegationStatus.REVOKED,
}


def next_status(current: DelegationStatus, event: DelegationEvent) -> DelegationStatus | None:
    """Where `event` takes a delegation in `current`; None when the machine has no such edge."""
    return TRANSITIONS.get((current, event))


def sources(event: DelegationEvent) -> frozenset[DelegationStatus]:
    """The states `event` may leave from: the `status IN (…)` of its compare-and-swap."""
    return frozenset(current for current, on in TRANSITIONS if on is event)
