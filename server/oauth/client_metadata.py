"""Client metadata rules shared by every way a client comes to exist here: dynamic registration (RFC 7591),
Client ID Metadata Documents (draft-ietf-oauth-client-id-metadata-document-02) and the pre-registered clients
file (`VOUCHSIM_CLIENTS_FILE`).
"""

from __future__ import annotations

import unicodedata

# RFC 7591 §2 would default to authorization_code alone; this server's clients are MCP runtimes that keep
# sessions alive, so refresh tokens come by default. The registration response says what was registered.
DEFAULT_GRANT_TYPES = ["authorization_code", "refresh_token"]

# OpenID Connect Dynamic Client Registration 1.0 §2; MCP 2026-07-28 asks clients to send one (SEP-837). Stored
# and echoed; the OIDC redirect constraints that go with it are not enforced (this is not an OIDC provider).
APPLICATION_TYPES = ("web", "native")

# Characters that would let a self-asserted name rearrange or hide what the consent page shows around it.
_BIDI_CONTROLS = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def display_text_problem(name: str, value: object, max_length: int) -> str | None:
    """Why `value` cannot be shown to a person as the field `name` (a client name), or None when it can."""
    if not isinstance(value, str) or not value.strip():
        return f"{name} must be a non-empty string"
    if len(value) > max_length:
        return f"{name} must be at most {max_length} characters"
    if any(unicodedata.category(char) == "Cc" or char in _BIDI_CONTROLS for char in value):
        return f"{name} must not contain control or bidirectional formatting characters"
    return None
