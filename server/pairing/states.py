"""The pairing state machine (docs/device-api.md; DESIGN.md "The flow, end to end").

```
             claim              approve                 code ok
  waiting ──────────▶ claimed ──────────▶ approved ───────────▶ completed
                         │                 │  ↺ approve again: a new code, the old one void
                         │ decline         │ decline
                         ▼                 │
                      declined ◀───────────┘

  waiting | claimed | approved ── time ───────────▶ expired
  waiting | claimed | approved ── Nth wrong code ──▶ burnt
```

N is `settings.pairing_max_attempts`; a code typed before approval (when none was issued) is wrong too.

`completed`, `declined`, `expired` and `burnt` are final. Services change state only through
`next_status` and a compare-and-swap update, so two racing decisions cannot both win.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping


class PairingStatus(enum.StrEnum):
    WAITING = "waiting"
    CLAIMED = "claimed"
    APPROVED = "approved"
    COMPLETED = "completed"
    DECLINED = "declined"
    EXPIRED = "expired"
    BURNT = "burnt"


class PairingEvent(enum.StrEnum):
    CLAIM = "claim"
    APPROVE = "approve"
    DECLINE = "decline"
    CODE_OK = "code_ok"
    TIME = "time"
    LAST_WRONG_CODE = "last_wrong_code"


OPEN: frozenset[PairingStatus] = frozenset({PairingStatus.WAITING, PairingStatus.CLAIMED, PairingStatus.APPROVED})
FINAL: frozenset[PairingStatus] = frozenset(PairingStatus) - OPEN

TRANSITIONS: Mapping[tuple[PairingStatus, PairingEvent], PairingStatus] = {
    (PairingStatus.WAITING, PairingEvent.CLAIM): PairingStatus.CLAIMED,
    (PairingStatus.CLAIMED, PairingEvent.APPROVE): PairingStatus.APPROVED,
    (PairingStatus.APPROVED, PairingEvent.APPROVE): PairingStatus.APPROVED,
    (PairingStatus.APPROVED, PairingEvent.CODE_OK): PairingStatus.COMPLETED,
    (PairingStatus.CLAIMED, PairingEvent.DECLINE): PairingStatus.DECLINED,
    (PairingStatus.APPROVED, PairingEvent.DECLINE): PairingStatus.DECLINED,
    **{(status, PairingEvent.TIME): PairingStatus.EXPIRED for status in OPEN},
    **{(status, PairingEvent.LAST_WRONG_CODE): PairingStatus.BURNT for status in OPEN},
}


def next_status(current: PairingStatus, event: PairingEvent) -> PairingStatus | None:
    """Where `event` takes a pairing in `current`; None when the machine has no such edge."""
    return TRANSITIONS.get((current, event))


def sources(event: PairingEvent) -> frozenset[PairingStatus]:
    """The states `event` may leave from: the `status IN (…)` of its compare-and-swap."""
    return frozenset(current for current, on in TRANSITIONS if on is event)
