"""The Streamable HTTP transport (basic/transports), HTTP-free: `routes.py` reads the request, calls `McpServer`,
and turns what comes back (`Reply`, `StreamedReply`) or what it raises (`McpError`, `BearerError`) into a response.

Per POST: the bearer token (from the cache when it was validated moments ago), then one JSON-RPC message, of
one of two eras (server.mcp.era):
- 2025 (legacy): `initialize` opens a session; anything else needs one (`Mcp-Session-Id`) and a protocol version
  we speak. Notifications and client responses are acknowledged with 202.
- 2026-07-28 (modern): no session is read, needed or minted. The request's `_meta` and routing headers pass the
  validation ladder, then everything the call needs comes from the bearer grant and that `_meta`. Every result
  carries `resultType` and the server's identity; `server/discover` describes the server; methods the revision
  removed (`ping`, …) are 404.
Requests are answered as JSON, or as an SSE stream when the client accepts one and the call streams: a
`tools/call` that waits for the trusted device and carries a `progressToken` sends `notifications/progress` while
it waits, then its result. A client that hangs up cancels its call, whichever the reply: the SSE stream's end
cancels it, and a JSON reply's waiting call races the connection's end (`Incoming.disconnected`).

`/mcp` owns its transactions instead of taking the request's: the hot path must not touch the database when the
cache answers, and a waiting call must not hold a connection (the delegation service opens its own, too).

A 2025 session's waiting call can also be cancelled with `notifications/cancelled`
(basic/utilities/cancellation) from any request of its session: those served by this process directly; on
PostgreSQL the cancellation is also announced on the event bus, so the instance that holds the call hears it
(best effort).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from vouchsim.server.core.crypto import hash_secret
from vouchsim.server.core.errors import VouchsimError
from vouchsim.server.core.issuer import canonical_resource, resource_url
from vouchsim.server.core.origins import origin_allowed
from vouchsim.server.core.runtime import Runtime
from vouchsim.server.delegation.service import DelegationService
from vouchsim.server.mcp import era, jsonrpc, protocol, tasks
from vouchsim.server.mcp.cache import McpCache
from vouchsim.server.mcp.era import Envelope, RoutingHeaders
from vouchsim.server.mcp.errors import (
    INVALID_REQUEST,
    TRANSPORT_ERROR,
    ForbiddenOrigin,
    InternalError,
    InvalidParams,
    InvalidRequest,
    McpError,
    MethodNotFound,
    RequestCancelled,
    ScopeRequired,
    SessionNotFound,
    SessionRequired,
    UnknownMethod,
)
from vouchsim.server.mcp.sessions import McpSessions, SessionView, check_binding, needs_touch, session_key
from vouchsim.server.mcp.tasks import McpTasks
from vouchsim.server.mcp.tools import Tool, ToolContext, ToolResult, tool_named, visible_tools
from vouchsim.server.mcp.tools.delegation import REQUEST_REFUSED
from vouchsim.server.oauth import scopes
from vouchsim.server.oauth.bearer import AccessGrant, MissingToken, WrongAudience, authenticate, bearer_token
from vouchsim.server.storage import topics
from vouchsim.server.storage.events import EventBus
from vouchsim.server.storage.repositories.connections import ConnectionRepository
from vouchsim.server.storage.repositories.mcp_sessions import McpSessionRepository
from vouchsim.server.storage.repositories.tokens import TokenRepository
from vouchsim.server.storage.session import DbSession, SessionFactory, own_transactions

log = logging.getLogger("vouchsim.mcp")

PROGRESS_INTERVAL = 15.0  # seconds between `notifications/progress` of a waiting call
_MAX_CANCEL_ID = 200  # longer request ids are not announced across instances (NOTIFY payloads are small)


# -- what routes.py hands in and gets back ---------------------------------------------------------------------
@dataclass(frozen=True)
class Incoming:
    """The transport-relevant parts of one HTTP request to `/mcp`."""

    issuer: str
    session_id: str | None = None
    protocol_version: str | None = None
    accepts_sse: bool = False
    method: str | None = None  # `Mcp-Method`
    name: str | None = None  # `Mcp-Name`
    repeated_header: str | None = None  # a routing header sent more than once
    # Returns once the client has gone away (None: no way to tell), so a JSON reply's waiting call can stop.
    disconnected: Callable[[], Awaitable[None]] | None = None

    @functools.cached_property
    def routing(self) -> RoutingHeaders:
        return RoutingHeaders(self.protocol_version, self.method, self.name, self.repeated_header)

    @property
    def names_modern_version(self) -> bool:
        """The `MCP-Protocol-Version` header names a version of no handshake (2026-07-28, or one unknown)."""
        version = (self.protocol_version or "").strip()
        return bool(version) and version not in protocol.KNOWN_LEGACY


@dataclass(frozen=True)
class Scope:
    """What one request runs with besides the grant: its version, and how it can be cancelled. A 2025 request's
    scope comes from its session; a 2026-07-28 one's from its `_meta` (`envelope`), with no session at all."""

    protocol_version: str
    envelope: Envelope | None = None
    # 2025 sessions: (stored session id, encoded request id), for `notifications/cancelled`.
    in_flight_key: tuple[str, bytes] | None = None

    @property
    def modern(self) -> bool:
        return self.envelope is not None

    def result(self, result: dict[str, Any], result_type: str = "complete") -> dict[str, Any]:
        return protocol.modern_result(result, result_type) if self.modern else result


