"""The testbed controls over HTTP, under `/testbed/` (README "Testbed controls"), and the layer's installation.

Mounted only when the server runs with `--testbed` (`VOUCHSIM_TESTBED=1`). Every request needs
`Authorization: Bearer <VOUCHSIM_TESTBED_TOKEN>`; anything else is 401. The endpoints carry the OpenAPI tag
`testbed`, and every answer names the instance that gave it (`Vouchsim-Testbed-Instance`): the journal is per
instance.

    GET    /testbed/journal?client_id=&kind=&since=&limit=&wait=   {"entries": [...]}, oldest first
    DELETE /testbed/journal                                         clears it (204)
    POST   /testbed/faults   {"match", "action", "times"}          201 the fault, with its "id"
    GET    /testbed/faults                                          {"faults": [...]} with remaining counts
    DELETE /testbed/faults/{id}                                     204 (404 not_found)
    DELETE /testbed/faults                                          every fault (204)
    POST   /testbed/clock    {"advance_seconds": S}                {"now", "offset_seconds"}
    GET    /testbed/clock                                           {"now", "offset_seconds"}
    DELETE /testbed/clock                                           back to real time
    POST   /testbed/reset                                           204, once done
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any, cast

import msgspec
from litestar import Litestar, Response, Router, delete, get, post
from litestar.connection import ASGIConnection
from litestar.datastructures import ResponseHeader, State
from litestar.di import NamedDependency, Provide
from litestar.exceptions import HTTPException, NotAuthorizedException, NotFoundException, ValidationException
from litestar.handlers.base import BaseRouteHandler
from litestar.openapi.spec import Components, SecurityScheme
from litestar.params import FromPath, FromQuery, JSONBody, QueryParameter

from vouchsim.server.core.crypto import constant_time_equals
from vouchsim.server.oauth.bearer import bearer_token
from vouchsim.server.oauth.preregistered import ClientsFileError
from vouchsim.server.testbed.control import ClockView, Testbed
from vouchsim.server.testbed.faults import Fault, FaultRequest
from vouchsim.server.testbed.journal import MAX_WAIT, JournalEntry, split_kinds
from vouchsim.server.testbed.layer import ASGIApp, Message, Receive, Scope, Send, TestbedLayer
from vouchsim.server.testbed.observe import KINDS

TAG = "testbed"
SECURITY_SCHEME = "testbed_token"
INSTANCE_HEADER = "Vouchsim-Testbed-Instance"
# Where `install` puts the testbed in the app's state: the routes serve the testbed of the deployment the app is bound
# to, so one app's routes can be bound to another deployment (the HTTP tests do so, testbed or not).
STATE_KEY = "testbed"
_NO_STORE = {"Cache-Control": "no-store"}


class JournalPage(msgspec.Struct, frozen=True, kw_only=True):
    entries: list[JournalEntry]


class FaultList(msgspec.Struct, frozen=True, kw_only=True):
    faults: list[Fault]


class ClockMove(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """`POST /testbed/clock`: how far to move the server's clock forward, in seconds."""

    advance_seconds: Annotated[float, msgspec.Meta(ge=0)]


def _error(status: int, error: str, description: str) -> Response[Any]:
    return Response(
        content={"error": error, "error_description": description},
        status_code=status,
        headers=_NO_STORE,
        media_type="application/json",
    )


