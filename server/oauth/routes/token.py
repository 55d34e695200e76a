"""The token endpoint (RFC 6749 §3.2): the authorization code grant (`oauth.authorization_code`, with PKCE) and the
refresh token grant (`oauth.refresh_token`, rotating)."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency

from vouchsim.server import openapi
from vouchsim.server.core.runtime import Runtime
from vouchsim.server.oauth import wire
from vouchsim.server.oauth.clients import ClientDirectory
from vouchsim.server.oauth.routes.endpoints import run_endpoint
from vouchsim.server.storage.session import DbSession


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
    request: Request[Any, Any, Any],
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    clients: NamedDependency[ClientDirectory],
    issuer: NamedDependency[str],
) -> Response[Any]:
    """RFC 6749 §3.2: authorization_code (with PKCE) and refresh_token (rotating)."""
    return await run_endpoint(
        request, db, runtime, clients, issuer, "token", lambda server, req: server.create_token_response(req)
    )
