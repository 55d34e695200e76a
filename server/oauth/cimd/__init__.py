"""OAuth Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document-02; MCP 2026-07-28
"Client ID Metadata Documents"): a client whose `client_id` is an https URL, whose metadata this server fetches.

- `urls`: which client_ids are URLs and which of those may be fetched (draft §3);
- `addresses`: the special-use addresses never connected to (draft §8.6, RFC 6890);
- `fetch`: the SSRF-safe GET (draft §5, §8.6, §8.7);
- `document`: what the document must say (draft §4, §4.1; MCP "For Authorization Servers");
- `cache`: how long a document is reused, how often a host is fetched (draft §5.2, §8.6);
- `resolver`: the three together, `MetadataResolver.resolve(client_id)`;
- `errors`: one class per failure, each `invalid_client`.
No module here knows HTTP frameworks or SQL; the choices and the draft section each answers are in docs/cimd.md.
"""

from __future__ import annotations

from vouchsim.server.core.clock import Clock
from vouchsim.server.oauth.cimd.fetch import DocumentFetcher, tls_context
from vouchsim.server.oauth.cimd.resolver import MetadataResolver
from vouchsim.server.settings import Settings


def metadata_resolver(settings: Settings, clock: Clock) -> MetadataResolver:
    """The resolver `settings` describe (allowed hosts, extra CA). Raises `fetch.CaFileError` for a bad CA file."""
    # With a CA file, its context now, so a bad file fails the start; the public CAs only on the first fetch.
    context = tls_context(settings.cimd_ca_file) if settings.cimd_ca_file else None
    fetcher = DocumentFetcher(ssl_context=context, allow_hosts=settings.cimd_allow_host_list)
    return MetadataResolver(fetcher, clock)
