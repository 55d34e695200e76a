"""Injected faults: what `POST /testbed/faults` takes, what it lists, and which requests a fault matches.

`{"match": {...}, "action": {...}, "times": N}`:
- `match`, every key optional and all must hold: `kind` (a journal kind), `client_id`, `grant_type` (token
  requests), `mcp_method` (the JSON-RPC method on `/mcp`), `tool` (the tool of a `tools/call`).
- `action`, one of: `{"status": 400, "error": "invalid_grant", "error_description": "..."}` (an OAuth-shaped
  error; on `/mcp` a JSON-RPC error with that HTTP status); `{"status": 503, "retry_after": 5}`;
  `{"drop": true}` (the connection is closed with no response); `{"expire_token": true}` (the bearer token is
  treated as expired: `/mcp` answers 401 `invalid_token`). `{"delay_ms": 2000}` alone is slow, then handled
  normally; beside another action it delays that one (a slow failure, a late drop).
- `times` (default 1) is how often it fires; `null` means until deleted.

Faults are tried oldest first; the first that matches and still has a firing left answers the request.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from vouchsim.server.testbed.observe import KINDS, Kind, RequestFacts

MAX_DELAY_MS = 120_000
MAX_TIMES = 1_000_000
_Text = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
_DEFAULT_ERRORS = {
    401: "invalid_token",
    403: "insufficient_scope",
    429: "too_many_requests",
    503: "temporarily_unavailable",
}


class FaultMatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    kind: Kind | None = None
    client_id: _Text | None = None
    grant_type: _Text | None = None
    mcp_method: _Text | None = None
    tool: _Text | None = None

    def holds_for(self, facts: RequestFacts, client_id: str | None) -> bool:
        """Whether every given key holds (`client_id` resolved by the caller, only when this match names one)."""
        return (
            (self.kind is None or self.kind == facts.kind)
            and (self.grant_type is None or self.grant_type == facts.grant_type)
            and (self.mcp_method is None or self.mcp_method == facts.mcp_method)
            and (self.tool is None or self.tool == facts.tool)
            and (self.client_id is None or self.client_id == client_id)
        )


class FaultAction(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True, omit_defaults=True):
    status: Annotated[int, msgspec.Meta(ge=400, le=599)] | None = None
    error: Annotated[str, msgspec.Meta(pattern=r"^[\x20-\x21\x23-\x5b\x5d-\x7e]{1,100}$")] | None = None
    error_description: Annotated[str, msgspec.Meta(max_length=500)] | None = None
    retry_after: Annotated[int, msgspec.Meta(ge=0, le=86_400)] | None = None
    delay_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_DELAY_MS)] | None = None
    drop: bool | None = None
    expire_token: bool | None = None

    def __post_init__(self) -> None:
        chosen = [name for name in ("status", "drop", "expire_token") if getattr(self, name) not in (None, False)]
        if self.drop is False or self.expire_token is False:
            raise ValueError("drop and expire_token are only ever true; leave them out otherwise")
        if len(chosen) > 1:
            raise ValueError(f"an action is one of status, drop, expire_token (and an optional delay_ms), not {chosen}")
        if not chosen and self.delay_ms is None:
            raise ValueError("the action needs one of status, drop, expire_token or delay_ms")
        if self.status is None and (self.error, self.error_description, self.retry_after) != (None, None, None):
            raise ValueError("error, error_description and retry_after go with a status")

    @property
    def error_code(self) -> str:
        """The OAuth `error` of a status action: as given, or the usual one for that status."""
        if self.error is not None:
            return self.error
        status = self.status or 500
        return _DEFAULT_ERRORS.get(status, "server_error" if status >= 500 else "invalid_request")

    @property
    def description(self) -> str:
        return self.error_description or f"Injected by the Vouchsim testbed (HTTP {self.status})."


class FaultRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The body of `POST /testbed/faults`."""

    match: FaultMatch = FaultMatch()
    action: FaultAction
    times: Annotated[int, msgspec.Meta(ge=1, le=MAX_TIMES)] | None = 1

    def __post_init__(self) -> None:
        if self.action.expire_token and self.match.kind not in (None, "mcp"):
            raise ValueError('expire_token applies to requests carrying a bearer token: match kind "mcp" (or none)')
        for name in ("grant_type",):
            if getattr(self.match, name) is not None and self.match.kind not in (None, "token"):
                raise ValueError("grant_type matches token requests only (kind token, or no kind)")
        if (self.match.mcp_method or self.match.tool) and self.match.kind not in (None, "mcp"):
            raise ValueError("mcp_method and tool match /mcp requests only (kind mcp, or no kind)")


class Fault(msgspec.Struct, frozen=True, kw_only=True):
    """A fault as listed: `remaining` is how many firings are left (None: until deleted), `fired` how many
    happened."""

    id: str
    match: FaultMatch
    action: FaultAction
    times: int | None
    remaining: int | None
    fired: int
    created_at: datetime

    @property
    def live(self) -> bool:
        return self.remaining is None or self.remaining > 0

    def applies_to(self, facts: RequestFacts) -> bool:
        """Whether this fault can fire for `facts` at all (an expire_token fault only where a bearer was sent)."""
        return self.live and (not self.action.expire_token or facts.bearer is not None)


__all__ = ["KINDS", "Fault", "FaultAction", "FaultMatch", "FaultRequest"]
