"""How the token, revocation and introspection routes hand a request to Authlib: the form (or, where allowed, JSON)
body read on the event loop, Authlib run off it, its answer as JSON with `Cache-Control: no-store`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, Response

from vouchsim.server.core.runtime import Runtime
from vouchsim.server.oauth.bridge import FormRequest, OAuthResult, run_authlib
from vouchsim.server.oauth.clients import ClientDirectory
from vouchsim.server.oauth.delegation_tokens import DelegationTokens
from vouchsim.server.oauth.engine import VouchAuthorizationServer
from vouchsim.server.oauth.routes.common import form_params, json_result, oauth_error_json, oauth_server
from vouchsim.server.storage.session import DbSession


async def run_endpoint(
    request: Request[Any, Any, Any],
    db: DbSession,
    runtime: Runtime,
    clients: ClientDirectory,
    issuer: str,
    path: str,
    answer: Callable[[VouchAuthorizationServer, FormRequest], OAuthResult],
    *,
    allow_json: bool = False,
    delegations: DelegationTokens | None = None,
) -> Response[Any]:
    """`answer`: the Authlib call that makes the response (`path`, as in `/oauth/{path}`, names the endpoint)."""
    params = await form_params(request, allow_json=allow_json)
    if params is None:
        kinds = "form-encoded or JSON" if allow_json else "application/x-www-form-urlencoded"
        return oauth_error_json("invalid_request", f"The body must be {kinds}.")
    server = oauth_server(db, runtime, issuer, delegations, clients)
    oauth_request = FormRequest("POST", f"{issuer}/oauth/{path}", params, dict(request.headers))
    try:
        result = await run_authlib(lambda: answer(server, oauth_request))
    except ValueError:
        # Authlib refuses to phrase an error that would echo characters RFC 6749 §5.2 forbids.
        return oauth_error_json("invalid_request", "A parameter contains invalid characters.")
    return json_result(result)
