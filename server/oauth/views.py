"""What Authlib sees of our records: immutable views implementing its model mixins.

Authlib runs in a greenlet of its own (`bridge`); it gets these plain values, never live ORM rows or the database
session.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from authlib.oauth2.rfc6749 import AuthorizationCodeMixin, ClientMixin, InvalidScopeError, TokenMixin

from vouchsim.server.core.crypto import constant_time_equals, hash_secret
from vouchsim.server.oauth import redirects, scopes
from vouchsim.server.oauth.errors import safe_description


@dataclass(frozen=True)
class ClientView(ClientMixin):  # type: ignore[misc]
    client_id: str
    client_name: str | None
    client_secret_hash: str | None
    redirect_uris: tuple[str, ...]
    grant_types: tuple[str, ...]
    response_types: tuple[str, ...]
    token_endpoint_auth_method: str
    scope: str

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        # Only when exactly one is registered is "the" default unambiguous (RFC 6749 §3.1.2.3).
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        """The scope to grant (RFC 6749 §3.3; docs/security.md, "Scopes"):

        - scopes this server does not know are dropped (claude.ai sends `claudeai`), not refused;
        - nothing known asked for (or no scope at all) means the client's registered scope;
        - a known scope the client did not register is refused with `invalid_scope`, as Ory Hydra and Keycloak
          do, never silently narrowed; `offline_access` is always accepted.
        """
        registered = scopes.split(self.scope)
        wanted = scopes.known(scope)
        if not wanted:
            return scopes.join(registered)
        if refused := [s for s in wanted if s not in registered and s != scopes.OFFLINE_ACCESS]:
            raise InvalidScopeError(
                safe_description(
                    f"This client registered the scope {' '.join(registered)}; it may not ask for "
                    f"{' '.join(refused)}. Register again with every scope it needs."
                )
            )
        return scopes.join(wanted)

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirects.matches(list(self.redirect_uris), redirect_uri)

    def check_client_secret(self, client_secret: str) -> bool:
        if self.client_secret_hash is None:
            return False
        return constant_time_equals(hash_secret(client_secret), self.client_secret_hash)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if endpoint == "introspection" and method == "none":
            return False  # RFC 7662 §2.1: the caller must authenticate
        return method == self.token_endpoint_auth_method

    def check_response_type(self, response_type: str) -> bool:
        return response_type in self.response_types

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.grant_types


@dataclass(frozen=True)
class UserView:
    """The resource owner as the grants see it, with the runtime connection the grant is made through."""

    id: str
    connection_id: str


@dataclass(frozen=True)
class CodeView(AuthorizationCodeMixin):  # type: ignore[misc]
    id: str
    client_id: str
    user_id: str
    connection_id: str
    redirect_uri: str
    scope: str
    resource: str
    code_challenge: str
    code_challenge_method: str

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass(frozen=True)
class TokenView(TokenMixin):  # type: ignore[misc]
    id: str
    grant_id: str
    client_id: str
    user_id: str
    connection_id: str
    authorization_code_id: str | None
    scope: str
    resource: str
    created_at: datetime
    access_expires_at: datetime
    refresh_expires_at: datetime | None
    revoked: bool
    # Which of the token's two secrets was presented, for introspection and revocation.
    presented: str = "access_token"
    now: datetime | None = None

    def check_client(self, client: ClientView) -> bool:
        return bool(self.client_id == client.client_id)

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return int((self.access_expires_at - self.created_at).total_seconds())

    def is_expired(self) -> bool:
        expires = self.refresh_expires_at if self.presented == "refresh_token" else self.access_expires_at
        return self.now is not None and (expires is None or expires <= self.now)

    def is_revoked(self) -> bool:
        return self.revoked
