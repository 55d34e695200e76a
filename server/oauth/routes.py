"""The authorization server over HTTP: the only module of `server.oauth` that knows Litestar.

Errors are translated once, by where they happen (STYLE.md §5): JSON with `Cache-Control: no-store` at the
token, revocation and introspection endpoints; a redirect with `error`, `state`, `iss` at the authorization
endpoint once the client and redirect URI are known good, and a readable page before that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from authlib.oauth2.rfc6749 import OAuth2Error
from authlib.oauth2.rfc7591 import InvalidClientMetadataError
from litestar import Request, Response, get, post
from litestar.datastructures import Cookie
from litestar.di import NamedDependency
from litestar.params import FromPath
from litestar.response import Template
from litestar.static_files import create_static_files_router

from vouchsim.server import openapi
from vouchsim.server.core.errors import VouchsimError
from vouchsim.server.core.issuer import derive_issuer, is_secure, resource_url
from vouchsim.server.core.runtime import Runtime
from vouchsim.server.delegation.service import DelegationService
from vouchsim.server.oauth import redirects, scopes, wire
from vouchsim.server.oauth.authorize import Approved, AuthorizationFlow, Browser, RequestSummary, ValidatedRequest
from vouchsim.server.oauth.engine import (
    FormRequest,
    OAuthResult,
    VouchAuthorizationServer,
    normalise_resource,
    run_authlib,
)
from vouchsim.server.oauth.metadata import authorization_server_metadata, protected_resource_metadata
from vouchsim.server.oauth.registration import Registration
from vouchsim.server.oauth.store import OAuthStore
from vouchsim.server.pairing import errors as pairing_errors
from vouchsim.server.pairing.qr import render_png
from vouchsim.server.pairing.service import PairingService
from vouchsim.server.storage.repositories.authorizations import AuthorizationRepository
from vouchsim.server.storage.repositories.clients import ClientRepository
from vouchsim.server.storage.repositories.connections import ConnectionRepository
from vouchsim.server.storage.repositories.devices import DeviceRepository
from vouchsim.server.storage.repositories.pairings import PairingRepository
from vouchsim.server.storage.repositories.tokens import TokenRepository
from vouchsim.server.storage.session import DbSession

TEMPLATES = Path(__file__).with_name("templates")
STATIC = Path(__file__).with_name("static")
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


# -- plumbing ------------------------------------------------------------------------------------------------
def issuer_of(request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]) -> str:
    return derive_issuer(
        runtime.settings.issuer,
        scheme=request.url.scheme,
        host=request.headers.get("host"),
        forwarded_proto=request.headers.get("x-forwarded-proto"),
    )


def _server(
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    issuer: str,
    delegations: DelegationService | None = None,
) -> VouchAuthorizationServer:
    store = OAuthStore(ClientRepository(db), TokenRepository(db), runtime.clock, runtime.settings)
    return VouchAuthorizationServer(store, issuer, runtime.settings, delegations)


def _flow(db: NamedDependency[DbSession], runtime: NamedDependency[Runtime]) -> AuthorizationFlow:
    pairing = PairingService(PairingRepository(db), runtime.clock, runtime.settings, runtime.hmac_key)
    return AuthorizationFlow(
        AuthorizationRepository(db),
        ConnectionRepository(db),
        DeviceRepository(db),
        pairing,
        runtime.clock,
        runtime.settings,
        runtime.hmac_key,
    )


def _json(result: OAuthResult) -> Response[Any]:
    headers = {name: value for name, value in result.headers if name.lower() != "content-type"}
    headers.update(NO_STORE)
    return Response(content=result.body, status_code=result.status, headers=headers, media_type="application/json")


def _oauth_error_json(error: str, description: str, status: int = 400) -> Response[Any]:
    return Response(
        content={"error": error, "error_description": description},
        status_code=status,
        headers=NO_STORE,
        media_type="application/json",
    )


async def _form_params(request: Request[Any, Any, Any], *, allow_json: bool = False) -> dict[str, list[str]] | None:
    """The body's parameters; None when it is neither a form nor (where allowed) a JSON object."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded" or content_type == "multipart/form-data":
        form = await request.form()
        params: dict[str, list[str]] = {}
        for key, value in form.multi_items():
            if isinstance(value, str):
                params.setdefault(key, []).append(value)
        return params
    if allow_json and content_type == "application/json":
        try:
            data = json.loads(await request.body() or b"null")
        except ValueError:
            return None
        if not isinstance(data, dict):
            return None
        return {key: [value] for key, value in data.items() if isinstance(value, str)}
    return None


