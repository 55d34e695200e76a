"""What the OAuth routes share: the per-request authorization server, the request body's parameters, and the
answers (JSON with `Cache-Control: no-store`, redirects, the pages' template response and its security headers).

Errors are translated once, by where they happen (STYLE.md §5): JSON with `Cache-Control: no-store` at the
token, revocation and introspection endpoints; a redirect with `error`, `state`, `iss` at the authorization
endpoint once the client and redirect URI are known good, and a readable page before that.
"""

from __future__ import annotations

import json
from typing import Any

from litestar import Request, Response
from litestar.datastructures import Cookie
from litestar.response import Template

from vouchsim.server.core import browser_urls
from vouchsim.server.core.runtime import Runtime
from vouchsim.server.oauth import redirects
from vouchsim.server.oauth.bridge import OAuthResult
from vouchsim.server.oauth.clients import ClientDirectory
from vouchsim.server.oauth.delegation_tokens import DelegationTokens
from vouchsim.server.oauth.engine import VouchAuthorizationServer
from vouchsim.server.oauth.store import OAuthStore
from vouchsim.server.storage.repositories.clients import ClientRepository
from vouchsim.server.storage.repositories.tokens import TokenRepository
from vouchsim.server.storage.session import DbSession

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def oauth_server(
    db: DbSession,
    runtime: Runtime,
    issuer: str,
    delegations: DelegationTokens | None = None,
    clients: ClientDirectory | None = None,
) -> VouchAuthorizationServer:
    """`clients`: how client_ids are looked up (CIMD included); None where no client is looked up (a denial)."""
    store = OAuthStore(ClientRepository(db), TokenRepository(db), runtime.clock, runtime.settings, clients)
    return VouchAuthorizationServer(store, issuer, runtime.settings, delegations, hmac_key=runtime.hmac_key)


# -- JSON ----------------------------------------------------------------------------------------------------
def json_result(result: OAuthResult) -> Response[Any]:
    headers = {name: value for name, value in result.headers if name.lower() != "content-type"}
    headers.update(NO_STORE)
    return Response(content=result.body, status_code=result.status, headers=headers, media_type="application/json")


def oauth_error_json(error: str, description: str, status: int = 400) -> Response[Any]:
    return Response(
        content={"error": error, "error_description": description},
        status_code=status,
        headers=NO_STORE,
        media_type="application/json",
    )


async def form_params(request: Request[Any, Any, Any], *, allow_json: bool = False) -> dict[str, list[str]] | None:
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


# -- redirects -----------------------------------------------------------------------------------------------
def redirect(location: str, status: int = 303, cookies: list[Cookie] | None = None) -> Response[Any]:
    return Response(content=None, status_code=status, headers={"Location": location, **NO_STORE}, cookies=cookies or [])


def to_client(result: OAuthResult, cookies: list[Cookie] | None = None) -> Response[Any]:
    """Back to the client's redirect URI; 303 so a browser that POSTed the form follows with a GET."""
    assert result.location is not None
    return redirect(result.location, 303, cookies)


# -- pages ---------------------------------------------------------------------------------------------------
def _csp(form_targets: list[str]) -> str:
    form_action = " ".join(["'self'", *(target for target in form_targets if target)])
    return (
        "default-src 'none'; img-src 'self'; style-src 'self'; script-src 'self'; connect-src 'self'; "
        f"form-action {form_action}; frame-ancestors 'none'; base-uri 'none'"
    )


def _redirect_origin(redirect_uri: str) -> str:
    """The CSP source for a redirect target: browsers apply form-action to the redirect after a POST."""
    try:
        parts = browser_urls.parse_redirect_target(redirect_uri)  # the host a browser goes to, in ASCII (punycode)
    except browser_urls.UnsafeUrl:
        return ""  # never stored (the authorization endpoint refuses it); nothing to allow
    if isinstance(parts, browser_urls.AppUrl):
        return f"{parts.scheme}:"  # handed to the app that claimed the scheme: no host for CSP to name
    if redirects.is_loopback(redirect_uri):
        return f"{parts.scheme}://{parts.host}:*"
    port = "" if parts.port is None else f":{parts.port}"
    return f"{parts.scheme}://{parts.host}{port}"


def page_response(
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
    return page_response("error.html", {"title": title, "message": message}, status=status)
