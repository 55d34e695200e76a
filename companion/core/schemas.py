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


class DeviceInfo(msgspec.Struct, frozen=True, kw_only=True):
    """`POST /device/enrol` (201) and `GET /device/me` (200)."""

    device_id: str
    user_id: str
    name: str
    fingerprint: str
    issuer: str
    enrolled_at: datetime


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


class ConnectionList(msgspec.Struct, frozen=True, kw_only=True):
    connections: list[Connection]