def _browser_cookie_name(issuer: str) -> str:
    # The __Host- prefix pins the cookie to this exact origin, but browsers accept it only over https.
    return "__Host-vouchsim_browser" if is_secure(issuer) else "vouchsim_browser"


def _browser_cookie(issuer: str, browser: Browser, runtime: NamedDependency[Runtime]) -> list[Cookie]:
    if not browser.is_new:
        return []
    return [
        Cookie(
            key=_browser_cookie_name(issuer),
            value=browser.secret,
            path="/",
            httponly=True,
            samesite="lax",
            secure=is_secure(issuer),
            max_age=runtime.settings.browser_session_ttl,
        )
    ]


def _csp(form_targets: list[str]) -> str:
    form_action = " ".join(["'self'", *form_targets])
    return (
        "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )


def _redirect_origin(redirect_uri: str) -> str:
    """The CSP source for a redirect target: browsers apply form-action to the redirect after a POST."""
    parts = urlsplit(redirect_uri)
    if redirects.is_loopback(redirect_uri):
        return f"{parts.scheme}://{parts.hostname if ':' not in (parts.hostname or '') else f'[{parts.hostname}]'}:*"
    return f"{parts.scheme}://{parts.netloc}"


def page(
    name: str,
    context: dict[str, Any],
    *,
    status: int = 200,
    cookies: list[Cookie] | None = None,
    redirect_uri: str | None = None,
) -> Template:
    headers = {
        "Content-Security-Policy": _csp([_redirect_origin(redirect_uri)] if redirect_uri else []),
        "X-Frame-Options": "DENY",
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        **NO_STORE,
    }
    return Template(template_name=name, context=context, status_code=status, headers=headers, cookies=cookies or [])


def error_page(title: str, message: str, *, status: int = 400) -> Template:
    return page("error.html", {"title": title, "message": message}, status=status)


def _redirect(location: str, status: int = 303, cookies: list[Cookie] | None = None) -> Response[Any]:
    return Response(content=None, status_code=status, headers={"Location": location, **NO_STORE}, cookies=cookies or [])


def _to_client(result: OAuthResult, cookies: list[Cookie] | None = None) -> Response[Any]:
    """Back to the client's redirect URI; 303 so a browser that POSTed the form follows with a GET."""
    assert result.location is not None
    return _redirect(result.location, 303, cookies)


def _authorize_request(issuer: str, params: ValidatedRequest) -> FormRequest:
    query: dict[str, list[str]] = {
        "response_type": ["code"],
        "client_id": [params.client_id],
        "redirect_uri": [params.redirect_uri],
        "scope": [params.scope],
        "code_challenge": [params.code_challenge],
        "code_challenge_method": [params.code_challenge_method],
        "resource": [params.resource],
    }
    if params.state is not None:
        query["state"] = [params.state]
    return FormRequest("GET", f"{issuer}/oauth/authorize", query, {})


async def _deny(server: VouchAuthorizationServer, summary: RequestSummary, description: str) -> Response[Any]:
    from authlib.oauth2.rfc6749 import AccessDeniedError

    error = AccessDeniedError(description, redirect_uri=summary.redirect_uri, state=summary.state)
    return _to_client(server.handle_error_response(None, error))


async def _issue_code(
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    issuer: str,
    approved: Approved,
    cookies: list[Cookie] | None = None,
) -> Response[Any]:
    from vouchsim.server.oauth.views import UserView

    server = _server(db, runtime, issuer)
    request = _authorize_request(issuer, approved.request)
    user = UserView(approved.user_id, approved.connection_id)
    result = await run_authlib(lambda: server.authorize(request, user))
    return _to_client(result, cookies)


# -- discovery -----------------------------------------------------------------------------------------------
@get(["/.well-known/oauth-authorization-server", "/.well-known/openid-configuration"], tags=["discovery"])
async def authorization_server_metadata_route(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]
) -> dict[str, Any]:
    """RFC 8414 authorization server metadata."""
    return authorization_server_metadata(issuer_of(request, runtime))


@get(["/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp"], tags=["discovery"])
async def protected_resource_metadata_route(
    request: Request[Any, Any, Any], runtime: NamedDependency[Runtime]
) -> dict[str, Any]:
    """RFC 9728 protected resource metadata for the MCP endpoint."""
    return protected_resource_metadata(issuer_of(request, runtime))


