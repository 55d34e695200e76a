"""Every event-bus topic (`server.storage.events`), built and read here only, so no two files can spell one apart.

delegation:<id>                  a delegation changed (its waiting MCP call wakes)
user:<id>[#<delegation id>]      a delegation of this user was created or changed (the device's feed)
revoked:token:<id>               an access token was revoked (caches of validated tokens drop it)
revoked:connection:<id>          a runtime connection (every token and session of it) was revoked
revoked:session:<id>             an MCP session ended
revoked:device:<id>              a trusted device was revoked (its open event stream closes)
mcp:cancel:<session id>:<json id>  a 2025 client cancelled a call that another instance may be running
*                                anything may have changed (a listener reconnected; the testbed moved the clock)
"""

from __future__ import annotations

from typing import Final, Literal

EVERYTHING: Final = "*"
DETAIL: Final = "#"
_REVOKED: Final = "revoked:"
_CANCEL: Final = "mcp:cancel:"

RevokedKind = Literal["token", "connection", "session"]


def delegation(delegation_id: str) -> str:
    return f"delegation:{delegation_id}"


def user(user_id: str, changed: str | None = None) -> str:
    """The user's topic; with `changed` (a delegation id), telling subscribers which one changed."""
    return f"user:{user_id}" if changed is None else f"user:{user_id}{DETAIL}{changed}"


def revoked_token(token_id: str) -> str:
    return f"{_REVOKED}token:{token_id}"


def revoked_connection(connection_id: str) -> str:
    return f"{_REVOKED}connection:{connection_id}"


def revoked_session(session_id: str) -> str:
    return f"{_REVOKED}session:{session_id}"


def revoked_device(device_id: str) -> str:
    """Not a cache matter (a device's key is read on every request): only its event streams follow it."""
    return f"{_REVOKED}device:{device_id}"


def revoked(topic: str) -> tuple[RevokedKind, str] | None:
    """(kind, id) of a `revoked:…` topic; None for any other."""
    if not topic.startswith(_REVOKED):
        return None
    kind, _, ident = topic.removeprefix(_REVOKED).partition(":")
    if kind not in ("token", "connection", "session") or not ident:
        return None
    return kind, ident  # type: ignore[return-value]


def mcp_cancel(session_id: str, encoded_request_id: str) -> str:
    return f"{_CANCEL}{session_id}:{encoded_request_id}"


def mcp_cancelled(topic: str) -> tuple[str, str] | None:
    """(session id, JSON-encoded request id) of an `mcp:cancel:…` topic; None for any other."""
    if not topic.startswith(_CANCEL):
        return None
    session_id, _, encoded = topic.removeprefix(_CANCEL).partition(":")
    return session_id, encoded
