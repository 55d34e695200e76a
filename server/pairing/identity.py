"""What the person is shown about who is asking, on the authorization pages and on the trusted device alike.

A client described by a Client ID Metadata Document has one verified fact: the host of its `client_id` URL, whose
document this server fetched over TLS (draft-ietf-oauth-client-id-metadata-document-02 §8.5: SHOULD display the
hostname; the `client_name` is self-asserted). When every redirect URI it may use is on loopback, any program on
the person's computer could receive the code, so the person is warned (MCP 2026-07-28 security considerations,
"Localhost Redirect URI Risks"). Registered and pre-registered clients have no verified host and no warning: their
identity is not verified at all, and nearly every one of them redirects to loopback.

Loopback means what redirect URIs allow plain http for (`server.core.browser_urls.is_loopback_http`: `127.0.0.1`,
`[::1]`, `localhost`), read by the one parser that judges redirect URIs.
"""

from __future__ import annotations

from dataclasses import dataclass

from vouchsim.server.core import browser_urls
from vouchsim.server.storage.models import OAuthClient

CIMD_KIND = "cimd"


@dataclass(frozen=True)
class ClientIdentity:
    verified_host: str | None
    localhost_only: bool


def _loopback(uri: str) -> bool:
    try:
        return browser_urls.is_loopback_http(browser_urls.parse(uri))
    except browser_urls.UnsafeUrl:
        return False


def client_identity(client: OAuthClient) -> ClientIdentity:
    if client.kind != CIMD_KIND:
        return ClientIdentity(None, False)
    host = browser_urls.display_host(client.client_id)
    return ClientIdentity(host, bool(client.redirect_uris) and all(_loopback(uri) for uri in client.redirect_uris))
