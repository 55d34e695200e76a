"""CORS (Fetch standard §3.2) under the Origin rule of `/mcp`: a browser at an allowed origin may read answers.

The allowed origins are those `/mcp` accepts (server.core.origins): the issuer's own, loopback ones (the MCP
Inspector runs on localhost), and `VOUCHSIM_ALLOWED_ORIGINS`. An allowed origin is echoed in
`Access-Control-Allow-Origin` (with `Vary: Origin`); any other gets no CORS header at all, and its preflight a
403, so a page elsewhere cannot read what this server answers (the threat: a malicious page driving a local
testbed from a person's browser). `*` is never sent.

Browser MCP clients need to read `Mcp-Session-Id`, `MCP-Protocol-Version`, `WWW-Authenticate` (the RFC 9728
challenge that starts their OAuth flow) and `Retry-After` (a 429), and to send the headers in `ALLOW_HEADERS`.

`cors_headers` is the one function that says which headers an answer carries; the testbed's fault answers,
which never reach this layer, use it too.
"""

from __future__ import annotations

from vouchsim.server.core.origins import origin_allowed
from vouchsim.server.edge.asgi import EdgeHeaders, Message, Scope, Send, issuer_for, refuse
from vouchsim.server.settings import Settings

ALLOW_METHODS = "GET, POST, DELETE, OPTIONS"
ALLOW_HEADERS = (
    "Authorization, Content-Type, Accept, Mcp-Session-Id, MCP-Protocol-Version, Mcp-Method, Mcp-Name, Last-Event-ID"
)
EXPOSE_HEADERS = "Mcp-Session-Id, MCP-Protocol-Version, WWW-Authenticate, Retry-After"
MAX_AGE = "600"


def allowed_origin(settings: Settings, scope: Scope, headers: EdgeHeaders | None = None) -> str | None:
    """The request's `Origin` when a browser there may read the answer, else None."""
    headers = headers or EdgeHeaders(scope)
    origin = headers.get(b"origin")
    if origin is None or not origin_allowed(origin, issuer_for(settings, scope, headers), settings.allowed_origin_list):
        return None
    return origin


def cors_headers(settings: Settings, scope: Scope, headers: EdgeHeaders | None = None) -> dict[str, str]:
    """The CORS headers of an answer to the request in `scope`: none without an allowed `Origin`."""
    origin = allowed_origin(settings, scope, headers)
    if origin is None:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": EXPOSE_HEADERS, "Vary": "Origin"}


def with_cors(settings: Settings, scope: Scope, headers: EdgeHeaders, send: Send) -> Send:
    """`send` adding the CORS headers of this request (with an `Origin`) to the answer's, if it has any."""
    extra = [
        (name.lower().encode("latin-1"), value.encode("latin-1"))
        for name, value in cors_headers(settings, scope, headers).items()
    ]
    if not extra:
        return send

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": _merged(message.get("headers", []), extra)}
        await send(message)

    return sending


async def answer_preflight(settings: Settings, scope: Scope, headers: EdgeHeaders, send: Send) -> None:
    """A preflight (`OPTIONS` with `Access-Control-Request-Method`): 204 for an allowed origin, else 403."""
    origin = allowed_origin(settings, scope, headers)
    if origin is None:
        await refuse(scope, send, 403, "forbidden", "Requests from this web origin are not allowed here.")
        return
    answer = {
        "access-control-allow-origin": origin,
        "access-control-allow-methods": ALLOW_METHODS,
        "access-control-allow-headers": ALLOW_HEADERS,
        "access-control-max-age": MAX_AGE,
        "vary": "Origin",
        "content-length": "0",
    }
    await send(
        {
            "type": "http.response.start",
            "status": 204,
            "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in answer.items()],
        }
    )
    await send({"type": "http.response.body", "body": b"", "more_body": False})


def _merged(headers: list[tuple[bytes, bytes]], extra: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The app's headers with ours: ours replace its CORS headers, and `Origin` joins its `Vary`."""
    ours = {name for name, _ in extra}
    vary = [bytes(value) for name, value in headers if bytes(name).lower() == b"vary"]
    kept = [(name, value) for name, value in headers if bytes(name).lower() not in ours]
    if vary:
        joined = b", ".join([*vary, b"Origin"])
        extra = [(name, joined if name == b"vary" else value) for name, value in extra]
    return [*kept, *extra]
