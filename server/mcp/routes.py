"""`/mcp`: the OAuth-protected resource. For now it answers the RFC 9728 challenge and a minimal JSON-RPC
`initialize`/`ping`; the Streamable HTTP transport and the tools replace this (see the MCP issue)."""

from __future__ import annotations

import json
from typing import Any

from litestar import Request, Response, route
from litestar.di import NamedDependency

from server.core.issuer import resource_url
from server.core.runtime import Runtime
from server.oauth import scopes
from server.oauth.bearer import BearerError, authenticate, challenge
from server.oauth.routes import issuer_of
from server.storage.repositories.tokens import TokenRepository
from server.storage.session import DbSession

PROTOCOL_VERSION = "2025-06-18"


def _challenge_response(issuer: str, error: BearerError) -> Response[Any]:
    header = challenge(f"{issuer}/.well-known/oauth-protected-resource/mcp", scopes.DEFAULT_SCOPE, error)
    body = {"error": error.code or "unauthorized", "error_description": error.description}
    return Response(
        content=body,
        status_code=error.status,
        headers={"WWW-Authenticate": header},
        media_type="application/json",
    )


def _rpc(id_: Any, *, result: Any = None, error: dict[str, Any] | None = None) -> dict[str, Any]:
    message: dict[str, Any] = {"jsonrpc": "2.0", "id": id_}
    if error is not None:
        message["error"] = error
    else:
        message["result"] = result
    return message


@route("/mcp", http_method=["GET", "POST", "DELETE"], status_code=200, tags=["mcp"], include_in_schema=False)
async def mcp_endpoint(
    request: Request[Any, Any, Any], db: NamedDependency[DbSession], runtime: NamedDependency[Runtime]
) -> Response[Any]:
    issuer = issuer_of(request, runtime)
    try:
        await authenticate(
            TokenRepository(db), runtime.clock, request.headers.get("authorization"), resource_url(issuer)
        )
    except BearerError as error:
        return _challenge_response(issuer, error)
    if request.method != "POST":
        return Response(content=None, status_code=405, headers={"Allow": "POST"})
    try:
        message = json.loads(await request.body())
    except ValueError:
        return Response(content=_rpc(None, error={"code": -32700, "message": "Parse error"}), status_code=400)
    if not isinstance(message, dict) or message.get("jsonrpc") != "2.0" or not isinstance(message.get("method"), str):
        return Response(content=_rpc(None, error={"code": -32600, "message": "Invalid Request"}), status_code=400)
    if "id" not in message:
        return Response(content=None, status_code=202)
    if message["method"] == "initialize":
        return Response(
            content=_rpc(
                message["id"],
                result={
                    "protocolVersion": PROTOCOL_VERSION,
                    "capabilities": {"tools": {}},
                    "serverInfo": {"name": "vouchsim", "version": "0.1.0"},
                },
            )
        )
    if message["method"] == "ping":
        return Response(content=_rpc(message["id"], result={}))
    return Response(content=_rpc(message["id"], error={"code": -32601, "message": "Method not found"}))
