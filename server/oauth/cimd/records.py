"""A CIMD client's row in `oauth_clients`: the last validated copy of its document, refreshed in place.

Codes, tokens, connections, delegations and MCP sessions refer to `oauth_clients.client_id`, so a CIMD client has
a row like any other (kind `cimd`, no secret, method `none`). The row is never the authority on what the client
may do: the document is, fetched again when its cache lifetime ends (`MetadataResolver`).
"""

from __future__ import annotations

from vouchsim.server.oauth.cimd.document import ResolvedMetadata
from vouchsim.server.storage.models import OAuthClient
from vouchsim.server.storage.repositories.clients import CIMD, ClientRepository


def client_row(resolved: ResolvedMetadata) -> OAuthClient:
    metadata = resolved.metadata
    return OAuthClient(
        client_id=metadata.client_id,
        client_secret_hash=None,
        client_name=metadata.client_name,
        redirect_uris=list(metadata.redirect_uris),
        grant_types=list(metadata.grant_types),
        response_types=list(metadata.response_types),
        token_endpoint_auth_method=metadata.token_endpoint_auth_method,
        scope=metadata.scope,
        provider_id=None,
        client_metadata=dict(metadata.document),  # as published; the columns hold what this server made of it
        client_id_issued_at=int(resolved.fetched_at.timestamp()),
        created_at=resolved.fetched_at,
        kind=CIMD,
        metadata_fetched_at=resolved.fetched_at,
        metadata_expires_at=resolved.expires_at,
        retired_at=None,
    )


async def remember(clients: ClientRepository, resolved: ResolvedMetadata) -> bool:
    """Stores (or refreshes) the client's row; False when the id is a pre-registered client's, which wins."""
    return await clients.save_described(client_row(resolved), replaces=(CIMD,))
