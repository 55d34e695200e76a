"""The authorization endpoint (RFC 6749 §4.1 with PKCE, RFC 7636, and resource indicators, RFC 8707): it
validates the request, then sends the browser to the pairing or the consent page (`routes.page`); the answer to
the client, a code or `access_denied`, is `issue_code` or `deny` once the page is done."""

from __future__ import annotations

from typing import Any

from authlib.oauth2.rfc6749 import AccessDeniedError, OAuth2Error
from litestar import Request, Response, get
from litestar.datastructures import Cookie
from litestar.di import NamedDependency

from vouchsim.server import openapi
from vouchsim.server.core.issuer import resource_url
from vouchsim.server.core.runtime import Runtime
from vouchsim.server.oauth import wire
from vouchsim.server.oauth.authorization_code import normalise_resource
from vouchsim.server.oauth.authorize import (
    Approved,
    AuthorizationFlow,
    RequestSummary,
    ValidatedRequest,
    prompt_none_error,
    prompt_values,
)
from vouchsim.server.oauth.bridge import FormRequest, run_authlib
from vouchsim.server.oauth.clients import ClientDirectory
from vouchsim.server.oauth.engine import VouchAuthorizationServer
from vouchsim.server.oauth.routes.common import error_page, oauth_server, redirect, to_client
from vouchsim.server.oauth.routes.page_context import PAGE_DEPENDENCIES, page_context
from vouchsim.server.oauth.views import UserView
from vouchsim.server.storage.session import DbSession


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
    dependencies={"flow": PAGE_DEPENDENCIES["flow"]},
)
async def authorize(
    request: Request[Any, Any, Any],
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    clients: NamedDependency[ClientDirectory],
    issuer: NamedDependency[str],
    flow: NamedDependency[AuthorizationFlow],
) -> Response[Any]:
    """RFC 6749 §4.1.1 with PKCE (S256) and RFC 8707 `resource`: validates, then pairing or consent."""
    server = oauth_server(db, runtime, issuer, clients=clients)
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
            return to_client(server.handle_error_response(oauth_request, error), None)
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
    # The browser only now: a request refused above leaves no browser behind.
    page = await page_context(request, issuer, flow, runtime)
    browser = page.browser
    prompt = prompt_values(data.get("prompt"))
    if failure := prompt_none_error(prompt, browser.user_id is not None):
        refusal = OAuth2Error(failure[1], state=validated.state, redirect_uri=validated.redirect_uri, error=failure[0])
        return to_client(server.handle_error_response(oauth_request, refusal))
    cookies = page.cookies
    request_id = await flow.open(browser, validated)
    # `prompt=consent`: the consent page, which a signed-in browser always gets anyway (nothing is approved
    # without a page). `prompt=login`: pair with the device again, even from a signed-in browser.
    if browser.user_id is not None and "login" not in prompt:
        return redirect(f"/oauth/authorize/requests/{request_id}/consent", cookies=cookies)
    pairing_id = await flow.start_pairing(browser, request_id, issuer)
    return redirect(f"/oauth/authorize/pairing/{pairing_id}", cookies=cookies)


# -- the answer to the client, once the page is done ---------------------------------------------------------
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


async def deny(server: VouchAuthorizationServer, summary: RequestSummary, description: str) -> Response[Any]:
    error = AccessDeniedError(description, redirect_uri=summary.redirect_uri, state=summary.state)
    return to_client(server.handle_error_response(None, error))


async def issue_code(
    db: DbSession,
    runtime: Runtime,
    clients: ClientDirectory,
    issuer: str,
    approved: Approved,
    cookies: list[Cookie] | None = None,
) -> Response[Any]:
    server = oauth_server(db, runtime, issuer, clients=clients)
    request = _authorize_request(issuer, approved.request)
    user = UserView(approved.user_id, approved.connection_id)
    try:
        result = await run_authlib(lambda: server.authorize(request, user))
    except OAuth2Error as error:
        # The client was checked again and is no longer usable (its metadata document became unreachable or
        # invalid since the request was opened, or it was retired): no code, and no redirect to it either.
        return error_page("This sign-in link is not valid", error.description or error.error)
    return to_client(result, cookies)
