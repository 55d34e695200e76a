"""Wire types of the trusted-device API (docs/device-api.md), field names exactly as on the wire.

Requests are ours and closed. Responses tolerate fields added later: a newer server must not break an
older companion, and the server, not the device, is the one that rejects unknown fields.
"""

from __future__ import annotations

from datetime import datetime

import msgspec


class EnrolRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    public_key: str
    name: str


class ClaimRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    qr_payload: str


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    error: str
    error_description: str = ""
    # `delegation_closed` only: the delegation's status now. Loosely typed: a field the device merely
    # reports must not turn a readable error into an "unexpected response".
    status: object = None


class DeviceInfo(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /device/enrol` (201) and `GET /device/me` (200)."""

    device_id: str
    user_id: str
    name: str
    fingerprint: str
    issuer: str
    enrolled_at: datetime


class DeviceRevocation(msgspec.Struct, frozen=True, kw_only=True):
    """`DELETE /device/me`: this device, forgotten by the server."""

    device_id: str
    name: str
    fingerprint: str
    revoked_at: datetime
    connections_cut: list[str] = msgspec.field(default_factory=list)
    delegations_denied: list[str] = msgspec.field(default_factory=list)


class PairingContext(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /device/pairings/claim`: what to show the person before they agree."""

    pairing_id: str
    status: str
    client_id: str
    client_name: str
    redirect_host: str
    scopes: list[str]
    requested_at: datetime
    expires_at: datetime
    issuer: str
    # A client identified by a metadata document: its client_id host, verified by the server; None otherwise.
    verified_host: str | None = None
    # Set when every redirect URI of that client is on this computer (loopback): worth a warning.
    localhost_only: bool = False


class PairingApproval(msgspec.Struct, frozen=True, kw_only=True):
    pairing_id: str
    status: str
    pairing_code: str
    code_expires_at: datetime


class PairingDecline(msgspec.Struct, frozen=True, kw_only=True):
    pairing_id: str
    status: str


class Connection(msgspec.Struct, frozen=True, kw_only=True):
    connection_id: str
    client_id: str
    client_name: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None
    verified_host: str | None = None  # see PairingContext


class ConnectionList(msgspec.Struct, frozen=True, kw_only=True):
    connections: list[Connection]


# --- delegations (docs/delegations.md) ---------------------------------------------------------------


def parse_instant(text: str) -> datetime:
    """An RFC 3339 instant as the server spells it (`2026-11-25T15:05:00Z`); ValueError without a zone."""
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"{text!r} has no time zone")
    return moment


class Delegation(msgspec.Struct, frozen=True, kw_only=True):
    """A delegation as the server sent it (docs/delegations.md, "The delegation object").

    `expires_at` stays the text the server sent: it is one of the values the signed decision statement
    copies verbatim, and a datetime parsed and printed again may not spell it the same way (`Z` or
    `+00:00`, fractions of a second). `expires` gives it as a datetime; decoding checks it is one.
    """

    delegation_id: str
    status: str
    client_id: str
    client_name: str
    connection_id: str
    audience_id: str
    audience_name: str
    scopes: list[str]
    purpose: str
    binding_message: str
    created_at: datetime
    expires_at: str
    decided_at: datetime | None = None
    decided_by: str | None = None
    token_expires_at: datetime | None = None

    def __post_init__(self) -> None:
        parse_instant(self.expires_at)  # a ValueError here is a msgspec.ValidationError when decoding

    @property
    def expires(self) -> datetime:
        return parse_instant(self.expires_at)

    @property
    def is_pending(self) -> bool:
        return self.status == "pending"


class DelegationList(msgspec.Struct, frozen=True, kw_only=True):
    delegations: list[Delegation]


class DecisionRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /device/delegations/{id}/decision`: the decision and the signature over its statement."""

    decision: str
    nonce: str
    signature: str
