"""An OAuth client for tests, the plumbing every test of an MCP client writes by hand: registered with the server
by dynamic client registration (RFC 7591), it builds authorization URLs with PKCE (RFC 7636, S256 only), exchanges
the code the redirect brings back (checking its `state` and `iss`, RFC 9207), refreshes and revokes, all over
synchronous httpx so plain and async tests can call it.

    client = OAuthClient.register(server.base_url, resource=server.mcp_url)
    request = client.authorization_request(scope="identity")
    tokens = client.exchange(authorize(request.url), request)     # `authorize`: the person at the page
    tokens = client.refresh(tokens)

A refused request raises `OAuthError` with the server's `error` code and HTTP status, so a test can assert on them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Final
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

REDIRECT_URI: Final = "http://127.0.0.1:8765/callback"  # never listened on: the redirect URL is handed back whole
CLIENT_NAME: Final = "vouchsim test client"
DEFAULT_SCOPE: Final = "identity"
HTTP_TIMEOUT: Final = 30.0


class OAuthError(Exception):
    """The server refused an OAuth request (or a redirect carried an error): `.error`, `.status`, `.description`."""

    def __init__(self, error: str, description: str = "", *, status: int = 0) -> None:
        super().__init__(f"{error}: {description}" if description else error)
        self.error = error
        self.description = description
        self.status = status


@dataclass(frozen=True)
class AuthorizationRequest:
    """One authorization URL and the PKCE verifier and `state` that belong to it."""

    url: str
    state: str
    code_verifier: str
    redirect_uri: str
    scope: str


@dataclass(frozen=True)
class TokenSet:
    """A token response (RFC 6749 §5.1). Its repr leaves the tokens out, so a failing test does not print them."""

    access_token: str = field(repr=False)
    token_type: str
    expires_in: int | None
    scope: str
    refresh_token: str | None = field(repr=False)

    @property
    def authorization(self) -> dict[str, str]:
        """The `Authorization` header that carries the access token."""
        return {"Authorization": f"Bearer {self.access_token}"}


def code_challenge(verifier: str) -> str:
    """RFC 7636 §4.2: BASE64URL(SHA256(ASCII(code_verifier))), without padding."""
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode("ascii")).digest()).rstrip(b"=").decode()


class OAuthClient:
    """A registered public client (`token_endpoint_auth_method: none`) with the authorization-code and refresh
    grants. Use `OAuthClient.register(...)`; `close()` (or `with`) closes its HTTP client."""

    def __init__(self, base_url: str, client_id: str, *, redirect_uri: str, resource: str | None) -> None:
        self.base_url = base_url.rstrip("/")
        self.client_id = client_id
        self.redirect_uri = redirect_uri
        self.resource = resource
        self._http = httpx.Client(timeout=HTTP_TIMEOUT, headers={"User-Agent": "vouchsim-testing"})

    @classmethod
    def register(
        cls,
        base_url: str,
        *,
        resource: str | None = None,
        client_name: str = CLIENT_NAME,
        redirect_uri: str = REDIRECT_URI,
    ) -> OAuthClient:
        """Register with the server's registration endpoint (RFC 7591 §3.1). `resource` (RFC 8707) is what
        authorization requests and token requests name: the MCP endpoint, say."""
        metadata = {
            "client_name": client_name,
            "redirect_uris": [redirect_uri],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code", "refresh_token"],
            "response_types": ["code"],
        }
        with httpx.Client(timeout=HTTP_TIMEOUT) as http:
            answer = http.post(f"{base_url.rstrip('/')}/oauth/register", json=metadata)
        document = _json_or_error(answer, expect=201)
        return cls(base_url, str(document["client_id"]), redirect_uri=redirect_uri, resource=resource)

    # --- the authorization request (RFC 6749 §4.1.1 with PKCE) ----------------------------------------------

    def authorization_request(self, *, scope: str = DEFAULT_SCOPE, **extra: str) -> AuthorizationRequest:
        """A fresh `state` and PKCE pair, and the authorization URL carrying them (`extra`: more parameters)."""
        verifier = secrets.token_urlsafe(48)
        state = secrets.token_urlsafe(16)
        params = {
            "response_type": "code",
            "client_id": self.client_id,
            "redirect_uri": self.redirect_uri,
            "scope": scope,
            "state": state,
            "code_challenge": code_challenge(verifier),
            "code_challenge_method": "S256",
        }
        if self.resource:
            params["resource"] = self.resource
        params.update(extra)
        url = f"{self.base_url}/oauth/authorize?{urlencode(params)}"
        return AuthorizationRequest(url, state, verifier, self.redirect_uri, scope)

    def authorization_url(self, *, scope: str = DEFAULT_SCOPE, **extra: str) -> str:
        """`authorization_request(...).url`, for a test that hands the URL to a client of its own."""
        return self.authorization_request(scope=scope, **extra).url

    # --- the token endpoint ----------------------------------------------------------------------------------

    def exchange(self, redirect_url: str, request: AuthorizationRequest) -> TokenSet:
        """The redirect back to the client (its URL) → tokens. Checks that it is for `request`'s redirect URI and
        `state` (compared in constant time) and names this issuer; an `error` in it raises OAuthError."""
        if not redirect_url.startswith(request.redirect_uri):
            raise OAuthError("invalid_request", f"the redirect goes to {redirect_url!r}, not {request.redirect_uri}")
        params = {key: values[0] for key, values in parse_qs(urlsplit(redirect_url).query).items()}
        if not hmac.compare_digest(params.get("state", "").encode(), request.state.encode()):
            raise OAuthError("invalid_request", "the redirect's state is not the request's")
        if params.get("iss", self.base_url).rstrip("/") != self.base_url:  # RFC 9207 §2.4
            raise OAuthError("invalid_request", f"the redirect names another issuer, {params.get('iss')!r}")
        if "error" in params:
            raise OAuthError(params["error"], params.get("error_description", ""))
        if "code" not in params:
            raise OAuthError("invalid_request", "the redirect carries no code")
        return self.exchange_code(params["code"], request.code_verifier, redirect_uri=request.redirect_uri)

    def exchange_code(self, code: str, code_verifier: str, *, redirect_uri: str | None = None) -> TokenSet:
        """The authorization-code grant (RFC 6749 §4.1.3, RFC 7636 §4.5)."""
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri or self.redirect_uri,
            "code_verifier": code_verifier,
        }
        return self._token(form)

    def refresh(self, tokens: TokenSet | str, *, scope: str | None = None) -> TokenSet:
        """The refresh-token grant (RFC 6749 §6); the server rotates the refresh token."""
        refresh_token = tokens if isinstance(tokens, str) else tokens.refresh_token
        if not refresh_token:
            raise OAuthError("invalid_request", "these tokens came without a refresh token")
        form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
        if scope is not None:
            form["scope"] = scope
        return self._token(form)

    def revoke(self, token: str) -> None:
        """RFC 7009: revoke an access or refresh token."""
        answer = self._http.post(f"{self.base_url}/oauth/revoke", data={"token": token, "client_id": self.client_id})
        if answer.status_code != 200:
            _json_or_error(answer, expect=200)

    def _token(self, form: dict[str, str]) -> TokenSet:
        form["client_id"] = self.client_id
        if self.resource:
            form["resource"] = self.resource
        document = _json_or_error(self._http.post(f"{self.base_url}/oauth/token", data=form), expect=200)
        expires_in = document.get("expires_in")
        return TokenSet(
            access_token=str(document["access_token"]),
            token_type=str(document.get("token_type", "Bearer")),
            expires_in=int(expires_in) if expires_in is not None else None,
            scope=str(document.get("scope", "")),
            refresh_token=document.get("refresh_token"),
        )

    # --- lifecycle --------------------------------------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> OAuthClient:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()


def _json_or_error(answer: httpx.Response, *, expect: int) -> dict[str, Any]:
    try:
        document = answer.json()
    except ValueError:
        document = None
    if answer.status_code == expect and isinstance(document, dict):
        return document
    if isinstance(document, dict) and "error" in document:
        raise OAuthError(str(document["error"]), str(document.get("error_description", "")), status=answer.status_code)
    status = answer.status_code
    raise OAuthError("unexpected_response", f"HTTP {status}: {answer.text[:200]}", status=status)
