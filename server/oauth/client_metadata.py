"""Client metadata rules shared by every way a client comes to exist here: dynamic registration (RFC 7591),
Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document-02) and the pre-registered clients
file (`VOUCHSIM_CLIENTS_FILE`).
"""

from __future__ import annotations

from vouchsim.server.core.text import display_text_problem

# RFC 7591 §2 would default to authorization_code alone; this server's clients are MCP runtimes that keep
# sessions alive, so refresh tokens come by default. The registration response says what was registered.
DEFAULT_GRANT_TYPES = ["authorization_code", "refresh_token"]

# OpenID Connect Dynamic Client Registration 1.0 §2; MCP 2026-07-28 asks clients to send one (SEP-837). Stored
# and echoed; the OIDC redirect constraints that go with it are not enforced (this is not an OIDC provider).
APPLICATION_TYPES = ("web", "native")

# One rule for names people read, shared with the device API (server.core.text); re-exported for the callers here.
__all__ = ["APPLICATION_TYPES", "DEFAULT_GRANT_TYPES", "display_text_problem"]
