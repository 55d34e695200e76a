"""The issuer: one string everywhere (metadata, `iss` on redirects, QR payloads, token claims), no trailing slash.

Configured (`VOUCHSIM_ISSUER`) it is used verbatim. Otherwise it is derived from the request: the Host header
as sent, and the scheme from `X-Forwarded-Proto` when a TLS proxy set it. `X-Forwarded-Host` is never trusted:
it would let any caller choose the issuer that metadata advertises.
"""

from __future__ import annotations

import re

_HOST = re.compile(r"^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+)(:\d{1,5})?$")


def derive_issuer(configured: str, *, scheme: str, host: str | None, forwarded_proto: str | None) -> str:
    if configured:
        return configured
    if forwarded_proto:
        # A proxy chain may append: "https, http" — the first hop is what the client used.
        first = forwarded_proto.split(",")[0].strip().lower()
        if first in ("http", "https"):
            scheme = first
    if not host or not _HOST.match(host):
        host = "localhost"
    return f"{scheme}://{host}"


def canonical_resource(value: str) -> str:
    """A resource URI as bound to codes and tokens and compared at `/mcp` (RFC 8707; MCP "Canonical Server URI"):
    scheme and host in lower case (RFC 3986 §6.2.2.1: they are case-insensitive), no trailing slash; the path is
    left as sent (it is case-sensitive)."""
    scheme, separator, rest = value.partition("://")
    if not separator:
        return value.rstrip("/")
    authority, slash, path = rest.partition("/")
    return f"{scheme.lower()}://{authority.lower()}{slash}{path}".rstrip("/")


def resource_url(issuer: str) -> str:
    """RFC 9728 / RFC 8707: the one protected resource, the MCP endpoint."""
    return f"{issuer}/mcp"


def is_secure(issuer: str) -> bool:
    return issuer.startswith("https://")
