"""The authorization server: Authlib's `AuthorizationServer`, with the grants and endpoints of the modules around it.

One module per RFC: `authorization_code` (RFC 6749 §4.1, RFC 7636 PKCE, RFC 8707 resource), `refresh_token`
(RFC 6749 §6), `revocation` (RFC 7009), `introspection` (RFC 7662), `registration` (RFC 7591), `metadata`
(RFC 8414, RFC 9728); `bridge` runs Authlib in a greenlet, its callbacks awaiting the store. One server is built
per request: the callbacks close over that request's store and issuer.

What this class adjusts: public clients (`none`) are allowed at the token and revocation endpoints; one client
authentication method per request; an unknown scope is ignored; RFC 9207 `iss` is added to every authorization
response, errors included.
"""

from __future__ import annotations

from typing import Any

from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import AuthorizationServer, InvalidClientError, InvalidRequestError, OAuth2Error

from vouchsim.server.core.crypto import random_token
from vouchsim.server.oauth import scopes
from vouchsim.server.oauth.authorization_code import AuthorizationCodeGrant, ResourceIndicator, S256CodeChallenge
from vouchsim.server.oauth.bridge import FormRequest, OAuthResult, bridge
from vouchsim.server.oauth.cimd.errors import CimdError
from vouchsim.server.oauth.delegation_tokens import DelegationTokens
from vouchsim.server.oauth.introspection import Introspection
from vouchsim.server.oauth.refresh_token import RefreshTokenGrant
from vouchsim.server.oauth.revocation import Revocation
from vouchsim.server.oauth.store import OAuthStore
from vouchsim.server.oauth.views import ClientView, CodeView, TokenView, UserView
from vouchsim.server.settings import Settings


class VouchAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(
        self,
        store: OAuthStore,
        issuer: str,
        settings: Settings,
        delegations: DelegationTokens | None = None,
        *,
        hmac_key: bytes,
    ) -> None:
        super().__init__(scopes_supported=list(scopes.SUPPORTED_SCOPES))
        self.store = store
        self.issuer = issuer
        self.settings = settings
        # Given at the introspection and revocation endpoints only: delegation tokens (JWTs) are introspected and
        # revoked there too.
        self.delegations = delegations
        # Introspection names the user by the pairwise subject of the token's client, never the internal id.
        self.hmac_key = hmac_key
        self.register_token_generator("default", self._generate_token)
        self.register_grant(AuthorizationCodeGrant, [S256CodeChallenge(required=True), ResourceIndicator(issuer)])
        self.register_grant(RefreshTokenGrant, [ResourceIndicator(issuer)])
        self.register_endpoint(Revocation)
        self.register_endpoint(Introspection)

    def validate_requested_scope(self, scope: str | None) -> None:
        """RFC 6749 §3.3: a scope this server does not know is ignored, not refused (`ClientView.get_allowed_scope`
        drops it). Authlib would answer `invalid_scope`."""

    def authenticate_client(self, request: FormRequest, methods: list[str], endpoint: str = "token") -> ClientView:
        # RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in each request."
        # Authlib would try Basic first and ignore the body's secret.
        basic = (request.headers.get("Authorization") or "").strip().lower().startswith("basic ")
        if basic and "client_secret" in request.payload.datalist:
            raise InvalidRequestError(
                "The client authenticated twice: with HTTP Basic and with client_secret in the body. "
                "Use one method (RFC 6749 section 2.3)."
            )
        client: ClientView = super().authenticate_client(request, methods, endpoint)
        return client

    def query_client(self, client_id: str) -> ClientView | None:
        try:
            return bridge(self.store.client, client_id)  # type: ignore[no-any-return]
        except CimdError as error:
            # An unusable metadata document: the client is not trusted, so no redirect follows (the error has
            # no redirect_uri): the authorization page shows it, the other endpoints answer invalid_client.
            raise InvalidClientError(description=error.description) from None

    def save_token(self, token: dict[str, Any], request: FormRequest) -> None:
        source: CodeView | TokenView = request.authorization_code or request.refresh_token
        request.saved_token_id = bridge(
            lambda: self.store.save_token(
                token,
                client_id=request.client.client_id,
                user_id=source.user_id,
                connection_id=source.connection_id,
                resource=source.resource,
                grant_id=source.grant_id if isinstance(source, TokenView) else None,
                code_id=source.id if isinstance(source, CodeView) else source.authorization_code_id,
            )
        )

    def _generate_token(
        self,
        grant_type: str,
        client: ClientView,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        token: dict[str, Any] = {
            "token_type": "Bearer",
            "access_token": "vsat_" + random_token(32),
            "expires_in": expires_in or self.settings.access_token_ttl,
            "scope": scope or "",
        }
        if include_refresh_token:
            token["refresh_token"] = "vsrt_" + random_token(32)
        return token

    def create_oauth2_request(self, request: Any) -> FormRequest:
        assert isinstance(request, FormRequest), "routes hand Authlib pre-read requests only"
        return request

    def create_json_request(self, request: Any) -> Any:
        return request

    def handle_response(self, status: int, body: Any, headers: list[tuple[str, str]]) -> OAuthResult:
        return OAuthResult(status, body, list(headers))

    def handle_error_response(self, request: Any, error: OAuth2Error) -> OAuthResult:
        status, body, headers = error(self.get_error_uri(request, error))
        return self._with_iss(OAuthResult(status, body, list(headers)))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def _with_iss(self, result: OAuthResult) -> OAuthResult:
        """RFC 9207 §2: `iss` on every authorization response, including the error redirects Authlib skips."""
        location = result.location
        if location is None:
            return result
        headers = [(n, v) for n, v in result.headers if n.lower() != "location"]
        headers.append(("Location", add_params_to_uri(location, [("iss", self.issuer)])))
        return OAuthResult(result.status, result.body, headers)

    def authorize(self, request: FormRequest, user: UserView) -> OAuthResult:
        """Issue the code for an already-validated request, once the person has paired or consented."""
        grant = self.get_consent_grant(request, end_user=user)
        result = self.create_authorization_response(request, grant_user=user, grant=grant)
        assert isinstance(result, OAuthResult)
        return self._with_iss(result)
