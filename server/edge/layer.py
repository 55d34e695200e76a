"""The edge as one ASGI callable: the four checks of `server.edge`, in their order, over one pass of the headers.

Four nested layers cost four calls and four scans of the header list, each for the one header it wanted; this one
reads the headers once (`EdgeHeaders`) and hands each check what it needs. The order, and so which refusal wins,
is the nesting's it replaced: the host guard (its 421 carries no CORS header), then CORS (a preflight is answered
there; every later answer, refusals included, carries the CORS headers), then the rate limits, then the input
guard, then the app.
"""

from __future__ import annotations

import math

from vouchsim.server.edge.asgi import INVALID_REQUEST, SERVER_ERROR, ASGIApp, EdgeHeaders, Receive, Scope, Send, refuse
from vouchsim.server.edge.cors import answer_preflight, with_cors
from vouchsim.server.edge.hosts import guard_is_on, host_allowed, host_refusal
from vouchsim.server.edge.inputs import MAX_BODY, BadInput, TooLarge, check_body, check_request_line, read_body
from vouchsim.server.edge.limits import RateLimits, rate_limit_key
from vouchsim.server.settings import Settings

_BODYLESS = frozenset({"GET", "HEAD", "OPTIONS"})


class Edge:
    def __init__(self, app: ASGIApp, settings: Settings, limits: RateLimits, *, max_body: int = MAX_BODY) -> None:
        self.app = app
        self.settings = settings
        self.limits = limits
        self.max_body = max_body
        self.host_guard_on = guard_is_on(settings)
        self.allowed_hosts = settings.allowed_host_list

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        headers = EdgeHeaders(scope)
        # 1. The host guard (server.edge.hosts).
        if self.host_guard_on and not host_allowed(host := headers.get(b"host"), self.allowed_hosts):
            await refuse(scope, send, 421, "invalid_request", host_refusal(host))
            return
        method: str = scope.get("method", "GET")
        # 2. CORS (server.edge.cors).
        if headers.has(b"origin"):
            if method == "OPTIONS" and headers.has(b"access-control-request-method"):
                await answer_preflight(self.settings, scope, headers, send)
                return
            send = with_cors(self.settings, scope, headers, send)
        # 3. The rate limits (server.edge.limits).
        path: str = scope.get("path", "")
        limit, what = self.limits.limit_for(method, path)
        key = rate_limit_key(self.settings, scope, headers, path) if limit is not None else None
        if limit is not None and key is not None and (wait := limit.take(key)) is not None:
            retry_after = max(1, math.ceil(wait))
            await refuse(
                scope,
                send,
                429,
                "too_many_requests",
                f"Too many {what}: try again in {retry_after} s.",
                rpc_code=SERVER_ERROR,
                headers={"Retry-After": str(retry_after)},
            )
            return
        # 4. The input guard (server.edge.inputs).
        try:
            check_request_line(scope, headers)
            if method not in _BODYLESS:
                body, receive = await read_body(receive, self.max_body)
                if body:
                    check_body(headers.get(b"content-type") or "", body)
        except BadInput as bad:
            await refuse(scope, send, 400, "invalid_request", bad.description, rpc_code=bad.rpc_code)
            return
        except TooLarge:
            await refuse(
                scope,
                send,
                413,
                "request_too_large",
                f"The request body is larger than {self.max_body} bytes.",
                rpc_code=INVALID_REQUEST,
            )
            return
        await self.app(scope, receive, send)
