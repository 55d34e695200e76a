"""Token revocation (RFC 7009)."""

from __future__ import annotations

from authlib.oauth2.rfc7009 import RevocationEndpoint

from vouchsim.server.oauth.bridge import ALL_AUTH_METHODS, FormRequest, bridge
from vouchsim.server.oauth.delegation_tokens import DelegationTokens, DelegationTokenView, looks_like_jwt
from vouchsim.server.oauth.views import ClientView, TokenView


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009, for our opaque tokens and for delegation tokens (JWTs): the agent client holding a delegation
    token may revoke it, which revokes its delegation exactly as the `delegation_revoke` tool does."""

    CLIENT_AUTH_METHODS = ALL_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | None:
        return bridge(self.server.store.find_token, token_string, token_type_hint)  # type: ignore[no-any-return]

    def authenticate_token(self, request: FormRequest, client: ClientView) -> TokenView | DelegationTokenView | None:
        # RFC 7009 §2.2: a token of another client is not revealed; the answer is the same 200.
        self.check_params(request, client)
        presented = request.form["token"]
        delegations: DelegationTokens | None = self.server.delegations
        if delegations is not None and looks_like_jwt(presented):
            claims = bridge(lambda: delegations.introspect(presented, issuer=self.server.issuer))
            # Only the agent client it was issued to (its `act.sub`) may revoke it; anyone else: 200, nothing done.
            if claims is None or claims.get("client_id") != client.client_id:
                return None
            return DelegationTokenView(claims)
        token = self.query_token(presented, request.form.get("token_type_hint"))
        return token if token is not None and token.check_client(client) else None

    def revoke_token(self, token: TokenView | DelegationTokenView, request: FormRequest) -> None:
        if isinstance(token, DelegationTokenView):
            delegations: DelegationTokens | None = self.server.delegations
            assert delegations is not None  # a DelegationTokenView comes only from them
            client_id = str(token.claims["client_id"])
            bridge(lambda: delegations.withdraw_for_client(str(token.claims["delegation_id"]), client_id=client_id))
            return
        bridge(self.server.store.revoke, token)