@dataclass(frozen=True)
class Reply:
    """A JSON body (or none: 202, 204) with its status and extra headers."""

    status: int
    body: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StreamedReply:
    """`text/event-stream`: each item is one complete SSE event."""

    events: AsyncIterator[bytes]


Outcome = Reply | StreamedReply


def sse_event(message: jsonrpc.Outgoing) -> bytes:
    return b"event: message\ndata: " + jsonrpc.encode(message) + b"\n\n"


def accepts_event_stream(accept: str | None) -> bool:
    if not accept or "text/event-stream" not in accept.lower():
        return False  # the common answer, without splitting the header
    return any(part.split(";")[0].strip().lower() == "text/event-stream" for part in (accept or "").split(","))


# -- progress over SSE ----------------------------------------------------------------------------------------
class _SseProgress:
    """`notifications/progress` for one call, queued for its SSE stream; strictly increasing, as the spec asks."""

    def __init__(self, token: jsonrpc.RequestId, queue: asyncio.Queue[bytes], interval: float) -> None:
        self.token = token
        self.queue = queue
        self.interval = interval
        self._last: float | None = None

    async def report(self, progress: float, total: float | None, message: str) -> None:
        if self._last is not None and progress <= self._last:
            return
        self._last = progress
        params: dict[str, Any] = {"progressToken": self.token, "progress": progress, "message": message}
        if total is not None:
            params["total"] = total
        await self.queue.put(sse_event(jsonrpc.NotificationMessage(method="notifications/progress", params=params)))


