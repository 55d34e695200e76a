"""`/mcp` over HTTP: the only module of `server.mcp` that knows Litestar.

Every request is checked in the same order: its `Origin` (403 for a foreign web origin, against DNS
rebinding), its bearer token (401 with the RFC 9728 challenge), then its body (413 over 1 MiB). Errors are
translated here, once: a JSON-RPC error object with the HTTP status of `server.mcp.errors`; `WWW-Authenticate`
for a refused token (401) or a missing scope (403, `insufficient_scope`). Nothing on `/mcp` answers 500: a
failure of ours inside a call is a JSON-RPC -32603 (transport.py), one before it a 503.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response, delete, get, post
from litestar.exceptions import HTTPException
from litestar.response import Stream

from vouchsim.server.http.issuer import issuer_of
from vouchsim.server.mcp import jsonrpc
from vouchsim.server.mcp.errors import (
    UNAUTHORIZED,
    BodyTooLarge,
    InvalidRequest,
    McpError,
    ScopeRequired,
    ServiceUnavailable,
)
from vouchsim.server.mcp.transport import Incoming, McpServer, Outcome, Reply, accepts_event_stream
from vouchsim.server.oauth import scopes
from vouchsim.server.oauth.bearer import BearerError, InsufficientScope, challenge

log = logging.getLogger("vouchsim.mcp")

MAX_BODY = 1024 * 1024
_NO_STORE = {"Cache-Control": "no-store"}


def _json(status: int, body: bytes, headers: dict[str, str] | None = None) -> Response[Any]:
    return Response(
        content=body, status_code=status, headers={**_NO_STORE, **(headers or {})}, media_type="application/json"
    )


def _resource_metadata(issuer: str) -> str:
    return f"{issuer}/.well-known/oauth-protected-resource/mcp"


def _error(error: McpError, issuer: str) -> Response[Any]:
    body = jsonrpc.encode(jsonrpc.error_message(error.request_id, error.rpc_code, error.description, error.data))
    headers = {}
    if isinstance(error, ScopeRequired):
        headers["WWW-Authenticate"] = challenge(
            _resource_metadata(issuer), error.scope, InsufficientScope(error.description)
        )
    return _json(error.status, body, headers)


def _unauthorized(error: BearerError, issuer: str) -> Response[Any]:
    header = challenge(_resource_metadata(issuer), scopes.DEFAULT_SCOPE, error)
    body = jsonrpc.encode(
        jsonrpc.error_message(None, UNAUTHORIZED, error.description, {"error": error.code or "unauthorized"})
    )
    return _json(error.status, body, {"WWW-Authenticate": header})


def _response(outcome: Outcome) -> Response[Any]:
    if isinstance(outcome, Reply):
        if outcome.body is None:
            return Response(content=b"", status_code=outcome.status, headers=outcome.headers)
        return _json(outcome.status, outcome.body, outcome.headers)
    return Stream(
        outcome.events,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


_ROUTING_HEADERS = frozenset({b"mcp-protocol-version", b"mcp-method", b"mcp-name"})


def _repeated_routing_header(request: Request[Any, Any, Any]) -> str | None:
    """A routing header sent twice cannot be trusted (a proxy may read the first, we the last): from the raw list."""
    seen: set[bytes] = set()
    for name, _value in request.scope["headers"]:
        key = name.lower()
        if key in _ROUTING_HEADERS:
            if key in seen:
                return key.decode()
            seen.add(key)
    return None


def _incoming(request: Request[Any, Any, Any], issuer: str) -> Incoming:
    headers = request.headers

    async def disconnected() -> None:
        # The body has been read: the next ASGI message is the client going away (or the reply being done).
        while (await request.receive())["type"] != "http.disconnect":
            pass

    return Incoming(
        issuer=issuer,
        session_id=headers.get("mcp-session-id"),
        protocol_version=headers.get("mcp-protocol-version"),
        accepts_sse=accepts_event_stream(headers.get("accept")),
        method=headers.get("mcp-method"),
        name=headers.get("mcp-name"),
        repeated_header=_repeated_routing_header(request),
        disconnected=disconnected,
    )


async def _body(request: Request[Any, Any, Any]) -> bytes:
    try:
        return await request.body()
    except HTTPException as error:
        if error.status_code == 413:
            raise BodyTooLarge(f"The request body is larger than {MAX_BODY} bytes.") from None
        raise InvalidRequest("Invalid Request: the body could not be read.") from None


async def _serve(
    request: Request[Any, Any, Any], work: Callable[[McpServer, str], Awaitable[Response[Any]]]
) -> Response[Any]:
    # From the app's state directly: a `state: State` parameter would copy the whole state on every request.
    mcp: McpServer = request.app.state.mcp
    issuer = issuer_of(request, mcp.runtime)
    try:
        mcp.check_origin(request.headers.get("origin"), issuer)
        return await work(mcp, issuer)
    except BearerError as error:
        return _unauthorized(error, issuer)
    except McpError as error:
        return _error(error, issuer)
    except Exception:
        log.exception("unexpected failure on %s /mcp", request.method)
        return _error(ServiceUnavailable("The server cannot answer right now; try again shortly."), issuer)


@post("/mcp", status_code=200, request_max_body_size=MAX_BODY, tags=["mcp"], include_in_schema=False)
async def mcp_post(request: Request[Any, Any, Any]) -> Response[Any]:
    """One JSON-RPC message: a request (answered as JSON or SSE), a notification or a response (202)."""

    async def work(mcp: McpServer, issuer: str) -> Response[Any]:
        grant = await mcp.authenticate(request.headers.get("authorization"), issuer)
        body = await _body(request)
        return _response(await mcp.post(grant, _incoming(request, issuer), body))

    return await _serve(request, work)


@delete("/mcp", status_code=200, tags=["mcp"], include_in_schema=False)
async def mcp_delete(request: Request[Any, Any, Any]) -> Response[Any]:
    """End the session named by `Mcp-Session-Id` (405 with the 2026 header: that revision has no sessions)."""

    async def work(mcp: McpServer, issuer: str) -> Response[Any]:
        grant = await mcp.authenticate(request.headers.get("authorization"), issuer)
        return _response(await mcp.delete(grant, _incoming(request, issuer)))

    return await _serve(request, work)


@get("/mcp", tags=["mcp"], include_in_schema=False)
async def mcp_get(request: Request[Any, Any, Any]) -> Response[Any]:
    """No server-to-client stream is offered: progress travels on the POST that asked for it."""

    async def work(mcp: McpServer, issuer: str) -> Response[Any]:
        await mcp.authenticate(request.headers.get("authorization"), issuer)
        return _response(mcp.method_not_allowed("GET", modern=_incoming(request, issuer).names_modern_version))

    return await _serve(request, work)


mcp_routes = [mcp_post, mcp_delete, mcp_get]