# -- registration --------------------------------------------------------------------------------------------
class _JsonPayload:
    def __init__(self, data: Any) -> None:
        self.data = data


class _JsonRequest:
    def __init__(self, uri: str, data: Any, headers: dict[str, str]) -> None:
        self.method = "POST"
        self.uri = uri
        self.headers = headers
        self.payload = _JsonPayload(data)
        self.credential: Any = None


@post(
    "/oauth/register",
    tags=["oauth"],
    status_code=201,
    operation_class=openapi.operation(body=openapi.request_body(wire.ClientMetadata)),
    responses={
        201: openapi.response(wire.ClientInformation, "The client is registered (RFC 7591 §3.2.1)."),
        **openapi.error_responses(400),
    },
)
async def register(
    request: Request[Any, Any, Any], db: NamedDependency[DbSession], runtime: NamedDependency[Runtime]
) -> Response[Any]:
    """RFC 7591 dynamic client registration."""
    try:
        data = json.loads(await request.body() or b"null")
    except ValueError:
        return _oauth_error_json("invalid_client_metadata", "The body must be a JSON object.")
    if not isinstance(data, dict):
        return _oauth_error_json("invalid_client_metadata", "The body must be a JSON object.")
    issuer = issuer_of(request, runtime)
    server = _server(db, runtime, issuer)
    endpoint = Registration(server, issuer, server.store.save_client, int(runtime.clock.now().timestamp()))
    json_request = _JsonRequest(f"{issuer}/oauth/register", data, dict(request.headers))
    try:
        status, body, _headers = await run_authlib(lambda: endpoint.create_registration_response(json_request))
    except ValueError:
        return _oauth_error_json("invalid_client_metadata", "A field contains characters that are not allowed.")
    except InvalidClientMetadataError as error:
        return _oauth_error_json(error.error, error.description or "Invalid client metadata.")
    except OAuth2Error as error:
        return _oauth_error_json(error.error, error.description or error.error)
    return Response(content=body, status_code=status, headers=NO_STORE, media_type="application/json")


# -- the authorization endpoint and its pages ----------------------------------------------------------------
async def _browser(request: Request[Any, Any, Any], flow: AuthorizationFlow, issuer: str) -> Browser:
    return await flow.browser(request.cookies.get(_browser_cookie_name(issuer)))


@dataclass(frozen=True)
class _PagePost:
    """A form posted from one of the authorization pages, with the browser that posted it."""

    issuer: str
    flow: AuthorizationFlow
    browser: Browser
    form: dict[str, list[str]]

    def field(self, name: str) -> str:
        return (self.form.get(name) or [""])[0]

    @property
    def csrf_ok(self) -> bool:
        return self.flow.csrf_ok(self.browser, self.field("csrf"))


async def _page_post(request: Request[Any, Any, Any], db: DbSession, runtime: Runtime) -> _PagePost:
    issuer = issuer_of(request, runtime)
    flow = _flow(db, runtime)
    browser = await _browser(request, flow, issuer)
    return _PagePost(issuer, flow, browser, await _form_params(request) or {})


def _csrf_failed() -> Template:
    return error_page("This form has expired", "Reload the page and try again.", status=403)


