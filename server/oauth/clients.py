"""Which client a `client_id` names: one place for the three ways a client comes to exist here (MCP 2026-07-28
"Client Registration": pre-registered, Client ID Metadata Document, dynamic registration).

- a pre-registered client (`VOUCHSIM_CLIENTS_FILE`) is used in every registration mode, unless it was retired
  (it left the file: its `retired_at` is set);
- a dynamically registered client (`vsc_…`) is used in every mode: turning `dcr` off stops new registrations, not
  the clients already registered;
- an https URL is a Client ID Metadata Document when the mode includes `cimd`: its document is resolved (cache,
  else an SSRF-safe fetch) and stored as the client's row, refreshed in place; an unusable document raises the
  `cimd.errors.CimdError` that says why (all `invalid_client`). With `cimd` off, a URL is an unknown client;
- anything else is an unknown client (None).
The authorization, token, revocation and introspection endpoints all ask `ClientDirectory.find`, through
`OAuthStore.client`.
"""

from __future__ import annotations

from vouchsim.server.oauth.cimd.records import client_row, remember
from vouchsim.server.oauth.cimd.resolver import MetadataResolver
from vouchsim.server.oauth.cimd.urls import looks_like_url
from vouchsim.server.storage.models import OAuthClient
from vouchsim.server.storage.repositories.clients import CIMD, PREREGISTERED, ClientRepository

CIMD_MODE, DCR_MODE = "cimd", "dcr"


class ClientDirectory:
    """Process-wide (the resolver's cache lives as long as the process); each lookup uses the request's
    repository."""

    def __init__(self, modes: frozenset[str], resolver: MetadataResolver | None) -> None:
        self.modes = modes
        self.resolver = resolver if CIMD_MODE in modes else None

    @property
    def offers_cimd(self) -> bool:
        return self.resolver is not None

    @property
    def offers_registration(self) -> bool:
        return DCR_MODE in self.modes

    def forget_documents(self) -> None:
        """Drop every cached metadata document and the fetch counts (a testbed reset)."""
        if self.resolver is not None:
            self.resolver.forget_all()

    async def find(self, clients: ClientRepository, client_id: str) -> OAuthClient | None:
        """The client's row, current; None for an unknown (or retired) client. Raises `CimdError` when
        `client_id` is a metadata document URL whose document cannot be used."""
        row = await clients.get(client_id)
        if row is not None and row.kind != CIMD:
            if row.kind == PREREGISTERED and row.retired_at is not None:
                return None
            return row
        if not looks_like_url(client_id) or self.resolver is None:
            return None  # a CIMD row while CIMD is off is not a client either
        resolved = await self.resolver.resolve(client_id)
        if row is None or row.metadata_fetched_at != resolved.fetched_at:
            # A new fetch (or a row wiped by a testbed reset while the cache held the document): store it, so
            # codes, tokens and connections have a client to refer to.
            if not await remember(clients, resolved):
                return await clients.get(client_id)  # pre-registered in the meantime: that entry wins
            return client_row(resolved)
        return row
