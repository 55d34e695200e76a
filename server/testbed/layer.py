"""The testbed's thin ASGI layer, outside everything else of the app: each journaled request is classified once
(`observe.kind_of`), matched against the faults, answered by one if it fires, and recorded in the journal before
the last byte of its answer leaves (so a test that has its answer finds it in the journal).

It wraps the whole app (CORS and exception handling included), so it sees what clients see, and it holds the
server's own `send`: a `drop` fault closes the connection itself, with no response at all. Under uvicorn (what
`vouchsim serve` runs) that is the connection's transport, aborted; under a server that does not expose it (a
test client), `ConnectionDropped` is raised instead.

Request bodies of journaled requests are read here first (up to `MAX_BODY`) and handed on unchanged.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from datetime import datetime
from typing import Any

from vouchsim.server.core.issuer import derive_issuer
from vouchsim.server.oauth import scopes
from vouchsim.server.oauth.bearer import InvalidToken, challenge
from vouchsim.server.testbed.control import Testbed
from vouchsim.server.testbed.faults import Fault, FaultAction
from vouchsim.server.testbed.observe import RequestFacts, answer_facts, kind_of, request_facts

log = logging.getLogger("vouchsim.testbed")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY = 1024 * 1024 + 1  # /mcp refuses more than 1 MiB; reading one byte past that is enough to know
MAX_KEPT = 64 * 1024  # of an answer's body, for its summary
EXPIRED_TOKEN = "vouchsim-testbed-expired-token"  # noqa: S105 - not a secret: what an `expire_token` fault puts in place of the bearer
_BODYLESS = {"GET", "HEAD", "OPTIONS"}


class ConnectionDropped(Exception):
    """A `drop` fault fired under a server whose connection this layer cannot reach (not uvicorn)."""


class TestbedLayer:
    __test__ = False  # not a pytest test class, whatever its name

    def __init__(
        self, app: ASGIApp, testbed: Testbed, *, cors_headers: Callable[[Scope], Mapping[str, str]] | None = None
    ) -> None:
        """`cors_headers(scope)`: the CORS headers the app adds to its answer to that request (server.edge.cors),
        for the answers of faults (which never reach the app's own CORS handling)."""
        self.app = app
        self.testbed = testbed
        self.cors_headers = cors_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope.get("type") != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        kind = kind_of(path)
        if kind is None:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        at = self.testbed.clock.now()
        method: str = scope.get("method", "GET")
        headers = {name.decode("latin-1").lower(): value.decode("latin-1") for name, value in scope.get("headers", [])}
        body = b""
        if method not in _BODYLESS:
            body, receive = await _read_body(receive)
        facts = request_facts(kind, method, path, scope.get("query_string", b"").decode("latin-1"), headers, body)
        try:
            fault = await self.testbed.fault_for(facts)
        except Exception:  # the database may be away: the request goes on without a fault, as on a real server
            log.exception("testbed: cannot check the faults for %s %s", method, path)
            fault = None
        recorder = _Recorder(self.testbed, facts, at, started, fault, send)
        if fault is not None:
            action = fault.action
            if action.status is None:
                log.info("testbed fault %s fired on %s %s", fault.id, method, path)
            if action.delay_ms:
                await asyncio.sleep(action.delay_ms / 1000)
            if action.drop:
                await recorder.dropped()
                await _drop(send)
                return
            if action.status is not None:
                await self._answer(scope, headers, facts, fault, action, recorder)
                return
            if action.expire_token:
                scope = _with_bearer(scope, EXPIRED_TOKEN)
        try:
            await self.app(scope, receive, recorder.send)
        finally:
            if not recorder.recorded:  # the app raised (or never answered): still a request the client made
                await recorder.finish(error=True)

    async def _answer(
        self,
        scope: Scope,
        headers: Mapping[str, str],
        facts: RequestFacts,
        fault: Fault,
        action: FaultAction,
        recorder: _Recorder,
    ) -> None:
        """The fault's error: OAuth-shaped JSON, or on /mcp a JSON-RPC error, with the fault's HTTP status."""
        status = action.status or 500
        extra: dict[str, str] = {"cache-control": "no-store", "pragma": "no-cache"}
        if facts.kind == "mcp":
            data = {
                "jsonrpc": "2.0",
                "id": _rpc_id(facts),
                "error": {
                    "code": _rpc_code(status),
                    "message": action.description,
                    "data": {"error": action.error_code},
                },
            }
            if status in (401, 403):
                issuer = derive_issuer(
                    self.testbed.settings.issuer,
                    scheme=scope.get("scheme", "http"),
                    host=headers.get("host"),
                    forwarded_proto=headers.get("x-forwarded-proto"),
                )
                error = InvalidToken(action.description, code=action.error_code, status=status)
                metadata = f"{issuer}/.well-known/oauth-protected-resource/mcp"
                extra["www-authenticate"] = challenge(metadata, scopes.DEFAULT_SCOPE, error)
        else:
            data = {"error": action.error_code, "error_description": action.description}
        if action.retry_after is not None:
            extra["retry-after"] = str(action.retry_after)
        if self.cors_headers is not None:
            extra.update({name.lower(): value for name, value in self.cors_headers(scope).items()})
        payload = json.dumps(data).encode()
        extra["content-type"] = "application/json"
        extra["content-length"] = str(len(payload))
        log.info("testbed fault %s answered %s %s with %d", fault.id, facts.method, facts.path, status)
        await recorder.send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(name.encode("latin-1"), value.encode("latin-1")) for name, value in extra.items()],
            }
        )
        await recorder.send({"type": "http.response.body", "body": payload, "more_body": False})


