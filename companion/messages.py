"""Messages that travel up from screens and widgets to the app, which alone talks to the server.

Attributes go down (the app sets what screens show), messages come up (screens say what the person did),
and every name is in the past tense: it reports something that happened, not an order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from textual.message import Message

from vouchsim.companion.camera import ScanSource
from vouchsim.companion.core.decisions import Decision
from vouchsim.companion.core.schemas import Connection, Delegation, PairingApproval

View = Literal["inbox", "history", "connections", "scan", "timeline"]


@dataclass
class EnrolmentSubmitted(Message):
    """The enrol form was filled in and checked: enrol with this server under this name, then set the PIN."""

    server_url: str
    name: str
    pin: str


@dataclass
class PinChosen(Message):
    """A device enrolled without the TUI (headless CLI) chose its local PIN."""

    pin: str


@dataclass
class EnrolmentFinished(Message):
    """The person saw the device's fingerprint and went on."""


@dataclass
class ScanSubmitted(Message):
    """The camera has a picture: read its QR and claim the pairing."""

    source: ScanSource
    from_watch: bool = False


@dataclass
class DecisionChosen(Message):
    """Approve or deny was pressed on a pending delegation (nothing is signed yet)."""

    delegation: Delegation
    decision: Decision


@dataclass
class DelegationLapsed(Message):
    """A pending delegation's countdown reached zero on this device's clock."""

    delegation: Delegation


@dataclass
class RevokeChosen(Message):
    """Revoke was pressed on an approved delegation in the history."""

    delegation: Delegation


@dataclass
class UnpairChosen(Message):
    """Unpair was pressed on a connection."""

    connection: Connection


@dataclass
class ViewShown(Message):
    """A tab of the home screen came into view (its list may be stale)."""

    view: View


@dataclass
class PairingCodeLapsed(Message):
    """The docked pairing code's countdown reached zero on this device's clock."""

    approval: PairingApproval