@get(
    "/oauth/authorize",
    tags=["oauth"],
    status_code=303,
    operation_class=openapi.operation(parameters=openapi.query_parameters(wire.AuthorizationQuery)),
    responses={
        303: openapi.response(
            None,
            "On to the pairing or consent page; or, once the client and redirect URI are known good, back to the "
            "client with `error`, `state` and `iss` (RFC 6749 §4.1.2.1, RFC 9207).",
        ),
        **openapi.error_responses(400, media_type=openapi.HTML),
    },
)
async def authorize(
    request: Request[Any, Any, Any], db: NamedDependency[DbSession], runtime: NamedDependency[Runtime]
) -> Response[Any]:
    """RFC 6749 §4.1.1 with PKCE (S256) and RFC 8707 `resource`: validates, then pairing or consent."""
    issuer = issuer_of(request, runtime)
    server = _server(db, runtime, issuer)
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    oauth_request = FormRequest("GET", f"{issuer}/oauth/authorize", params, dict(request.headers))
    try:
        grant = await run_authlib(lambda: server.get_consent_grant(oauth_request))
    except ValueError:
        # Authlib could not even phrase its error: a parameter holds characters RFC 6749 §5.2 forbids there.
        return error_page("This sign-in link is not valid", "A parameter of the request contains invalid characters.")
    except OAuth2Error as error:
        if error.redirect_uri:
            return _to_client(server.handle_error_response(oauth_request, error), None)
        # Before the client and its redirect URI are known good, never redirect (RFC 6749 §4.1.2.1).
        return error_page("This sign-in link is not valid", error.description or error.error)
    data = oauth_request.payload.data
    validated = ValidatedRequest(
        client_id=grant.client.client_id,
        redirect_uri=grant.redirect_uri,
        scope=oauth_request.scope,
        state=data.get("state"),
        code_challenge=data["code_challenge"],
        code_challenge_method=data["code_challenge_method"],
        resource=normalise_resource(data.get("resource") or resource_url(issuer)),
    )
    flow = _flow(db, runtime)
    browser = await _browser(request, flow, issuer)
    cookies = _browser_cookie(issuer, browser, runtime)
    request_id = await flow.open(browser, validated)
    if browser.user_id is not None:
        return _redirect(f"/oauth/authorize/requests/{request_id}/consent", cookies=cookies)
    pairing_id = await flow.start_pairing(browser, request_id, issuer)
    return _redirect(f"/oauth/authorize/pairing/{pairing_id}", cookies=cookies)


def _pairing_context(
    flow: AuthorizationFlow, browser: Browser, view: Any, summary: RequestSummary, now_ts: float, **extra: Any
) -> dict[str, Any]:
    return {
        "view": view,
        "summary": summary,
        "scope_descriptions": [(s, scopes.DESCRIPTIONS.get(s, s)) for s in summary.scopes],
        "csrf": flow.csrf_token(browser),
        "expires_in": max(0, int(view.expires_at.timestamp() - now_ts)),
        "code_expires_in": (max(0, int(view.code_expires_at.timestamp() - now_ts)) if view.code_expires_at else None),
        **extra,
    }


async def _pairing_response(
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    request: Request[Any, Any, Any],
    pairing_id: str,
    *,
    status: int = 200,
    error: str | None = None,
) -> Response[Any]:
    issuer = issuer_of(request, runtime)
    flow = _flow(db, runtime)
    browser = await _browser(request, flow, issuer)
    try:
        view, summary = await flow.pairing_view(browser, pairing_id)
    except VouchsimError as failure:
        return error_page("Pairing not found", failure.description, status=404)
    if view.status == "declined":
        try:
            summary = await flow.close(browser, summary.request_id)
        except VouchsimError:
            return error_page("Declined", "The pairing was declined on your device.", status=403)
        return await _deny(_server(db, runtime, issuer), summary, "The pairing was declined on the trusted device.")
    context = _pairing_context(flow, browser, view, summary, runtime.clock.now().timestamp(), error=error)
    return page("pairing.html", context, status=status, redirect_uri=summary.redirect_uri)


@get("/oauth/authorize/pairing/{pairing_id:str}", tags=["authorization page"], include_in_schema=False)
async def pairing_page(
    request: Request[Any, Any, Any],
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    pairing_id: FromPath[str],
) -> Response[Any]:
    return await _pairing_response(db, runtime, request, pairing_id)


@get("/oauth/authorize/pairing/{pairing_id:str}/qr.png", tags=["authorization page"], include_in_schema=False)
async def pairing_qr(
    request: Request[Any, Any, Any],
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    pairing_id: FromPath[str],
) -> Response[Any]:
    issuer = issuer_of(request, runtime)
    flow = _flow(db, runtime)
    browser = await _browser(request, flow, issuer)
    try:
        payload = await flow.qr_payload(browser, pairing_id, issuer)
    except VouchsimError as failure:
        return Response(
            content=failure.description, status_code=failure.status, media_type="text/plain", headers=NO_STORE
        )
    return Response(content=render_png(payload), media_type="image/png", headers=NO_STORE)


