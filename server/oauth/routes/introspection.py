"""The introspection endpoint (RFC 7662); the endpoint itself is `oauth.introspection`."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, post
from litestar.di import NamedDependency

from vouchsim.server import openapi
from vouchsim.server.core.runtime import Runtime
from vouchsim.server.oauth import wire
from vouchsim.server.oauth.clients import ClientDirectory
from vouchsim.server.oauth.delegation_tokens import DelegationTokens
from vouchsim.server.oauth.routes.endpoints import run_endpoint
from vouchsim.server.storage.session import DbSession


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
    clients: NamedDependency[ClientDirectory],
    issuer: NamedDependency[str],
    delegation_tokens: NamedDependency[DelegationTokens],
) -> Response[Any]:
    """RFC 7662 token introspection (client authentication required); delegation tokens too."""
    return await run_endpoint(
        request,
        db,
        runtime,
        clients,
        issuer,
        "introspect",
        lambda server, req: server.create_endpoint_response("introspection", req),
        delegations=delegation_tokens.within(db),
    )