class _Recorder:
    """Passes the app's answer through, keeping what the journal needs, and records the entry just before the
    answer's last part is sent (event streams: as soon as they start)."""

    def __init__(
        self, testbed: Testbed, facts: RequestFacts, at: datetime, started: float, fault: Fault | None, send: Send
    ) -> None:
        self.testbed = testbed
        self.facts = facts
        self.at = at
        self.started = started
        self.fault = fault
        self._send = send
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.recorded = False

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.headers = {
                bytes(name).decode("latin-1").lower(): bytes(value).decode("latin-1")
                for name, value in message.get("headers", [])
            }
            if self.headers.get("content-type", "").startswith("text/event-stream"):
                await self.finish()
        elif message["type"] == "http.response.body" and not self.recorded:
            if len(self.body) < MAX_KEPT:
                self.body += bytes(message.get("body", b""))[: MAX_KEPT - len(self.body)]
            if not message.get("more_body", False):
                await self.finish()
        await self._send(message)

    async def dropped(self) -> None:
        await self.finish(dropped=True)

    async def finish(self, *, dropped: bool = False, error: bool = False) -> None:
        if self.recorded:
            return
        self.recorded = True
        facts = self.facts
        status = None if dropped else (self.status if self.status is not None else 500 if error else None)
        answer = answer_facts(facts, status or 0, self.headers, bytes(self.body))
        client_id = facts.client_id or answer.client_id
        if client_id is None:
            try:
                client_id = await self.testbed.client_of(facts)
            except Exception:  # the journal must never fail a request
                log.exception("testbed: cannot name the client of %s %s", facts.method, facts.path)
        self.testbed.learn(facts, answer, client_id)
        self.testbed.journal.record(
            at=self.at,
            kind=facts.kind,
            method=facts.method,
            path=facts.path,
            status=status,
            duration_ms=(time.perf_counter() - self.started) * 1000,
            client_id=client_id,
            summary={**facts.summary, **answer.summary},
            fault=self.fault.id if self.fault is not None else None,
        )


async def _read_body(receive: Receive) -> tuple[bytes, Receive]:
    """The request body (up to MAX_BODY bytes), and a `receive` that hands the app exactly what was read,
    then whatever follows."""
    chunks: list[bytes] = []
    size = 0
    more = True
    pending: list[Message] = []
    while more and size < MAX_BODY:
        message = await receive()
        if message["type"] != "http.request":
            pending.append(message)  # the client went away: the app hears it after the body
            more = False
            break
        chunk = bytes(message.get("body", b""))
        chunks.append(chunk)
        size += len(chunk)
        more = bool(message.get("more_body", False))
    body = b"".join(chunks)
    replay: list[Message] = [{"type": "http.request", "body": body, "more_body": more}, *pending]

    async def replaying() -> Message:
        if replay:
            return replay.pop(0)
        return await receive()

    return body[:MAX_BODY], replaying


async def _drop(send: Send) -> None:
    """Close the connection without answering: abort the server's transport (uvicorn's request cycle holds it)."""
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    if transport is None or not hasattr(transport, "abort"):
        raise ConnectionDropped("a drop fault fired, but this server does not expose the connection to close")
    transport.abort()
    # Let the server notice the connection is gone before this request returns, so it sends nothing (no 500).
    for _ in range(3):
        await asyncio.sleep(0)


def _with_bearer(scope: Scope, token: str) -> Scope:
    headers = [
        (name, f"Bearer {token}".encode() if name.lower() == b"authorization" else value)
        for name, value in scope.get("headers", [])
    ]
    return {**scope, "headers": headers}


def _rpc_id(facts: RequestFacts) -> Any:
    value = facts.summary.get("id")
    return value if isinstance(value, str | int) and not isinstance(value, bool) else None


def _rpc_code(status: int) -> int:
    if status in (401, 403):
        return -32001  # as /mcp answers a refused token
    if status == 429 or status >= 500:
        return -32000
    return -32600