@get("/oauth/authorize/pairing/{pairing_id:str}/status", tags=["authorization page"], include_in_schema=False)
async def pairing_status(
    request: Request[Any, Any, Any],
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    pairing_id: FromPath[str],
) -> Response[Any]:
    """What the page's script polls to update itself while the person scans and approves."""
    issuer = issuer_of(request, runtime)
    flow = _flow(db, runtime)
    browser = await _browser(request, flow, issuer)
    try:
        view, _summary = await flow.pairing_view(browser, pairing_id)
    except VouchsimError as failure:
        return _oauth_error_json(failure.code, failure.description, failure.status)
    now = runtime.clock.now().timestamp()
    return Response(
        content={
            "status": view.status,
            "device_name": view.device_name,
            "attempts_left": view.attempts_left,
            "expires_in": max(0, int(view.expires_at.timestamp() - now)),
        },
        headers=NO_STORE,
        media_type="application/json",
    )


@post("/oauth/authorize/pairing/{pairing_id:str}", tags=["authorization page"], include_in_schema=False)
async def pairing_submit(
    request: Request[Any, Any, Any],
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    pairing_id: FromPath[str],
) -> Response[Any]:
    """The pairing code typed by the person. Failures re-render the page (and are committed, not rolled back)."""
    post = await _page_post(request, db, runtime)
    if not post.csrf_ok:
        return _csrf_failed()
    issuer, flow, browser = post.issuer, post.flow, post.browser
    try:
        approved = await flow.submit_code(browser, pairing_id, post.field("code"))
    except pairing_errors.PairingDeclined:
        return await _pairing_response(db, runtime, request, pairing_id)
    except pairing_errors.WrongPairingCode as failure:
        return await _pairing_response(db, runtime, request, pairing_id, status=400, error=failure.description)
    except VouchsimError as failure:
        return await _pairing_response(
            db, runtime, request, pairing_id, status=failure.status, error=failure.description
        )
    return await _issue_code(db, runtime, issuer, approved)


@post("/oauth/authorize/requests/{request_id:str}/pair", tags=["authorization page"], include_in_schema=False)
async def restart_pairing(
    request: Request[Any, Any, Any],
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    request_id: FromPath[str],
) -> Response[Any]:
    """A fresh QR for the same request (after expiry or too many wrong codes, or to use another device)."""
    post = await _page_post(request, db, runtime)
    if not post.csrf_ok:
        return _csrf_failed()
    issuer, flow, browser = post.issuer, post.flow, post.browser
    try:
        pairing_id = await flow.start_pairing(browser, request_id, issuer)
    except VouchsimError as failure:
        return error_page("Start again from the application", failure.description, status=failure.status)
    return _redirect(f"/oauth/authorize/pairing/{pairing_id}")


@post("/oauth/authorize/requests/{request_id:str}/deny", tags=["authorization page"], include_in_schema=False)
async def deny(
    request: Request[Any, Any, Any],
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    request_id: FromPath[str],
) -> Response[Any]:
    post = await _page_post(request, db, runtime)
    if not post.csrf_ok:
        return _csrf_failed()
    issuer, flow, browser = post.issuer, post.flow, post.browser
    try:
        summary = await flow.close(browser, request_id)
    except VouchsimError as failure:
        return error_page("Nothing to deny", failure.description, status=failure.status)
    return await _deny(_server(db, runtime, issuer), summary, "The user denied the request.")


@get("/oauth/authorize/requests/{request_id:str}/consent", tags=["authorization page"], include_in_schema=False)
async def consent_page(
    request: Request[Any, Any, Any],
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    request_id: FromPath[str],
) -> Response[Any]:
    issuer = issuer_of(request, runtime)
    flow = _flow(db, runtime)
    browser = await _browser(request, flow, issuer)
    try:
        summary = await flow.summary(browser, request_id)
    except VouchsimError as failure:
        return error_page("Request not found", failure.description, status=failure.status)
    if browser.user_id is None:
        pairing_id = await flow.start_pairing(browser, request_id, issuer)
        return _redirect(f"/oauth/authorize/pairing/{pairing_id}")
    context = {
        "summary": summary,
        "csrf": flow.csrf_token(browser),
        "scope_descriptions": [(s, scopes.DESCRIPTIONS.get(s, s)) for s in summary.scopes],
    }
    return page("consent.html", context, redirect_uri=summary.redirect_uri)


@post("/oauth/authorize/requests/{request_id:str}/consent", tags=["authorization page"], include_in_schema=False)
async def consent_submit(
    request: Request[Any, Any, Any],
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    request_id: FromPath[str],
) -> Response[Any]:
    post = await _page_post(request, db, runtime)
    if not post.csrf_ok:
        return _csrf_failed()
    issuer, flow, browser = post.issuer, post.flow, post.browser
    try:
        approved = await flow.consent(browser, request_id)
    except VouchsimError as failure:
        return error_page("Could not authorize", failure.description, status=failure.status)
    return await _issue_code(db, runtime, issuer, approved)


