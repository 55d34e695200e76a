"""The authorization code grant (RFC 6749 §4.1) with PKCE (RFC 7636, S256 only) and resource indicators (RFC 8707).

What Authlib does not do, or does differently (see NOTES-dependencies.md, "Traps"): PKCE demands S256; `resource`
is checked and bound to the code and its tokens; a replayed code revokes what it issued (the store does that).
"""

from __future__ import annotations

import hmac
from typing import Any

from authlib.oauth2.rfc6749 import InvalidGrantError, InvalidRequestError, OAuth2Error, grants
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge

from vouchsim.server.core.issuer import canonical_resource, resource_url
from vouchsim.server.oauth import redirects
from vouchsim.server.oauth.bridge import ALL_AUTH_METHODS, FormRequest, bridge
from vouchsim.server.oauth.errors import safe_description
from vouchsim.server.oauth.store import OAuthStore
from vouchsim.server.oauth.views import ClientView, CodeView, UserView


# -- PKCE (RFC 7636), S256 only ----------------------------------------------------------------------------
def _s256_matches(verifier: str, challenge: str) -> bool:
    # RFC 7636 §4.6, compared in constant time.
    return hmac.compare_digest(create_s256_code_challenge(verifier).encode(), challenge.encode())


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """Authlib's `required=True` still lets a request without a challenge, or with `plain`, through."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    CODE_CHALLENGE_METHODS = {"S256": _s256_matches}

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256")
        if data.get("code_challenge_method") != "S256":
            # An absent method means "plain" (RFC 7636 4.3), which OAuth 2.1 forbids here.
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


# -- RFC 8707 resource indicators ----------------------------------------------------------------------------
class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 §2: the requested resource is not one this server issues tokens for."""

    error = "invalid_target"


def normalise_resource(value: str) -> str:
    """Scheme and host in lower case, no trailing slash (`core.issuer.canonical_resource`)."""
    return canonical_resource(value)


class ResourceIndicator:
    """Accept `resource` only for our MCP endpoint (trailing slash forgiven) and bind it to code and tokens."""

    def __init__(self, issuer: str) -> None:
        self.resource = canonical_resource(resource_url(issuer))

    def __call__(self, grant: Any) -> None:
        grant.register_hook("after_validate_authorization_request_payload", self.check_authorize)
        grant.register_hook("after_validate_token_request", self.check_token)

    def _requested(self, request: FormRequest) -> list[str]:
        return [normalise_resource(value) for value in request.payload.datalist.get("resource", [])]

    def check_authorize(self, grant: Any, _result: Any) -> None:
        for value in self._requested(grant.request):
            if value != self.resource:
                raise InvalidTargetError(f"This server issues tokens only for the resource {self.resource}")

    def check_token(self, grant: Any, _result: Any) -> None:
        bound = (grant.request.authorization_code or grant.request.refresh_token).resource
        for value in self._requested(grant.request):
            if value != bound:
                raise InvalidTargetError(f"The grant is bound to the resource {bound}")


# -- the grant --------------------------------------------------------------------------------------------
class AuthorizationCodeGrant(grants.AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS

    @property
    def store(self) -> OAuthStore:
        return self.server.store  # type: ignore[no-any-return]

    @staticmethod
    def validate_authorization_redirect_uri(request: FormRequest, client: ClientView) -> str:
        # Say why a redirect URI a browser could read differently is refused (docs/security.md), before the
        # registered-URI comparison whose message would echo it.
        requested = request.payload.redirect_uri
        if requested and (problem := redirects.request_problem(requested)):
            raise InvalidRequestError(safe_description(problem))
        uri: str = grants.AuthorizationCodeGrant.validate_authorization_redirect_uri(request, client)
        return uri

    def save_authorization_code(self, code: str, request: FormRequest) -> None:
        user: UserView = request.user
        data = request.payload.data
        resources = request.payload.datalist.get("resource") or [resource_url(self.server.issuer)]
        bridge(
            lambda: self.store.save_code(
                code,
                client_id=request.client.client_id,
                user_id=user.id,
                connection_id=user.connection_id,
                redirect_uri=data.get("redirect_uri") or request.client.get_default_redirect_uri(),
                scope=request.scope,
                resource=normalise_resource(resources[0]),
                challenge=data["code_challenge"],
                method=data["code_challenge_method"],
            )
        )

    def query_authorization_code(self, code: str, client: ClientView) -> CodeView | None:
        return bridge(self.store.find_code, code, client.client_id)  # type: ignore[no-any-return]

    def delete_authorization_code(self, authorization_code: CodeView) -> None:
        pass  # consumed in authenticate_user, before any token is made

    def authenticate_user(self, authorization_code: CodeView) -> UserView:
        # Consume the code before tokens are generated: of two racing exchanges exactly one wins, and the
        # loser is treated as a replay (RFC 6749 §4.1.2). Runs after PKCE, so a failed verifier keeps the code.
        if not bridge(self.store.consume_code, authorization_code):
            raise InvalidGrantError("The authorization code was already used.")
        if not bridge(self.store.connection_active, authorization_code.connection_id):
            raise InvalidGrantError("The runtime connection behind this code was unpaired.")
        return UserView(authorization_code.user_id, authorization_code.connection_id)
