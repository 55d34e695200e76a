"""Wire types of the trusted-device API (docs/device-api.md), field names exactly as on the wire.

Request bodies are closed (`forbid_unknown_fields`): the device API rejects what it does not know.
The pairing and delegation responses are their services' own values (`server.pairing.service`,
`server.delegation.schemas`), which spell the wire.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

MAX_NAME_LENGTH = 64
MAX_QR_PAYLOAD = 2048


class EnrolRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    public_key: Annotated[str, msgspec.Meta(max_length=64)]
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME_LENGTH)]


class ClaimRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    qr_payload: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_QR_PAYLOAD)]


class EmptyRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of approve and decline: none, or `{}`."""


class DecisionRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /device/delegations/{id}/decision`; the service checks the values (400 `invalid_decision`)."""

    decision: Annotated[str, msgspec.Meta(max_length=32)]
    nonce: Annotated[str, msgspec.Meta(max_length=256)]
    signature: Annotated[str, msgspec.Meta(max_length=256)]


class ErrorBody(msgspec.Struct, frozen=True, kw_only=True):
    error: str
    error_description: str
    # `delegation_closed` only: the delegation's status now (docs/delegations.md).
    status: str | msgspec.UnsetType = msgspec.UNSET


class DeviceInfo(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /device/enrol` (201) and `GET /device/me` (200)."""

    device_id: str
    user_id: str
    name: str
    fingerprint: str
    issuer: str
    enrolled_at: datetime


class DeviceRevocation(msgspec.Struct, frozen=True, kw_only=True):
    """`DELETE /device/me` (the device forgets itself) and `vouchsim devices revoke` (the operator)."""

    device_id: str
    name: str
    fingerprint: str
    revoked_at: datetime
    # The connections it paired that this revocation cut (empty unless asked to cut them).
    connections_cut: list[str]
    # Pending delegations denied because their user has no trusted device left to decide them.
    delegations_denied: list[str]


class DeviceSummary(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the operator's `vouchsim devices list`."""

    device_id: str
    name: str
    fingerprint: str
    enrolled_at: datetime
    last_seen_at: datetime | None
    revoked_at: datetime | None
    live_connections: int


class ConnectionView(msgspec.Struct, frozen=True, kw_only=True):
    connection_id: str
    client_id: str
    client_name: str
    scopes: list[str]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None
    # The client_id host of a client described by a metadata document (verified by this server); None otherwise.
    verified_host: str | None = None


class ConnectionList(msgspec.Struct, frozen=True, kw_only=True):
    connections: list[ConnectionView]