# -- token, revocation, introspection ------------------------------------------------------------------------
async def _token_endpoint(
    request: Request[Any, Any, Any],
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    name: str,
    *,
    allow_json: bool = False,
    delegations: DelegationService | None = None,
) -> Response[Any]:
    params = await _form_params(request, allow_json=allow_json)
    if params is None:
        kinds = "form-encoded or JSON" if allow_json else "application/x-www-form-urlencoded"
        return _oauth_error_json("invalid_request", f"The body must be {kinds}.")
    issuer = issuer_of(request, runtime)
    server = _server(db, runtime, issuer, delegations)
    oauth_request = FormRequest("POST", f"{issuer}/oauth/{name}", params, dict(request.headers))
    endpoint = "revocation" if name == "revoke" else "introspection"
    try:
        if name == "token":
            result = await run_authlib(lambda: server.create_token_response(oauth_request))
        else:
            result = await run_authlib(lambda: server.create_endpoint_response(endpoint, oauth_request))
    except ValueError:
        # Authlib refuses to phrase an error that would echo characters RFC 6749 §5.2 forbids.
        return _oauth_error_json("invalid_request", "A parameter contains invalid characters.")
    return _json(result)


@post(
    "/oauth/token",
    tags=["oauth"],
    status_code=200,
    operation_class=openapi.operation(body=openapi.request_body(wire.TokenForm, openapi.FORM)),
    responses={
        200: openapi.response(wire.TokenResponse, "Tokens (RFC 6749 §5.1)."),
        **openapi.error_responses(400, 401),
    },
)
async def token(
    request: Request[Any, Any, Any], db: NamedDependency[DbSession], runtime: NamedDependency[Runtime]
) -> Response[Any]:
    """RFC 6749 §3.2: authorization_code (with PKCE) and refresh_token (rotating)."""
    return await _token_endpoint(request, db, runtime, "token")


@post(
    "/oauth/revoke",
    tags=["oauth"],
    status_code=200,
    operation_class=openapi.operation(body=openapi.request_body(wire.RevocationForm, openapi.FORM, openapi.JSON)),
    responses={
        200: openapi.response(dict[str, str], "Revoked, or nothing to revoke (RFC 7009 §2.2)."),
        **openapi.error_responses(400, 401),
    },
)
async def revoke(
    request: Request[Any, Any, Any], db: NamedDependency[DbSession], runtime: NamedDependency[Runtime]
) -> Response[Any]:
    """RFC 7009 token revocation; form-encoded or JSON `{"token", "client_id"}`."""
    return await _token_endpoint(request, db, runtime, "revoke", allow_json=True)


@post(
    "/oauth/introspect",
    tags=["oauth"],
    status_code=200,
    operation_class=openapi.operation(body=openapi.request_body(wire.IntrospectionForm, openapi.FORM)),
    responses={
        200: openapi.response(wire.IntrospectionResponse, "The token's state (RFC 7662 §2.2)."),
        **openapi.error_responses(400, 401),
    },
)
async def introspect(
    request: Request[Any, Any, Any],
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    delegations: NamedDependency[DelegationService],
) -> Response[Any]:
    """RFC 7662 token introspection (client authentication required); delegation tokens too."""
    return await _token_endpoint(request, db, runtime, "introspect", delegations=delegations.within(db))


@get("/.well-known/jwks.json", tags=["discovery"])
async def jwks(delegations: NamedDependency[DelegationService]) -> Response[Any]:
    """The keys that sign delegation tokens (RFC 7517), retired ones included until their tokens have expired."""
    return Response(
        content=await delegations.jwks(),
        media_type="application/json",
        headers={"Cache-Control": "public, max-age=60"},
    )


static_files = create_static_files_router(path="/static", directories=[STATIC], include_in_schema=False)

oauth_routes: list[Any] = [
    authorization_server_metadata_route,
    protected_resource_metadata_route,
    register,
    authorize,
    pairing_page,
    pairing_qr,
    pairing_status,
    pairing_submit,
    restart_pairing,
    deny,
    consent_page,
    consent_submit,
    token,
    revoke,
    introspect,
    jwks,
    static_files,
]