# -- the server ------------------------------------------------------------------------------------------------
class McpServer:
    """One per process (made in the app's lifespan): the cache, the calls in flight, and what tools need."""

    def __init__(
        self,
        runtime: Runtime,
        sessions: SessionFactory,
        events: EventBus,
        delegations: DelegationService,
        *,
        cache: McpCache | None = None,
        progress_interval: float = PROGRESS_INTERVAL,
    ) -> None:
        self.runtime = runtime
        self.events = events
        self.delegations = delegations
        self.cache = cache or McpCache(runtime.clock)
        self.progress_interval = progress_interval
        self.transaction = own_transactions(sessions)
        self.versions = protocol.Versions(runtime.settings.mcp_version_list)
        self.tasks = McpTasks(runtime.clock, runtime.hmac_key)
        # (stored session id, encoded request id) → the task running that call
        self._in_flight: dict[tuple[str, bytes], asyncio.Task[ToolResult]] = {}

    # -- event bus ----------------------------------------------------------------------------------------------
    def on_event(self, topic: str) -> None:
        """The event bus listener: revocations empty the cache; another instance may cancel a call held here."""
        self.cache.invalidate(topic)
        if (cancelled := topics.mcp_cancelled(topic)) is not None:
            session_id, encoded = cancelled
            self._cancel_local(session_id, encoded.encode())

    # -- per request --------------------------------------------------------------------------------------------
    def check_origin(self, origin: str | None, issuer: str) -> None:
        if origin is None:
            return  # not a browser
        if not origin_allowed(origin, issuer, self.runtime.settings.allowed_origin_list):
            raise ForbiddenOrigin(
                f"Requests from the web origin {origin[:100]!r} are not allowed here." if origin else ""
            )

    async def authenticate(self, authorization: str | None, issuer: str) -> AccessGrant:
        """The grant behind the bearer token; raises `BearerError` (→ 401 with the RFC 9728 challenge)."""
        token = bearer_token(authorization)
        if token is None:
            raise MissingToken("An access token is required.")
        resource = resource_url(issuer)
        key = hash_secret(token)
        grant = self.cache.grant(key)
        if grant is not None:
            if grant.resource != resource and canonical_resource(grant.resource) != canonical_resource(resource):
                raise WrongAudience(f"The access token was issued for {grant.resource}, not {resource}.")
            return grant
        generation = self.cache.generation
        async with self.transaction() as db:
            grant = await authenticate(TokenRepository(db), self.runtime.clock, authorization, resource)
            # The connection's "last used" (the companion's Connections): written whenever a token is validated
            # from the database, i.e. at most once per cache lifetime per token, never on the cached hot path.
            await ConnectionRepository(db).touch(grant.connection_id, self.runtime.clock.now())
        self.cache.put_grant(key, grant, generation)
        return grant

    async def post(self, grant: AccessGrant, incoming: Incoming, body: bytes) -> Outcome:
        message = jsonrpc.parse(body)
        if era.is_modern(message, incoming.routing):
            return await self._modern(grant, incoming, message)
        if not self.versions.legacy:
            raise self._legacy_refused(incoming, message)
        if isinstance(message, jsonrpc.Request) and message.method == "initialize":
            return await self._initialize(grant, message)
        session = await self._session(grant, incoming)
        if isinstance(message, jsonrpc.Notification):
            await self._notification(session, message)
            return Reply(202)
        if isinstance(message, jsonrpc.ClientResponse):
            return Reply(202)  # we never ask the client anything, so there is nothing to match it with
        scope = Scope(session.protocol_version, in_flight_key=(session.id, msgspec.json.encode(message.id)))
        return await self._request(grant, scope, incoming, message)

    async def delete(self, grant: AccessGrant, incoming: Incoming) -> Reply:
        """End the session (and any call of it still waiting here). 2026-07-28 has no sessions to end: 405."""
        if incoming.names_modern_version or not self.versions.legacy:
            return self.method_not_allowed("DELETE", modern=True)
        session = await self._session(grant, incoming, touch=False)
        async with self.transaction() as db:
            await self._sessions(db).end(session.id)
        self.cache.forget_session(session.id)
        for key, task in list(self._in_flight.items()):
            if key[0] == session.id:
                task.cancel()
        return Reply(204)

    def method_not_allowed(self, method: str, *, modern: bool) -> Reply:
        """GET (no server-to-client stream is offered) or DELETE (2026-07-28: no sessions): 405 with `Allow`."""
        allow = "POST, DELETE" if self.versions.legacy else "POST"
        text = f"Method Not Allowed: this server offers no {method} on /mcp; POST messages instead."
        # 2026-07-28 answers carry no code of the -32000 range (basic/index, "Error Codes").
        error = jsonrpc.error_message(None, INVALID_REQUEST if modern else TRANSPORT_ERROR, text)
        return Reply(405, jsonrpc.encode(error), {"Allow": allow})

    def _legacy_refused(self, incoming: Incoming, message: jsonrpc.Message) -> McpError:
        """A modern-only server refuses every 2025 request, naming what it offers (basic/versioning)."""
        requested = (incoming.protocol_version or "").strip() or protocol.ASSUMED_WITHOUT_HEADER
        if isinstance(message, jsonrpc.Request) and message.method == "initialize":
            asked = (message.params or {}).get("protocolVersion")
            requested = asked if isinstance(asked, str) else requested
        error = self.versions.refuse(requested)
        error.request_id = message.id if isinstance(message, jsonrpc.Request) else None
        return error

    # -- 2026-07-28 ------------------------------------------------------------------------------------------------
    async def _modern(self, grant: AccessGrant, incoming: Incoming, message: jsonrpc.Message) -> Outcome:
        """A stateless request: no session is read or made; `Mcp-Session-Id` and `Last-Event-ID` are ignored."""
        if isinstance(message, jsonrpc.Notification):
            return Reply(202)  # none is defined on HTTP in 2026-07-28 (a stream's end is the cancellation)
        if isinstance(message, jsonrpc.ClientResponse):
            raise InvalidRequest("Invalid Request: a 2026-07-28 client sends no responses.")
        try:
            envelope = era.envelope(message, incoming.routing, self.versions)
        except McpError as error:
            error.request_id = message.id
            raise
        return await self._request(grant, Scope(envelope.protocol_version, envelope), incoming, message)

    # -- lifecycle ----------------------------------------------------------------------------------------------
    def _sessions(self, db: DbSession) -> McpSessions:
        return McpSessions(McpSessionRepository(db), self.runtime.clock, self.runtime.settings)

    async def _initialize(self, grant: AccessGrant, request: jsonrpc.Request) -> Reply:
        try:
            params = protocol.initialize_params(request.params)
        except McpError as error:
            error.request_id = request.id
            raise
        try:
            version = protocol.negotiate(params.protocol_version, self.versions)
        except McpError as error:
            error.request_id = request.id
            raise
        generation = self.cache.generation
        async with self.transaction() as db:
            session_id, session = await self._sessions(db).open(grant, version, protocol.client_info(params))
        self.cache.put_session(session, generation)
        result = jsonrpc.ResultMessage(id=request.id, result=protocol.initialize_result(version))
        return Reply(200, jsonrpc.encode(result), {"Mcp-Session-Id": session_id})

    async def _session(self, grant: AccessGrant, incoming: Incoming, *, touch: bool = True) -> SessionView:
        """The live session named by `Mcp-Session-Id`, bound to this token's user, client and connection."""
        if incoming.session_id is None:
            raise SessionRequired("Bad Request: an Mcp-Session-Id header is required (initialize first).")
        protocol.header_version(incoming.protocol_version, self.versions)
        key = session_key(incoming.session_id)
        if key is None:
            raise SessionNotFound()
        session = self.cache.session(key)
        if session is None:
            generation = self.cache.generation
            try:
                async with self.transaction() as db:
                    session = await self._sessions(db).find(key)
            except Exception:
                log.exception("cannot read MCP session")
                raise SessionNotFound("The session cannot be served right now.", reason="unavailable") from None
            if session is None:
                raise SessionNotFound()
            self.cache.put_session(session, generation)
        check_binding(session, grant)
        if touch:
            session = await self._touch(session)
        return session

    async def _touch(self, session: SessionView) -> SessionView:
        """Slide the session's idle expiry, at most once a minute (a write on every request would cost too much)."""
        if not needs_touch(session, self.runtime.clock.now(), self.runtime.settings.mcp_session_ttl):
            return session
        generation = self.cache.generation
        async with self.transaction() as db:
            touched = await self._sessions(db).touch(session)
        if touched is None:
            self.cache.forget_session(session.id)
            raise SessionNotFound()
        self.cache.put_session(touched, generation)
        return touched

    # -- notifications ------------------------------------------------------------------------------------------
    async def _notification(self, session: SessionView, message: jsonrpc.Notification) -> None:
        if message.method != "notifications/cancelled":
            return  # notifications/initialized, and any we do not know: nothing to do (and nothing to answer)
        request_id = (message.params or {}).get("requestId")
        if not jsonrpc.is_request_id(request_id):
            return
        encoded = msgspec.json.encode(request_id)
        if self._cancel_local(session.id, encoded) or not self.events.crosses_instances:
            return
        if len(encoded) <= _MAX_CANCEL_ID:
            async with self.transaction() as db:
                await self.events.publish(db, topics.mcp_cancel(session.id, encoded.decode()))

    def _cancel_local(self, session_id: str, encoded_id: bytes) -> bool:
        task = self._in_flight.get((session_id, encoded_id))
        if task is None:
            return False
        log.info("MCP request %s cancelled by its client", encoded_id.decode(errors="replace")[:100])
        task.cancel()
        return True

    # -- requests -----------------------------------------------------------------------------------------------
    async def _request(self, grant: AccessGrant, scope: Scope, incoming: Incoming, request: jsonrpc.Request) -> Outcome:
        try:
            if scope.modern:
                return await self._modern_method(grant, scope, incoming, request)
            if request.method == "ping":
                return self._result(request, {})
            if request.method == "tools/list":
                return self._result(request, {"tools": self._tools(grant, scope)})
            if request.method == "tools/call":
                return await self._call(grant, scope, incoming, request)
            raise MethodNotFound(f"Method not found: {request.method[:100]}")
        except ScopeRequired:
            raise  # an HTTP-level answer (403 with a challenge), not a JSON-RPC one
        except McpError as error:
            error.request_id = request.id
            raise
        except Exception:
            log.exception("MCP request %s failed", request.method[:100])
            raise InternalError("Internal error: something went wrong on our side.", request_id=request.id) from None

    async def _modern_method(
        self, grant: AccessGrant, scope: Scope, incoming: Incoming, request: jsonrpc.Request
    ) -> Outcome:
        if request.method == "tools/call":
            return await self._call(grant, scope, incoming, request)
        if request.method == "tools/list":
            # CacheableResult (server/utilities/caching): the list depends on the token's scopes, so "private".
            tools = {"tools": self._tools(grant, scope), "ttlMs": protocol.TOOLS_TTL_MS, "cacheScope": "private"}
            return self._result(request, scope.result(tools))
        if request.method == "server/discover":
            return self._result(request, protocol.discover_result(self.versions))
        if request.method in tasks.METHODS:
            return await self._task_method(grant, scope, incoming, request)
        # Removed by 2026-07-28 (ping, logging/setLevel, resources/subscribe, …) or never offered here.
        raise UnknownMethod(f"Method not found: {request.method[:100]}")

    async def _task_method(
        self, grant: AccessGrant, scope: Scope, incoming: Incoming, request: jsonrpc.Request
    ) -> Reply:
        """`tasks/get`, `tasks/update`, `tasks/cancel` (server.mcp.tasks): the extension declared, the delegation
        scope held (a task holds a delegation's outcome), then the task of this very client."""
        assert scope.envelope is not None
        tasks.require_extension(scope.envelope)
        task_id = tasks.task_id_of(request.params)
        if scopes.DELEGATION not in grant.scopes:
            raise ScopeRequired(
                f"Tasks hold delegations; they need the scope {scopes.DELEGATION!r}.",
                scope=scopes.challenge_scope(grant.scopes, scopes.DELEGATION),
                request_id=request.id,
            )
        context = self._context(grant, scope, incoming)
        if request.method == "tasks/get":
            return self._result(request, scope.result(await self.tasks.get(context, task_id)))
        if request.method == "tasks/cancel":
            await self.tasks.cancel(context, task_id)
        else:
            await self.tasks.update(context, task_id)
        return self._result(request, scope.result({}))

    def _context(self, grant: AccessGrant, scope: Scope, incoming: Incoming) -> ToolContext:
        return ToolContext(
            grant=grant,
            issuer=incoming.issuer,
            hmac_key=self.runtime.hmac_key,
            protocol_version=scope.protocol_version,
            transaction=self.transaction,
            delegations=self.delegations,
        )

    def _tools(self, grant: AccessGrant, scope: Scope) -> list[dict[str, Any]]:
        return [tool.describe(scope.protocol_version) for tool in visible_tools(grant.scopes)]

    def _result(self, request: jsonrpc.Request, result: dict[str, Any]) -> Reply:
        return Reply(200, jsonrpc.encode(jsonrpc.ResultMessage(id=request.id, result=result)))

    async def _call(self, grant: AccessGrant, scope: Scope, incoming: Incoming, request: jsonrpc.Request) -> Outcome:
        params = request.params or {}
        name = params.get("name")
        if not isinstance(name, str):
            raise InvalidParams('Invalid params: tools/call needs the tool\'s "name".')
        tool = tool_named(name)
        if tool is None:
            raise InvalidParams(f"Unknown tool: {name[:100]}")
        if tool.scope not in grant.scopes:
            raise ScopeRequired(
                f"The tool {tool.name} needs the scope {tool.scope!r}.",
                scope=scopes.challenge_scope(grant.scopes, tool.scope),
                request_id=request.id,
            )
        arguments = tool.parse_arguments(params.get("arguments"))
        meta = params.get("_meta")
        progress_token = meta.get("progressToken") if isinstance(meta, dict) else None
        context = self._context(grant, scope, incoming)
        if tasks.wants_task(tool, arguments, scope.envelope):
            try:
                return self._result(request, scope.result(await self.tasks.start(context, arguments), "task"))
            except VouchsimError as error:  # refused at once (an unknown audience, …): the tool's own answer
                return self._result(
                    request, scope.result(ToolResult.problem(error, REQUEST_REFUSED).render(scope.protocol_version))
                )
        waits = tool.may_wait(arguments)
        if incoming.accepts_sse and jsonrpc.is_request_id(progress_token) and waits:
            return StreamedReply(self._stream(scope, tool, arguments, context, request, progress_token))
        if not waits:
            # Over in the time of a round trip or two: no task of its own for `notifications/cancelled` to end (a
            # cancellation that finds no call in flight is ignored, as basic/utilities/cancellation allows).
            return self._result(
                request, scope.result((await tool.run(context, arguments)).render(scope.protocol_version))
            )
        if scope.in_flight_key is None and incoming.disconnected is None:
            result = await tool.run(context, arguments)  # nothing but the request's own end can cancel it
        else:
            try:
                result = await self._unless_gone(self._spawn(scope, lambda: tool.run(context, arguments)), incoming)
            except RequestCancelled as error:
                error.request_id = request.id
                raise
        return self._result(request, scope.result(result.render(scope.protocol_version)))

    def _spawn(self, scope: Scope, call: Callable[[], Awaitable[ToolResult]]) -> asyncio.Task[ToolResult]:
        """A call that may wait, as a task of its own, so `notifications/cancelled` (a 2025 session's: registered
        under its key) or the client hanging up can end the call without ending the request. One task per call:
        a burst holds a thousand waiting calls, and each task costs its coroutines and context."""
        task = asyncio.ensure_future(call())
        key = scope.in_flight_key
        if key is not None:
            self._in_flight[key] = task

            def forget(done: asyncio.Task[ToolResult]) -> None:
                if self._in_flight.get(key) is done:
                    del self._in_flight[key]

            task.add_done_callback(forget)
        return task

    async def _unless_gone(self, call: asyncio.Task[ToolResult], incoming: Incoming) -> ToolResult:
        """The call's result, or `RequestCancelled` when it was cancelled (`notifications/cancelled`, a DELETE) or,
        answered as JSON, when the client hung up first (basic/transports, "Cancellation"): the call is then
        cancelled rather than left waiting for a connection nobody reads. The connection is watched from this
        request's own task (`_until_done`), not from a task of its own."""
        try:
            if incoming.disconnected is not None and not await _until_done(call, incoming.disconnected):
                log.info("MCP client went away; its waiting call is cancelled")
                call.cancel()
                await asyncio.wait({call})  # stopped, not just told to stop
                if not call.cancelled() and call.exception() is not None:
                    log.info("a call failed while its client went away: %r", call.exception())
                raise RequestCancelled("The client went away.")
            return await call
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this request itself is being cancelled (shutdown): the call goes with it
            raise RequestCancelled("The request was cancelled.") from None
        finally:
            if not call.done():
                call.cancel()

    async def _stream(
        self,
        scope: Scope,
        tool: Tool,
        arguments: Any,
        context: ToolContext,
        request: jsonrpc.Request,
        progress_token: jsonrpc.RequestId,
    ) -> AsyncIterator[bytes]:
        """The SSE body of a waiting call: progress notifications, then the result (none if it was cancelled)."""
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        context = replace(context, progress=_SseProgress(progress_token, queue, self.progress_interval))
        call = self._spawn(scope, lambda: tool.run(context, arguments))
        try:
            while not call.done() or not queue.empty():
                if not queue.empty():
                    yield queue.get_nowait()
                    continue
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, call}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    yield getter.result()
                else:
                    getter.cancel()
            if call.cancelled():
                return  # the client cancelled it: no response is sent for a cancelled request
            try:
                result = call.result()
            except Exception:
                log.exception("MCP tool %s failed while streaming", tool.name)
                yield sse_event(
                    jsonrpc.error_message(request.id, InternalError.rpc_code, "Internal error: something went wrong.")
                )
                return
            rendered = scope.result(result.render(scope.protocol_version))
            yield sse_event(jsonrpc.ResultMessage(id=request.id, result=rendered))
        finally:
            if not call.done():
                log.info("MCP client went away; its streamed call is cancelled")
                call.cancel()


async def _until_done(call: asyncio.Future[Any], disconnected: Callable[[], Awaitable[None]]) -> bool:
    """Watch the connection until `call` is done (True) or the client has gone away (False).

    `asyncio.timeout` is the standard library's cancel scope: its deadline, moved to now when the call ends,
    interrupts the watch in this task only (a cancellation of the task itself still goes through as one).
    """
    if call.done():
        return True
    loop = asyncio.get_running_loop()
    watching = True

    def stop(_: object) -> None:
        if watching:  # the call may end just as the watch does: its callback then comes too late to matter
            watch.reschedule(loop.time())

    try:
        async with asyncio.timeout(None) as watch:
            call.add_done_callback(stop)
            try:
                await disconnected()
            finally:
                watching = False
                call.remove_done_callback(stop)
    except TimeoutError:
        pass  # the call ended
    except Exception:
        log.info("cannot watch an MCP client's connection; taken as gone", exc_info=True)
    return call.done()
