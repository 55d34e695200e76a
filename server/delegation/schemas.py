"""The delegation object and the token handed to the agent (docs/delegations.md), HTTP-free msgspec values.

Field names are the wire's: the device API sends `DelegationView` as it is; the MCP tools rename it for their
own (camelCase) results.
"""

from __future__ import annotations

from datetime import datetime

import msgspec


class DelegationView(msgspec.Struct, frozen=True, kw_only=True):
    delegation_id: str
    status: str
    client_id: str
    client_name: str
    connection_id: str
    audience_id: str
    audience_name: str
    scopes: tuple[str, ...]
    purpose: str
    binding_message: str
    created_at: datetime
    expires_at: datetime
    decided_at: datetime | None
    decided_by: str | None
    token_expires_at: datetime | None


class DelegationRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A delegation as the server itself knows it: the view, plus what the view leaves out (whose it is, its
    token's id), so its token can be minted without reading it again. Never sent anywhere: a commit hands it to the
    calls waiting on this instance (`server.storage.events` payloads)."""

    view: DelegationView
    user_id: str
    token_jti: str | None


class IssuedToken(msgspec.Struct, frozen=True, kw_only=True):
    token: str
    expires_at: datetime
    token_type: str = "JWT"  # noqa: S105 - a type name, not a secret


class DelegationList(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /device/delegations`."""

    delegations: list[DelegationView]
