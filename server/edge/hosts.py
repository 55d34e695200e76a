"""The host guard: with no configured issuer, a server on loopback answers only for loopback host names.

The threat is DNS rebinding. With `VOUCHSIM_ISSUER` unset the issuer is derived from the `Host` header
(server.core.issuer), so a page at `http://evil.example:8741` whose name an attacker re-points at 127.0.0.1 sends
`Host: evil.example:8741` and `Origin: http://evil.example:8741`: the origin matches the derived issuer, passes the
Origin check of `/mcp`, and the metadata names `evil.example`. A loopback server cannot be reached under another
name legitimately, so any other `Host` gets 421 Misdirected Request (RFC 9110 §15.5.20) with a message naming the
settings that widen it: `VOUCHSIM_ALLOWED_HOSTS` (more names) or `VOUCHSIM_ISSUER` (a fixed issuer, which no
`Host` can change).

The guard is on when the issuer is unset and the server listens on loopback (`VOUCHSIM_HOST` 127.0.0.0/8,
`localhost` or `::1`), and whenever `VOUCHSIM_ALLOWED_HOSTS` names hosts with no issuer set; `*` turns it off.
"""

from __future__ import annotations

import functools

from vouchsim.server.core.origins import is_loopback_name
from vouchsim.server.settings import Settings


def listens_on_loopback(host: str) -> bool:
    return host in ("localhost", "::1", "[::1]") or host.startswith("127.")


def guard_is_on(settings: Settings) -> bool:
    allowed = settings.allowed_host_list
    if settings.issuer or "*" in allowed:
        return False
    return listens_on_loopback(settings.host) or bool(allowed)


def split_host(value: str) -> tuple[str, str] | None:
    """(host name, port or "") of a `Host` header, lower-cased, the brackets of an IPv6 address removed; None when
    it is not `host[:port]`."""
    value = value.strip().lower()
    if value.startswith("["):
        name, bracket, rest = value[1:].partition("]")
        if not bracket or (rest and not rest.startswith(":")):
            return None
        port = rest[1:]
    else:
        name, _, port = value.partition(":")
    if not name or (port and not port.isdigit()) or any(c in name for c in "/@\\ "):
        return None
    return name, port


@functools.lru_cache(maxsize=256)  # a client sends the same Host on every request; a spray of names only evicts
def host_allowed(value: str | None, allowed: tuple[str, ...]) -> bool:
    """A loopback name on any port, or an entry of `allowed` (`host`: any port; `host:port`: that port)."""
    if value is None:  # HTTP/1.0 without Host: the issuer falls back to localhost
        return True
    parts = split_host(value)
    if parts is None:
        return False
    name, port = parts
    if is_loopback_name(name):
        return True
    for entry in allowed:
        entry_parts = split_host(entry)
        if entry_parts is not None and entry_parts[0] == name and entry_parts[1] in ("", port):
            return True
    return False


def host_refusal(host: str | None) -> str:
    """What the 421 says: which names are answered, and the settings that widen them."""
    shown = (host or "")[:100]
    return (
        f"This server answers only for loopback host names (localhost, *.localhost, 127.0.0.1, [::1]), "
        f"not {shown!r}: set VOUCHSIM_ISSUER to its public URL, or list the name in VOUCHSIM_ALLOWED_HOSTS."
    )