def _since(value: str | None) -> tuple[int | None, datetime | None]:
    """`since` is an entry id (entries after it) or an ISO 8601 time (entries at or after it)."""
    if value is None or value == "":
        return None, None
    if value.isdigit():
        return int(value), None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValidationException("since must be an entry id or an ISO 8601 time") from None
    return None, moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def testbed_router() -> Router:
    """The `/testbed/` endpoints, serving the testbed `install` put in the app's state."""

    async def require_token(connection: ASGIConnection[Any, Any, Any, Any], _handler: BaseRouteHandler) -> None:
        testbed: Testbed = connection.app.state[STATE_KEY]
        presented = bearer_token(connection.headers.get("authorization"))
        if presented is None or not constant_time_equals(presented, testbed.token):
            challenge = 'Bearer realm="vouchsim-testbed"' + (', error="invalid_token"' if presented else "")
            raise NotAuthorizedException(
                detail="The testbed controls need Authorization: Bearer <VOUCHSIM_TESTBED_TOKEN>.",
                headers={"WWW-Authenticate": challenge},
            )

    @get("/journal", summary="The request journal of this instance")
    async def read_journal(
        testbed: NamedDependency[Testbed],
        client_id: FromQuery[str | None] = None,
        kind: FromQuery[list[str] | None] = None,
        since: FromQuery[str | None] = None,
        limit: Annotated[int | None, QueryParameter(ge=1)] = None,
        wait: Annotated[float | None, QueryParameter(ge=0, le=MAX_WAIT)] = None,
    ) -> Response[JournalPage]:
        """Entries oldest first, filtered by client, kind (`kind=token,mcp`), `since` (an entry id, or an
        ISO 8601 time) and `limit` (after `since`: the first N; otherwise the newest N). With `wait` (seconds,
        at most 30) and nothing to show yet, the answer waits for the next matching entry (a long poll)."""
        kinds = split_kinds(kind or [])
        unknown = [value for value in kinds if value not in KINDS]
        if unknown:
            return _error(400, "invalid_request", f"unknown kind {unknown[0]!r}; kinds are {', '.join(KINDS)}")
        since_id, since_at = _since(since)
        journal = testbed.journal
        after = since_id if since_id is not None else journal.last_id

        def matching() -> list[JournalEntry]:
            return journal.query(client_id=client_id, kinds=kinds, since_id=since_id, since_at=since_at, limit=limit)

        entries = matching()
        if not entries and wait:
            deadline = asyncio.get_running_loop().time() + wait
            while not entries:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                await journal.wait(after, left)
                after = journal.last_id
                entries = matching()
        return Response(JournalPage(entries=entries), headers=_NO_STORE)

    @delete("/journal", status_code=204, summary="Clear the journal of this instance")
    async def clear_journal(testbed: NamedDependency[Testbed]) -> None:
        testbed.journal.clear()

    @post("/faults", status_code=201, summary="Inject a fault")
    async def add_fault(testbed: NamedDependency[Testbed], data: JSONBody[FaultRequest]) -> Response[Fault]:
        """`{"match": {kind, client_id, grant_type, mcp_method, tool}, "action": {status, error,
        error_description, retry_after | delay_ms | drop | expire_token}, "times": N}`; `times` defaults to 1,
        `null` means until deleted. In force on every instance once this answers."""
        return Response(await testbed.add_fault(data), status_code=201, headers=_NO_STORE)

    @get("/faults", summary="The faults, with their remaining counts")
    async def list_faults(testbed: NamedDependency[Testbed]) -> Response[FaultList]:
        return Response(FaultList(faults=await testbed.faults()), headers=_NO_STORE)

    @delete("/faults/{fault_id:str}", status_code=204, summary="Remove one fault")
    async def remove_fault(testbed: NamedDependency[Testbed], fault_id: FromPath[str]) -> None:
        if not await testbed.remove_fault(fault_id):
            raise NotFoundException(f"There is no fault {fault_id[:100]!r}.")

    @delete("/faults", status_code=204, summary="Remove every fault")
    async def remove_faults(testbed: NamedDependency[Testbed]) -> None:
        await testbed.remove_faults()

    @get("/clock", summary="The server's clock")
    async def read_clock(testbed: NamedDependency[Testbed]) -> Response[ClockView]:
        return Response(testbed.clock_view(), headers=_NO_STORE)

    @post("/clock", status_code=200, summary="Move the server's clock forward")
    async def move_clock(testbed: NamedDependency[Testbed], data: JSONBody[ClockMove]) -> Response[Any]:
        """Everything that expires follows (codes, tokens, pairings, sessions, delegations and their tokens'
        claims); pending delegations it makes due expire at once. In force on every instance once this answers."""
        try:
            view = await testbed.advance(data.advance_seconds)
        except ValueError as error:
            return _error(400, "invalid_request", str(error))
        return Response(view, headers=_NO_STORE)

    @delete("/clock", status_code=200, summary="Return to real time")
    async def reset_clock(testbed: NamedDependency[Testbed]) -> Response[ClockView]:
        return Response(await testbed.reset_clock(), headers=_NO_STORE)

    @post("/reset", status_code=204, summary="Wipe everything but the signing keys")
    async def reset(testbed: NamedDependency[Testbed]) -> None:
        """Clients, users, devices, connections, tokens, sessions, delegations, faults, the journal and the cached
        metadata documents; the clock returns to real time; the pre-registered clients are read again from
        VOUCHSIM_CLIENTS_FILE. Answers once done, on every instance; 409 (nothing wiped) when the clients file is
        no longer valid."""
        try:
            await testbed.reset()
        except ClientsFileError as error:
            raise HTTPException(status_code=409, detail=str(error)) from None

    return Router(
        path="/testbed",
        route_handlers=[
            read_journal,
            clear_journal,
            add_fault,
            list_faults,
            remove_fault,
            remove_faults,
            read_clock,
            move_clock,
            reset_clock,
            reset,
        ],
        guards=[require_token],
        dependencies={"testbed": Provide(_bound_testbed, sync_to_thread=False)},
        middleware=[cast("Any", _naming_the_instance)],
        tags=[TAG],
        security=[{SECURITY_SCHEME: []}],
        response_headers=[
            ResponseHeader(
                name=INSTANCE_HEADER,
                documentation_only=True,  # sent by `_naming_the_instance`, for the testbed the app is bound to
                value="",  # documented as a string
                description="The instance that answered (its journal)",
            )
        ],
    )


def _bound_testbed(state: State) -> Testbed:
    testbed: Testbed = state[STATE_KEY]
    return testbed


def _naming_the_instance(app: ASGIApp) -> ASGIApp:
    """Every answer of the controls, refusals included, names the instance that gave it (`INSTANCE_HEADER`)."""
    name = INSTANCE_HEADER.lower().encode("latin-1")

    async def naming(scope: Scope, receive: Receive, send: Send) -> None:
        instance = cast("Testbed", scope["app"].state[STATE_KEY]).instance_id.encode("latin-1")

        async def sending(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), (name, instance)]}
            await send(message)

        await app(scope, receive, sending)

    return naming


def openapi_components() -> Components:
    """The bearer scheme the testbed endpoints name in the OpenAPI document."""
    return Components(
        security_schemes={
            SECURITY_SCHEME: SecurityScheme(
                type="http", scheme="bearer", description="VOUCHSIM_TESTBED_TOKEN (printed at start when generated)"
            )
        }
    )


def install(app: Litestar, testbed: Testbed, cors_headers: Callable[[Scope], Mapping[str, str]]) -> None:
    """`testbed` for the `/testbed/` routes, and the journal-and-faults layer around the whole app (the edge, CORS
    and exception handling included); `cors_headers(scope)` gives its fault answers the CORS headers the app's own
    answers carry."""
    app.state[STATE_KEY] = testbed
    # The layer speaks plain ASGI (dicts), not Litestar's typed events: the same thing to the server.
    layer = TestbedLayer(cast("Any", app.asgi_handler), testbed, cors_headers=cors_headers)
    app.asgi_handler = cast("Any", layer)
