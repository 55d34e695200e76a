"""What `oauth` needs of delegation tokens (docs/delegations.md), as a Protocol: the revocation and introspection
endpoints accept them too, and the JWKS publishes the keys that sign them.

`server.delegation`'s `DelegationService` implements it; `server/app.py` hands it to the routes as the
`delegation_tokens` dependency. `oauth` never imports `server.delegation`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from vouchsim.server.oauth.views import ClientView
from vouchsim.server.storage.session import DbSession


@runtime_checkable  # Litestar checks a dependency against its annotation with isinstance
class DelegationTokens(Protocol):
    def within(self, session: DbSession) -> DelegationTokens:
        """The same, inside one request's transaction."""
        ...

    async def jwks(self) -> dict[str, Any]:
        """The keys that sign delegation tokens (RFC 7517), retired ones included until their tokens have expired."""
        ...

    async def introspect(self, token: str, *, issuer: str) -> dict[str, Any] | None:
        """The token's claims while it is active (signed by us for `issuer`, unexpired, its delegation approved)."""
        ...

    async def withdraw_for_client(self, delegation_id: str, *, client_id: str) -> object:
        """Withdraw the delegation, asked by the agent client holding its token; nothing for another client's."""
        ...


@dataclass(frozen=True)
class DelegationTokenView:
    """A delegation token (docs/delegations.md) that `DelegationTokens.introspect` found active: signed by us,
    unexpired, its delegation still approved. Any authenticated client may introspect one: it is the audience.
    Its `sub` is already the user's pairwise subject for its audience."""

    claims: dict[str, Any]

    def check_client(self, client: ClientView) -> bool:
        return True

    def is_expired(self) -> bool:
        return False  # checked by the service, on the server's clock

    def is_revoked(self) -> bool:
        return False  # likewise


def _looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2  # our opaque tokens (`vsat_…`, `vsrt_…`) have no dots


def looks_like_jwt(token: str) -> bool:
    return token.count(".") == 2  # our opaque tokens (`vsat_…`, `vsrt_…`) have no dots
