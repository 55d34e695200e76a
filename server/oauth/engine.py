"""Authlib as the grant engine (RFC 6749 grants, RFC 7636 PKCE, RFC 7009, RFC 7662), kept off the event loop.

Authlib's server is synchronous. A route reads the body on the loop, builds a `FormRequest`, and runs Authlib in a
worker thread (`run_authlib`); Authlib's callbacks reach the async `OAuthStore` through `anyio.from_thread.run`,
so the database session never leaves the loop thread. One `AuthorizationServer` is built per request: the
callbacks close over that request's store and issuer.

What Authlib does not do, or does differently, is adjusted here (see NOTES-dependencies.md, "Traps"):
PKCE demands S256; public clients (`none`) are allowed at the token and revocation endpoints; RFC 8707
`resource` is checked and bound; a replayed code revokes what it issued; refresh tokens rotate with reuse
detection and a grace window; RFC 9207 `iss` is added to every authorization response, errors included.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from authlib.common.urls import add_params_to_uri
from authlib.oauth2.rfc6749 import (
    AuthorizationServer,
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    grants,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge, create_s256_code_challenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from vouchsim.server.core.crypto import random_token
from vouchsim.server.core.issuer import canonical_resource, resource_url
from vouchsim.server.core.subjects import client_subject
from vouchsim.server.delegation.service import DelegationService
from vouchsim.server.oauth import redirects, scopes
from vouchsim.server.oauth.cimd.errors import CimdError
from vouchsim.server.oauth.errors import safe_description
from vouchsim.server.oauth.store import OAuthStore
from vouchsim.server.oauth.views import ClientView, CodeView, TokenView, UserView
from vouchsim.server.settings import Settings

T = TypeVar("T")
ALL_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]


@dataclass(frozen=True)
class OAuthResult:
    """Authlib's answer, framework-neutral; the route turns it into a Litestar response."""

    status: int
    body: Any
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def location(self) -> str | None:
        return next((value for name, value in self.headers if name.lower() == "location"), None)


class InvalidTargetError(OAuth2Error):  # type: ignore[misc]
    """RFC 8707 §2: the requested resource is not one this server issues tokens for."""

    error = "invalid_target"


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, datalist: Mapping[str, list[str]]) -> None:
        self._datalist = {key: list(values) for key, values in datalist.items()}
        self._data = {key: values[0] for key, values in self._datalist.items() if values}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


class _Headers(dict[str, str]):
    """Header lookup without regard to case: Authlib asks for "Authorization", Litestar hands "authorization"."""

    def __init__(self, headers: Mapping[str, str]) -> None:
        super().__init__((name.lower(), value) for name, value in headers.items())

    def get(self, name: str, default: Any = None) -> Any:
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


class FormRequest(OAuth2Request):  # type: ignore[misc]
    """An OAuth request whose parameters were read on the event loop (query string, form or JSON body)."""

    def __init__(self, method: str, uri: str, params: Mapping[str, list[str]], headers: Mapping[str, str]) -> None:
        # Authlib refuses non-https URIs outside loopback (and outside its own error handling, so as a 500).
        # The transport is the deployment's business (a TLS proxy, or plain http in a lab); the URI is used
        # for nothing else here, so Authlib sees it with an https scheme.
        if uri.startswith("http://"):
            uri = "https://" + uri[len("http://") :]
        super().__init__(method, uri, headers=_Headers(headers))
        self.payload = _Payload(params)

    @property
    def form(self) -> dict[str, str]:
        data: dict[str, str] = self.payload.data
        return data

    @property
    def args(self) -> dict[str, str]:
        data: dict[str, str] = self.payload.data
        return data


def _bridge(fn: Callable[..., Any], *args: Any) -> Any:
    """From Authlib's worker thread, run a store coroutine on the event loop and wait for it."""
    return anyio.from_thread.run(fn, *args)


async def run_authlib(work: Callable[[], T]) -> T:
    return await anyio.to_thread.run_sync(work)


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


