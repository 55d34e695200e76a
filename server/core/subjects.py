"""Pairwise subjects: who the user is to one party, stable for that party, unlinkable across parties, and never the
internal user id (the idea of OpenID Connect Core §8.1, "Pairwise Identifier Algorithm"). Two parties, two
derivations, one home:

- `client_subject`: the user as one MCP client (an OAuth client) knows them: `identity_get`'s `subject`.
- `audience_subject`: the user as one audience (a service a delegation token is presented to) knows them: the
  delegation token's `sub`, so two audiences cannot correlate users.
"""

from __future__ import annotations

import functools

from vouchsim.server.core.crypto import b64url, keyed_hash


@functools.lru_cache(maxsize=4096)  # identity_get asks on every call; an HMAC costs more than the lookup
def client_subject(hmac_key: bytes, user_id: str, client_id: str) -> str:
    """The user towards one MCP client (hex)."""
    return keyed_hash(hmac_key, f"identity:{user_id}:{client_id}")


def audience_subject(hmac_key: bytes, user_id: str, audience_id: str) -> str:
    """The user towards one audience (base64url, as in the token's claims)."""
    return b64url(bytes.fromhex(keyed_hash(hmac_key, f"sub:{user_id}:{audience_id}")))
