"""Pre-registered clients (`VOUCHSIM_CLIENTS_FILE`): the first path of MCP 2026-07-28's registration priority
order ("use pre-registered client information … if the client has it available"), before CIMD and DCR.

Read once at start-up from a JSON file whose format docs/client-registration.md describes (and
`fixtures/clients.example.json` shows); a file that cannot be read or does not match stops the server with a
`ClientsFileError` naming the file and the problem. `seed` then writes the clients into `oauth_clients`
(kind `preregistered`), refreshed in place at each start; one that left the file is marked retired.

A pre-registered client_id may be an https URL (draft-ietf-oauth-client-id-metadata-document-02 §7.2: "an
authorization server MAY pre-register Client Identifier URLs"); it must then be a valid client identifier URL,
and the file's entry wins over any document fetched from that URL.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from vouchsim.server.core.crypto import hash_secret
from vouchsim.server.oauth import redirects, scopes
from vouchsim.server.oauth.cimd.errors import InvalidClientIdUrl
from vouchsim.server.oauth.cimd.urls import MAX_LENGTH, looks_like_url, parse_client_id_url
from vouchsim.server.oauth.client_metadata import DEFAULT_GRANT_TYPES, display_text_problem
from vouchsim.server.oauth.metadata import GRANT_TYPES
from vouchsim.server.settings import Settings
from vouchsim.server.storage.models import OAuthClient
from vouchsim.server.storage.repositories.clients import CIMD, PREREGISTERED, ClientRepository

# RFC 6749 §2.2 / Appendix A.1: client_id is VSCHAR*; here without spaces, and never this server's own `vsc_` ids.
_CLIENT_ID = rf"^(?!vsc_)[\x21-\x7e]{{1,{MAX_LENGTH}}}$"
_SECRET_MIN_LENGTH = 16


class PreregisteredClient(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    client_id: Annotated[str, msgspec.Meta(pattern=_CLIENT_ID)]
    client_name: str
    redirect_uris: Annotated[tuple[str, ...], msgspec.Meta(min_length=1)]
    token_endpoint_auth_method: Literal["none", "client_secret_basic", "client_secret_post"] = "none"  # noqa: S105
    client_secret: str | None = None
    grant_types: tuple[str, ...] = tuple(DEFAULT_GRANT_TYPES)
    response_types: tuple[Literal["code"], ...] = ("code",)
    scope: str = scopes.DEFAULT_SCOPE
    application_type: Literal["web", "native"] | None = None

    def problem(self) -> str | None:
        """What `msgspec` cannot say about this entry: the rules shared with registration and CIMD."""
        if problem := display_text_problem("client_name", self.client_name, 256):
            return problem
        for uri in self.redirect_uris:
            if problem := redirects.registration_problem(uri):
                return problem
        if looks_like_url(self.client_id):
            try:
                parse_client_id_url(self.client_id)
            except InvalidClientIdUrl as error:
                return error.description
        if unknown := set(self.grant_types) - set(GRANT_TYPES):
            return f"unsupported grant_types: {', '.join(sorted(unknown))}"
        if "authorization_code" not in self.grant_types:
            return "grant_types must include authorization_code"
        if self.response_types != ("code",):
            return 'response_types must be ["code"]'
        if unknown := set(scopes.split(self.scope)) - set(scopes.SUPPORTED_SCOPES):
            return f"unsupported scope: {' '.join(sorted(unknown))}"
        public = self.token_endpoint_auth_method == "none"  # noqa: S105 (a method name)
        if public and self.client_secret is not None:
            return "client_secret is given, but token_endpoint_auth_method is none (a public client has no secret)"
        if not public and (self.client_secret is None or len(self.client_secret) < _SECRET_MIN_LENGTH):
            return (
                f"{self.token_endpoint_auth_method} needs a client_secret of at least {_SECRET_MIN_LENGTH} characters"
            )
        return None

    def public_metadata(self) -> dict[str, object]:
        """The client's metadata as this server describes it (the secret never)."""
        metadata: dict[str, object] = {
            "client_id": self.client_id,
            "client_name": self.client_name,
            "redirect_uris": list(self.redirect_uris),
            "grant_types": list(self.grant_types),
            "response_types": list(self.response_types),
            "token_endpoint_auth_method": self.token_endpoint_auth_method,
            "scope": self.scope,
        }
        if self.application_type is not None:
            metadata["application_type"] = self.application_type
        return metadata


class _ClientsFile(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    clients: list[PreregisteredClient]


class ClientsFileError(ValueError):
    """The clients file is missing, unreadable or malformed."""


class PreregisteredClients:
    """The clients of the file, by id; immutable once loaded."""

    def __init__(self, clients: list[PreregisteredClient]) -> None:
        self._by_id: dict[str, PreregisteredClient] = {}
        for index, client in enumerate(clients):
            if client.client_id in self._by_id:
                raise ValueError(f"client {client.client_id!r} is listed twice")
            if problem := client.problem():
                raise ValueError(f"{problem} - at `$.clients[{index}]` ({client.client_id})")
            self._by_id[client.client_id] = client

    @classmethod
    def load(cls, path: Path) -> PreregisteredClients:
        try:
            raw = path.read_bytes()
        except OSError as error:
            raise ClientsFileError(f"cannot read the clients file {path}: {error.strerror or error}") from None
        try:
            return cls(msgspec.json.decode(raw, type=_ClientsFile).clients)
        except (msgspec.ValidationError, msgspec.DecodeError, ValueError) as error:
            raise ClientsFileError(f"the clients file {path} is not valid: {error}") from None

    @classmethod
    def from_settings(cls, settings: Settings) -> PreregisteredClients:
        return cls.load(Path(settings.clients_file)) if settings.clients_file else cls([])

    def get(self, client_id: str) -> PreregisteredClient | None:
        return self._by_id.get(client_id)

    def __iter__(self) -> Iterator[PreregisteredClient]:
        return iter(self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    async def seed(self, clients: ClientRepository, now: datetime) -> list[str]:
        """Writes every client of the file (taking over a CIMD row with the same URL id), retires pre-registered
        clients no longer in it; the ids retired. Raises `ClientsFileError` if an id belongs to a dynamically
        registered client."""
        for client in self._by_id.values():
            row = OAuthClient(
                client_id=client.client_id,
                client_secret_hash=hash_secret(client.client_secret) if client.client_secret else None,
                client_name=client.client_name,
                redirect_uris=list(client.redirect_uris),
                grant_types=list(client.grant_types),
                response_types=list(client.response_types),
                token_endpoint_auth_method=client.token_endpoint_auth_method,
                scope=client.scope,
                provider_id=None,
                client_metadata=client.public_metadata(),
                client_id_issued_at=int(now.timestamp()),
                created_at=now,
                kind=PREREGISTERED,
                metadata_fetched_at=None,
                metadata_expires_at=None,
                retired_at=None,
            )
            if not await clients.save_described(row, replaces=(PREREGISTERED, CIMD)):
                raise ClientsFileError(
                    f"the clients file names {client.client_id}, which is a dynamically registered client's id"
                )
        return await clients.retire_preregistered(list(self._by_id), now)
