"""The revocation endpoint (RFC 7009); the endpoint itself is `oauth.revocation`."""

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
    request: Request[Any, Any, Any],
    db: NamedDependency[DbSession],
    runtime: NamedDependency[Runtime],
    clients: NamedDependency[ClientDirectory],
    issuer: NamedDependency[str],
    delegation_tokens: NamedDependency[DelegationTokens],
) -> Response[Any]:
    """RFC 7009 token revocation; form-encoded or JSON `{"token", "client_id"}`. A delegation token revoked by the
    agent client holding it revokes its delegation."""
    return await run_endpoint(
        request,
        db,
        runtime,
        clients,
        issuer,
        "revoke",
        lambda server, req: server.create_endpoint_response("revocation", req),
        allow_json=True,
        delegations=delegation_tokens.within(db),
    )
