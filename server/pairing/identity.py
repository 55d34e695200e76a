"""What the person is shown about who is asking, on the authorization pages and on the trusted device alike.

A client described by a Client ID Metadata Document has one verified fact: the host of its `client_id` URL, whose
document this server fetched over TLS (draft-ietf-oauth-client-id-metadata-document-02 §8.5: SHOULD display the
hostname; the `client_name` is self-asserted). When every redirect URI it may use is on loopback, any program on
the person's computer could receive the code, so the person is warned (MCP 2026-07-28 security considerations,
"Localhost Redirect URI Risks"). Registered and pre-registered clients have no verified host and no warning: their
identity is not verified at all, and nearly every one of them redirects to loopback.

Loopback means what `server.oauth.redirects` allows plain http for (127.0.0.1 and the rest of 127/8, ::1,
`localhost`); this layer sits below `server.oauth`, so it says it again here.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from urllib.parse import urlsplit

from vouchsim.server.storage.models import OAuthClient

CIMD_KIND = "cimd"


@dataclass(frozen=True)
class ClientIdentity:
    verified_host: str | None
    localhost_only: bool


def _loopback(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
        host = parts.hostname or ""
    except ValueError:
        return False
    if parts.scheme != "http":
        return False
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def client_identity(client: OAuthClient) -> ClientIdentity:
    if client.kind != CIMD_KIND:
        return ClientIdentity(None, False)
    host = urlsplit(client.client_id).hostname or client.client_id
    return ClientIdentity(host, bool(client.redirect_uris) and all(_loopback(uri) for uri in client.redirect_uris))
