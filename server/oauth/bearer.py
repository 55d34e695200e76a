"""RFC 6750 bearer tokens at the resource server, and the RFC 9728 §5.1 challenge that points to our metadata."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from vouchsim.server.core.clock import Clock
from vouchsim.server.core.crypto import hash_secret
from vouchsim.server.core.errors import VouchsimError
from vouchsim.server.core.issuer import canonical_resource
from vouchsim.server.oauth import scopes
from vouchsim.server.storage.repositories.tokens import TokenRepository


class BearerError(VouchsimError):
    """The request lacks a usable access token."""

    code = "invalid_token"
    status = 401


class MissingToken(BearerError):
    """No access token was sent."""

    code = ""  # RFC 6750 §3.1: no error code when the request carried no credentials


class InvalidToken(BearerError):
    """The access token is unknown, expired or revoked."""


class WrongAudience(BearerError):
    """The access token was issued for another resource."""


class InsufficientScope(BearerError):
    """The access token lacks a scope this request needs."""

    code = "insufficient_scope"
    status = 403


@dataclass(frozen=True)
class AccessGrant:
    """What a valid bearer token stands for."""

    token_id: str
    client_id: str
    user_id: str
    connection_id: str
    scopes: tuple[str, ...]
    resource: str
    expires_at: datetime
    # The client's display name as it was when the token was validated (cached with the grant, so identity_get
    # reads no client row; a renamed CIMD client shows its new name once the cache entry expires).
    client_name: str = ""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer …` header (scheme case-insensitive, RFC 6750 §2.1)."""
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


async def authenticate(tokens: TokenRepository, clock: Clock, authorization: str | None, resource: str) -> AccessGrant:
    token = bearer_token(authorization)
    if token is None:
        # Another scheme (Basic, say) counts as no bearer token at all: answer with the plain challenge.
        raise MissingToken("An access token is required.")
    found = await tokens.active_access(hash_secret(token), clock.now())
    if found is None:
        raise InvalidToken("The access token is unknown, expired or revoked.")
    if canonical_resource(found.resource) != canonical_resource(resource):
        raise WrongAudience(f"The access token was issued for {found.resource}, not {resource}.")
    return AccessGrant(
        token_id=found.token_id,
        client_id=found.client_id,
        user_id=found.user_id,
        connection_id=found.connection_id,
        scopes=tuple(scopes.split(found.scope)),
        resource=found.resource,
        expires_at=found.access_expires_at,
        client_name=found.client_name or found.client_id,
    )


def require_scopes(grant: AccessGrant, needed: list[str]) -> None:
    missing = [s for s in needed if s not in grant.scopes]
    if missing:
        raise InsufficientScope(f"This request needs the scope(s): {' '.join(needed)}.")


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def challenge(resource_metadata: str, scope: str, error: BearerError | None = None) -> str:
    """The `WWW-Authenticate` value (RFC 6750 §3, RFC 9728 §5.1)."""
    params = []
    if error is not None and error.code:
        params.append(f"error={_quote(error.code)}")
        params.append(f"error_description={_quote(error.description)}")
    params.append(f"resource_metadata={_quote(resource_metadata)}")
    params.append(f"scope={_quote(scope)}")
    return "Bearer " + ", ".join(params)
