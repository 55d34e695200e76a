"""The scopes this server grants (RFC 6749 §3.3).

A scope this server does not know is dropped wherever a client names one (authorization request, registration,
metadata document), never refused: RFC 6749 §3.3 lets the server ignore requested scope, and real clients send
scopes of their own (claude.ai's `claudeai`). What was granted is what the token response's `scope` says.
"""

from __future__ import annotations

IDENTITY = "identity"
DELEGATION = "delegation"
OFFLINE_ACCESS = "offline_access"

# What the MCP resource advertises (RFC 9728) and grants when a request names no scope.
RESOURCE_SCOPES = (IDENTITY, DELEGATION)
DEFAULT_SCOPE = " ".join(RESOURCE_SCOPES)
# offline_access is accepted (some clients always ask for it); refresh tokens follow the client's grant_types.
SUPPORTED_SCOPES = (*RESOURCE_SCOPES, OFFLINE_ACCESS)

DESCRIPTIONS = {
    IDENTITY: "Know who you are (a pairwise identifier for this application)",
    DELEGATION: "Ask your trusted device to approve delegations to services",
    OFFLINE_ACCESS: "Stay connected when you are away (refresh tokens)",
}


def split(scope: str | None) -> list[str]:
    """Space-separated scope string to a de-duplicated list, order kept."""
    return list(dict.fromkeys((scope or "").split()))


def join(scopes: list[str] | tuple[str, ...]) -> str:
    return " ".join(dict.fromkeys(scopes))


def known(scope: str | None) -> list[str]:
    """The scopes of `scope` this server supports, de-duplicated, order kept; the others dropped."""
    return [name for name in split(scope) if name in SUPPORTED_SCOPES]


def challenge_scope(granted: list[str] | tuple[str, ...], needed: str) -> str:
    """The `scope` of a 403 `insufficient_scope` challenge (MCP 2026-07-28 "Scope Challenge Handling", SEP-2350):
    the resource scopes already granted plus the one needed, so a client that replaces its scope instead of adding
    to it keeps what it had. Never `offline_access` or any other non-resource scope (SEP-2207: SHOULD NOT)."""
    return join([s for s in granted if s in RESOURCE_SCOPES] + [needed])
