"""Web origins and host names the server trusts (MCP basic/transports, "Security Warning": DNS rebinding).

One rule, used by the Origin check of `/mcp`, the CORS answers (server.edge.cors) and the host guard
(server.edge.hosts): loopback names are always ours; anything else must be the issuer's own or one the operator
listed.
"""

from __future__ import annotations

from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})


def is_loopback_name(hostname: str) -> bool:
    """`localhost`, `*.localhost` (RFC 6761 §6.3), `127.0.0.1` or `::1` (without brackets), lower-cased."""
    return hostname in LOOPBACK_HOSTS or hostname.endswith(".localhost")


def _origin_key(value: str) -> tuple[str, str, int] | None:
    try:
        parts = urlsplit(value.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in _DEFAULT_PORTS or not parts.hostname or parts.path not in ("", "/"):
        return None
    return parts.scheme, parts.hostname, port or _DEFAULT_PORTS[parts.scheme]


def origin_allowed(origin: str | None, issuer: str, allowed: tuple[str, ...]) -> bool:
    """No `Origin` (not a browser), our own, a loopback one, or one the operator allowed."""
    if origin is None:
        return True
    key = _origin_key(origin)
    if key is None:  # "null" (sandboxed frames, file:), or garbage
        return False
    _scheme, host, _port = key
    if is_loopback_name(host):
        return True
    return key == _origin_key(issuer) or any(key == _origin_key(other) for other in allowed)
