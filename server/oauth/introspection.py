"""Token introspection (RFC 7662): client authentication required; delegation tokens too."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from vouchsim.server.core.subjects import client_subject
from vouchsim.server.oauth.bridge import FormRequest, bridge
from vouchsim.server.oauth.delegation_tokens import DelegationTokens, DelegationTokenView, looks_like_jwt
from vouchsim.server.oauth.views import ClientView, TokenView


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | DelegationTokenView | None:
        delegations: DelegationTokens | None = self.server.delegations
        if delegations is not None and looks_like_jwt(token_string):
            claims = bridge(lambda: delegations.introspect(token_string, issuer=self.server.issuer))
            return DelegationTokenView(claims) if claims is not None else None
        return bridge(self.server.store.find_token, token_string, token_type_hint)  # type: ignore[no-any-return]

    def check_permission(
        self, token: TokenView | DelegationTokenView, client: ClientView, request: FormRequest
    ) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: TokenView | DelegationTokenView) -> dict[str, Any]:
        if isinstance(token, DelegationTokenView):
            return dict(token.claims)
        expires = token.refresh_expires_at if token.presented == "refresh_token" else token.access_expires_at
        return {
            "active": True,
            "client_id": token.client_id,
            "token_type": token.presented if token.presented == "refresh_token" else "Bearer",
            "scope": token.scope,
            # The user as this client knows them (`identity_get`'s `subject`): two clients cannot link the user.
            "sub": client_subject(self.server.hmac_key, token.user_id, token.client_id),
            "aud": token.resource,
            "iss": self.server.issuer,
            "iat": int(token.created_at.timestamp()),
            "exp": int(expires.timestamp()) if expires else None,
        }
