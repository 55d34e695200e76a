"""Redirect URIs: what may be registered (RFC 7591 §2, OAuth 2.1 §2.3.1) and how a request matches one.

Matching is exact string comparison, with one exception from RFC 8252 §7.3: for a loopback redirect URI the
port may differ, because native clients (Claude Code, the MCP SDKs, mcp-remote) listen on whatever port is free.
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

LOOPBACK_HOSTS = {"127.0.0.1", "[::1]", "localhost"}


def _split(uri: str) -> SplitResult | None:
    try:
        parts = urlsplit(uri)
        _ = parts.port  # raises on a malformed port
    except ValueError:
        return None
    return parts


def _netloc_host(parts: SplitResult) -> str:
    host = parts.netloc.rsplit("@", 1)[-1]
    if host.startswith("["):
        return host.split("]")[0] + "]"
    return host.split(":")[0].lower()


def is_loopback(uri: str) -> bool:
    parts = _split(uri)
    return bool(parts and parts.scheme == "http" and _netloc_host(parts) in LOOPBACK_HOSTS)


def registration_problem(uri: str) -> str | None:
    """Why `uri` cannot be registered, or None when it can."""
    parts = _split(uri)
    if parts is None or not parts.scheme or not parts.netloc:
        return f"redirect URI {uri!r} is not an absolute URI"
    if parts.fragment or "#" in uri:
        return f"redirect URI {uri!r} must not contain a fragment (RFC 6749 section 3.1.2)"
    if "@" in parts.netloc:
        return f"redirect URI {uri!r} must not contain user information"
    if parts.scheme == "https":
        return None
    if parts.scheme == "http" and _netloc_host(parts) in LOOPBACK_HOSTS:
        return None
    if parts.scheme == "http":
        return f"redirect URI {uri!r} must use https (plain http is allowed only for loopback hosts)"
    return f"redirect URI {uri!r} must use https, or http on a loopback host"


def matches(registered: list[str], requested: str) -> bool:
    if requested in registered:
        return True
    if not is_loopback(requested):
        return False
    asked = _split(requested)
    assert asked is not None
    for uri in registered:
        if not is_loopback(uri):
            continue
        known = _split(uri)
        assert known is not None
        if _netloc_host(known) == _netloc_host(asked) and known.path == asked.path and known.query == asked.query:
            return True
    return False