# -- the server --------------------------------------------------------------------------------------------
class VouchAuthorizationServer(AuthorizationServer):  # type: ignore[misc]
    def __init__(
        self,
        store: OAuthStore,
        issuer: str,
        settings: Settings,
        delegations: DelegationService | None = None,
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
            return _bridge(self.store.client, client_id)  # type: ignore[no-any-return]
        except CimdError as error:
            # An unusable metadata document: the client is not trusted, so no redirect follows (the error has
            # no redirect_uri): the authorization page shows it, the other endpoints answer invalid_client.
            raise InvalidClientError(description=error.description) from None

    def save_token(self, token: dict[str, Any], request: FormRequest) -> None:
        source: CodeView | TokenView = request.authorization_code or request.refresh_token
        request.saved_token_id = _bridge(
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
        _bridge(
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
        return _bridge(self.store.find_code, code, client.client_id)  # type: ignore[no-any-return]

    def delete_authorization_code(self, authorization_code: CodeView) -> None:
        pass  # consumed in authenticate_user, before any token is made

    def authenticate_user(self, authorization_code: CodeView) -> UserView:
        # Consume the code before tokens are generated: of two racing exchanges exactly one wins, and the
        # loser is treated as a replay (RFC 6749 §4.1.2). Runs after PKCE, so a failed verifier keeps the code.
        if not _bridge(self.store.consume_code, authorization_code):
            raise InvalidGrantError("The authorization code was already used.")
        if not _bridge(self.store.connection_active, authorization_code.connection_id):
            raise InvalidGrantError("The runtime connection behind this code was unpaired.")
        return UserView(authorization_code.user_id, authorization_code.connection_id)


class RefreshTokenGrant(grants.RefreshTokenGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS = ALL_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    @property
    def store(self) -> OAuthStore:
        return self.server.store  # type: ignore[no-any-return]

    def validate_token_request(self) -> None:
        # Authlib's refresh grant runs no "after_validate_token_request" hooks: without this, ResourceIndicator
        # never saw a refresh's `resource`, and a foreign one was silently ignored (RFC 8707 §2: invalid_target).
        super().validate_token_request()
        self.execute_hook("after_validate_token_request", None)

    def authenticate_refresh_token(self, refresh_token: str) -> TokenView | None:
        outcome = _bridge(self.store.present_refresh, refresh_token)
        self.request.replay_pair = outcome.replay_pair
        return outcome.token  # type: ignore[no-any-return]

    def authenticate_user(self, refresh_token: TokenView) -> UserView | None:
        if not _bridge(self.store.connection_active, refresh_token.connection_id):
            return None
        return UserView(refresh_token.user_id, refresh_token.connection_id)

    def create_token_response(self) -> tuple[int, dict[str, Any], list[tuple[str, str]]]:
        request: FormRequest = self.request
        presented = request.form["refresh_token"]
        if request.replay_pair is not None:
            return 200, request.replay_pair, self.TOKEN_RESPONSE_HEADER
        if not _bridge(self.store.start_rotation, request.refresh_token):
            # Another request rotated it between our read and our write: answer as its twin would be.
            outcome = _bridge(self.store.reread_refresh, presented)
            if outcome.replay_pair is None:
                raise InvalidGrantError("The refresh token was already used.")
            return 200, outcome.replay_pair, self.TOKEN_RESPONSE_HEADER
        user = self.authenticate_user(request.refresh_token)
        if user is None:
            raise InvalidGrantError("The runtime connection behind this token was unpaired.")
        request.user = user
        token = self.issue_token(user, request.refresh_token)
        self.save_token(token)
        _bridge(lambda: self.store.finish_rotation(request.refresh_token, presented, request.saved_token_id, token))
        return 200, token, self.TOKEN_RESPONSE_HEADER

    def revoke_old_credential(self, refresh_token: TokenView) -> None:
        pass  # rotation is recorded in create_token_response


class Revocation(RevocationEndpoint):  # type: ignore[misc]
    """RFC 7009, for our opaque tokens and for delegation tokens (JWTs): the agent client holding a delegation
    token may revoke it, which revokes its delegation exactly as the `delegation_revoke` tool does."""

    CLIENT_AUTH_METHODS = ALL_AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | None:
        return _bridge(self.server.store.find_token, token_string, token_type_hint)  # type: ignore[no-any-return]

    def authenticate_token(self, request: FormRequest, client: ClientView) -> TokenView | DelegationTokenView | None:
        # RFC 7009 §2.2: a token of another client is not revealed; the answer is the same 200.
        self.check_params(request, client)
        presented = request.form["token"]
        delegations: DelegationService | None = self.server.delegations
        if delegations is not None and _looks_like_jwt(presented):
            claims = _bridge(lambda: delegations.introspect(presented, issuer=self.server.issuer))
            # Only the agent client it was issued to (its `act.sub`) may revoke it; anyone else: 200, nothing done.
            if claims is None or claims.get("client_id") != client.client_id:
                return None
            return DelegationTokenView(claims)
        token = self.query_token(presented, request.form.get("token_type_hint"))
        return token if token is not None and token.check_client(client) else None

    def revoke_token(self, token: TokenView | DelegationTokenView, request: FormRequest) -> None:
        if isinstance(token, DelegationTokenView):
            delegations: DelegationService | None = self.server.delegations
            assert delegations is not None  # a DelegationTokenView comes only from them
            client_id = str(token.claims["client_id"])
            _bridge(lambda: delegations.withdraw_for_client(str(token.claims["delegation_id"]), client_id=client_id))
            return
        _bridge(self.server.store.revoke, token)


@dataclass(frozen=True)
class DelegationTokenView:
    """A delegation token (docs/delegations.md) that `DelegationService.introspect` found active: signed by us,
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


class Introspection(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS = ["client_secret_basic", "client_secret_post"]

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenView | DelegationTokenView | None:
        delegations: DelegationService | None = self.server.delegations
        if delegations is not None and _looks_like_jwt(token_string):
            claims = _bridge(lambda: delegations.introspect(token_string, issuer=self.server.issuer))
            return DelegationTokenView(claims) if claims is not None else None
        return _bridge(self.server.store.find_token, token_string, token_type_hint)  # type: ignore[no-any-return]

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
