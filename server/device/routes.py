"""HTTP for the trusted-device API (docs/device-api.md, docs/delegations.md): `device_router`, at `/device`.

The only module here that knows HTTP. Domain errors become `{"error", "error_description"}` in one place
(`answer`): handlers *return* the error response rather than raise it, so the request's transaction still
commits what the failure recorded (the nonce, an expiry). A failed signature check records nothing.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from contextlib import aclosing, suppress
from functools import partial
from typing import Any, Final, TypeVar

import anyio
import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.datastructures import CacheControlHeader, State
from litestar.di import NamedDependency, Provide
from litestar.enums import ScopeType
from litestar.exceptions import InternalServerException, ValidationException
from litestar.params import FromPath, FromQuery
from litestar.response import ServerSentEvent, ServerSentEventMessage
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED
from litestar.types import ASGIApp, Receive, Scope, Send

from vouchsim.server import openapi
from vouchsim.server.core.errors import VouchsimError
from vouchsim.server.core.runtime import Runtime
from vouchsim.server.delegation.errors import DelegationClosed
from vouchsim.server.delegation.schemas import DelegationList, DelegationView
from vouchsim.server.delegation.service import Admitted, DelegationService
from vouchsim.server.device.auth import (
    AuthenticatedDevice,
    DeviceAuthenticator,
    SignedRequest,
    load_public_key,
    parse_signed_request,
)
from vouchsim.server.device.errors import DeviceRevoked, InvalidRequest
from vouchsim.server.device.schemas import (
    ClaimRequest,
    ConnectionList,
    ConnectionView,
    DecisionRequest,
    DeviceInfo,
    DeviceRevocation,
    EmptyRequest,
    EnrolRequest,
    ErrorBody,
)
from vouchsim.server.device.service import DeviceService
from vouchsim.server.http.issuer import issuer_of
from vouchsim.server.http.lanes import routable_host
from vouchsim.server.pairing.service import DeclinedPairing, IssuedCode, PairingContext, PairingService
from vouchsim.server.storage import topics
from vouchsim.server.storage.events import Subscription
from vouchsim.server.storage.repositories.connections import ConnectionRepository
from vouchsim.server.storage.repositories.devices import DeviceRepository, DeviceSigner
from vouchsim.server.storage.repositories.pairings import PairingRepository
from vouchsim.server.storage.session import DbSession, statement_by_statement, transaction

T = TypeVar("T", bound=msgspec.Struct)
_NO_STORE = {"Cache-Control": "no-store"}
KEEPALIVE_SECONDS = 15.0  # a `: keep-alive` comment on a quiet delegation stream
DEVICE_REVOKED_EVENT = "device_revoked"  # the last event of a revoked device's stream


class DeviceCall:
    """A request signed by an enrolled device, with the services it may use (each built when a handler asks for it:
    a decision needs only `delegations`).

    A failed signature check travels inside the value instead of being raised from the dependency: Litestar
    does not close yield dependencies resolved before a dependency that raises, so raising here would leak the
    request's database session. Reading `device` re-raises it inside the handler, where `answer` returns it.
    """

    __slots__ = ("_db", "_delegations", "_request", "_runtime", "authenticated", "body", "failure")

    def __init__(
        self,
        *,
        authenticated: AuthenticatedDevice | None,
        failure: VouchsimError | None,
        body: bytes,
        request: Request[Any, Any, Any],
        runtime: Runtime,
        db: DbSession,
        delegations: DelegationService,
    ) -> None:
        self.authenticated = authenticated
        self.failure = failure
        self.body = body
        self._request = request
        self._runtime = runtime
        self._db = db
        self._delegations = delegations

    @property
    def device(self) -> AuthenticatedDevice:
        if self.authenticated is None:
            raise self.failure or InvalidRequest("The request is not signed.")
        return self.authenticated

    @property
    def issuer(self) -> str:
        return issuer_of(self._request, self._runtime)

    @property
    def devices(self) -> DeviceService:
        return DeviceService(DeviceRepository(self._db), ConnectionRepository(self._db), self._runtime.clock)

    @property
    def pairings(self) -> PairingService:
        runtime = self._runtime
        return PairingService(PairingRepository(self._db), runtime.clock, runtime.settings, runtime.hmac_key)

    @property
    def delegations(self) -> DelegationService:
        """Inside the request's transaction, so a decision commits with the signature check that admitted it."""
        return self._delegations.within(self._db)


# -- translation, in one place ---------------------------------------------------------------------------


def error_response(error: VouchsimError) -> Response[ErrorBody]:
    # Returned from a handler, the router's `cache_control` adds `no-store`; see `_on_domain_error`.
    return Response(_error_body(error), status_code=error.status)


def _error_body(error: VouchsimError) -> ErrorBody:
    status = error.delegation_status if isinstance(error, DelegationClosed) else msgspec.UNSET
    return ErrorBody(error=error.code, error_description=error.description, status=status)


async def answer(work: Callable[[], Awaitable[msgspec.Struct]], status_code: int = HTTP_200_OK) -> Response[Any]:
    try:
        result = await work()
    except VouchsimError as error:
        return error_response(error)
    return Response(result, status_code=status_code)


def _on_domain_error(_: Request[Any, Any, Any], error: VouchsimError) -> Response[ErrorBody]:
    # Exception handlers' responses skip the router's `cache_control`: say it here.
    response = error_response(error)
    response.headers.update(_NO_STORE)
    return response


def _on_validation_error(request: Request[Any, Any, Any], error: ValidationException) -> Response[ErrorBody]:
    return _on_domain_error(request, InvalidRequest(f"The request is not accepted: {error.detail}"))


def decode_body(body: bytes, schema: type[T]) -> T:
    try:
        return msgspec.json.decode(body, type=schema)
    except msgspec.ValidationError as error:
        raise InvalidRequest(f"The request body is not accepted: {error}.") from None
    except msgspec.DecodeError:
        raise InvalidRequest("The request body is not valid JSON.") from None


def _no_body(body: bytes) -> None:
    if body.strip():
        decode_body(body, EmptyRequest)


# -- the request as signed -----------------------------------------------------------------------------------


def request_target(request: Request[Any, Any, Any]) -> str:
    """The path and query exactly as sent. Servers differ on whether `raw_path` includes the query."""
    return _raw_target(request.scope)


async def _signed(request: Request[Any, Any, Any]) -> SignedRequest:
    body = await request.body()
    return parse_signed_request(request.headers, request.method, request_target(request), body)


async def provide_device_call(
    request: Request[Any, Any, Any], state: State, db: NamedDependency[DbSession]
) -> DeviceCall:
    """Authenticate the signing device (401 otherwise) and hand the handler its services.

    One dependency of its own (`db`), the rest read from the app's state: Litestar resolves sibling dependencies in
    an anyio task group, a task each, which cost a decision more CPU than its signature check."""
    runtime: Runtime = state.runtime
    delegations: DelegationService = state.resources.delegations
    devices = DeviceRepository(db)
    device: AuthenticatedDevice | None = None
    failure: VouchsimError | None = None
    body = b""
    try:
        signed = await _signed(request)
        body = signed.body
        device = await DeviceAuthenticator(devices, runtime.clock, runtime.settings).authenticate(signed)
    except VouchsimError as error:  # nothing was written before the signature checked out
        failure = error
    return DeviceCall(
        authenticated=device,
        failure=failure,
        body=body,
        request=request,
        runtime=runtime,
        db=db,
        delegations=delegations,
    )


def _documented(
    ok: tuple[int, Any],
    *statuses: int,
    body: type[msgspec.Struct] | None = None,
    optional_body: bool = False,
) -> Any:
    """The OpenAPI view of a signed endpoint: its answer, its error answers (401 for every one: the signature), and
    the body it decodes itself, after the signature (server.openapi)."""
    status, answer = ok
    responses = {status: openapi.response(answer, "Done."), **openapi.error_responses(400, 401, *statuses)}
    documented: dict[str, Any] = {"responses": responses}
    if body is not None:
        documented["operation_class"] = openapi.operation(body=openapi.request_body(body, required=not optional_body))
    return documented


# -- endpoints -----------------------------------------------------------------------------------------------


@post("/enrol", status_code=HTTP_201_CREATED, **_documented((201, DeviceInfo), 409, body=EnrolRequest))
async def enrol(
    request: Request[Any, Any, Any], db: NamedDependency[DbSession], runtime: NamedDependency[Runtime]
) -> Response[Any]:
    """Enrol a device key, signed by that key (proof of possession); creates its user."""

    async def work() -> msgspec.Struct:
        signed = await _signed(request)
        payload = decode_body(signed.body, EnrolRequest)
        key = load_public_key(payload.public_key)
        if key is None:
            raise InvalidRequest("public_key must be the raw 32-byte Ed25519 key, base64url without padding.")
        devices = DeviceRepository(db)
        await DeviceAuthenticator(devices, runtime.clock, runtime.settings).verify_enrolment(signed, key)
        service = DeviceService(devices, ConnectionRepository(db), runtime.clock)
        return await service.enrol(payload.public_key, payload.name, issuer_of(request, runtime))

    return await answer(work, HTTP_201_CREATED)


@get("/me", **_documented((200, DeviceInfo)))
async def me(call: NamedDependency[DeviceCall]) -> Response[Any]:
    return await answer(lambda: call.devices.me(call.device.device_id, call.issuer))


@delete("/me", status_code=HTTP_200_OK, **_documented((200, DeviceRevocation), body=EmptyRequest, optional_body=True))
async def forget_device(call: NamedDependency[DeviceCall], cut_connections: FromQuery[bool] = False) -> Response[Any]:
    """The device forgets itself ("forget this device", a lost phone's twin): its key stops working at once and
    its event streams close. `cut_connections=true` also unpairs every connection it paired."""

    async def work() -> msgspec.Struct:
        device = call.device  # the signature first, then the body
        _no_body(call.body)
        return await call.devices.revoke_device(
            device.device_id, cut_connections=cut_connections, delegations=call.delegations
        )

    return await answer(work)


@post(
    "/pairings/claim", status_code=HTTP_200_OK, **_documented((200, PairingContext), 404, 409, 410, body=ClaimRequest)
)
async def claim_pairing(call: NamedDependency[DeviceCall]) -> Response[Any]:
    async def work() -> msgspec.Struct:
        device = call.device  # the signature first, then the body
        payload = decode_body(call.body, ClaimRequest)
        return await call.pairings.claim(device.device_id, payload.qr_payload, call.issuer)

    return await answer(work)


@post(
    "/pairings/{pairing_id:str}/approve",
    status_code=HTTP_200_OK,
    **_documented((200, IssuedCode), 404, 409, 410, body=EmptyRequest, optional_body=True),
)
async def approve_pairing(call: NamedDependency[DeviceCall], pairing_id: FromPath[str]) -> Response[Any]:
    async def work() -> msgspec.Struct:
        device = call.device  # the signature first, then the body
        _no_body(call.body)
        return await call.pairings.approve(device.device_id, pairing_id)

    return await answer(work)


@post(
    "/pairings/{pairing_id:str}/decline",
    status_code=HTTP_200_OK,
    **_documented((200, DeclinedPairing), 404, 409, 410, body=EmptyRequest, optional_body=True),
)
async def decline_pairing(call: NamedDependency[DeviceCall], pairing_id: FromPath[str]) -> Response[Any]:
    async def work() -> msgspec.Struct:
        device = call.device  # the signature first, then the body
        _no_body(call.body)
        return await call.pairings.decline(device.device_id, pairing_id)

    return await answer(work)


@get("/connections", **_documented((200, ConnectionList)))
async def list_connections(call: NamedDependency[DeviceCall]) -> Response[Any]:
    return await answer(lambda: call.devices.connections_of(call.device.user_id))


@delete("/connections/{connection_id:str}", status_code=HTTP_200_OK, **_documented((200, ConnectionView), 404))
async def revoke_connection(call: NamedDependency[DeviceCall], connection_id: FromPath[str]) -> Response[Any]:
    return await answer(lambda: call.devices.revoke_connection(call.device.user_id, connection_id))


# -- delegations (docs/delegations.md) -----------------------------------------------------------------------


@get("/delegations", **_documented((200, DelegationList)))
async def list_delegations(call: NamedDependency[DeviceCall], status: FromQuery[str] = "pending") -> Response[Any]:
    """`pending` (default), `history` or `all`, newest first."""

    async def work() -> msgspec.Struct:
        views = await call.delegations.list_for_user(call.device.user_id, status)
        return DelegationList(delegations=views)

    return await answer(work)


@get(
    "/delegations/stream",
    responses={
        200: openapi.response(
            str, "Server-sent events: `event: delegation` messages and keep-alives.", "text/event-stream"
        ),
        **openapi.error_responses(400, 401),
    },
)
async def stream_delegations(
    call: NamedDependency[DeviceCall], delegations: NamedDependency[DelegationService]
) -> Response[Any]:
    """Server-sent events: every pending delegation, then each one created or changed; keep-alives between. Ends
    with a `device_revoked` event as soon as the device is revoked.

    The request's own session is closed before the stream starts (Litestar ends dependencies when the handler
    returns); the stream reads with short units of work of the app-wide service, only when woken.
    """
    try:
        device = call.device
    except VouchsimError as error:
        return error_response(error)

    async def still_trusted() -> bool:
        trusted = False
        with anyio.CancelScope(shield=True):  # as the feed's reads: a hang-up must not interrupt a rollback
            async with delegations.transactions() as session:
                trusted = await DeviceRepository(session).is_active(device.device_id)
        return trusted

    events = delegation_events(delegations, device.user_id, device_id=device.device_id, still_trusted=still_trusted)
    return ServerSentEvent(events, headers=_NO_STORE)


async def delegation_events(
    delegations: DelegationService,
    user_id: str,
    keepalive: float = KEEPALIVE_SECONDS,
    *,
    device_id: str | None = None,
    still_trusted: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncIterator[ServerSentEventMessage]:
    """The stream's messages: `event: delegation` with the object as data, or a `: keep-alive` comment.

    With `device_id`, the stream ends with one `event: device_revoked` message when that device is revoked: at
    once when the revocation is announced (`revoked:device:<id>`, from every instance on PostgreSQL), and, for a
    revocation nobody announced to this process (`vouchsim devices revoke` against SQLite), at the next
    keep-alive, when `still_trusted` is asked again.
    """
    if device_id is None:
        async with aclosing(_messages(delegations, user_id, keepalive)) as messages:
            async for message in messages:
                yield message
        return
    async with delegations.events.subscribe(topics.revoked_device(device_id)) as revoked:
        # Subscribed first, then checked: a revocation committed in between is not missed.
        if still_trusted is not None and not await still_trusted():
            yield _revoked_message()
            return
        # One queue the stream drains whole: the feed's messages, the revocation, or the feed's failure. A burst
        # of a thousand changes then leaves in a few turns of the loop, not a few turns per message (a task per
        # wait and a bounded hand-over made each message wait for turns a flood of requests kept long).
        outbox: asyncio.Queue[_Outgoing] = asyncio.Queue()
        pump = asyncio.create_task(_pump(_messages(delegations, user_id, keepalive), outbox))
        watch = asyncio.create_task(_watch_revocation(revoked, outbox))
        try:
            while True:
                batch = [await outbox.get()]
                while not outbox.empty():
                    batch.append(outbox.get_nowait())
                for item in batch:
                    if item is _REVOKED:
                        yield _revoked_message()
                        return
                    if isinstance(item, Exception):
                        raise item  # the feed failed
                    assert isinstance(item, ServerSentEventMessage)
                    yield item
                    if item.comment is not None and still_trusted is not None and not await still_trusted():
                        yield _revoked_message()
                        return
        finally:  # the device hung up, or the stream ended: nothing of it may outlive the response
            for task in (watch, pump):
                task.cancel()
            with suppress(asyncio.CancelledError):
                await pump


class _Revoked:
    """The stream's last item: the device was revoked."""


_REVOKED = _Revoked()
_Outgoing = ServerSentEventMessage | _Revoked | Exception


async def _messages(
    delegations: DelegationService, user_id: str, keepalive: float
) -> AsyncGenerator[ServerSentEventMessage, None]:
    async with aclosing(delegations.changes(user_id, keepalive=keepalive)) as feed:
        async for view in feed:
            if view is None:
                yield ServerSentEventMessage(data=None, comment="keep-alive")
            else:
                yield ServerSentEventMessage(data=msgspec.json.encode(view).decode(), event="delegation")


async def _pump(messages: AsyncGenerator[ServerSentEventMessage, None], outbox: asyncio.Queue[_Outgoing]) -> None:
    """Run the feed in a task of its own, so the stream can end (a revocation) while the feed is waiting."""
    try:
        async with aclosing(messages) as feed:
            async for message in feed:
                outbox.put_nowait(message)
    except Exception as error:  # raised in the stream, which then ends
        outbox.put_nowait(error)


async def _watch_revocation(revoked: Subscription, outbox: asyncio.Queue[_Outgoing]) -> None:
    await revoked.get()
    outbox.put_nowait(_REVOKED)


def _revoked_message() -> ServerSentEventMessage:
    body = ErrorBody(error=DeviceRevoked.code, error_description="This device was revoked: the stream ends here.")
    return ServerSentEventMessage(data=msgspec.json.encode(body).decode(), event=DEVICE_REVOKED_EVENT)


@post(
    "/delegations/{delegation_id:str}/decision",
    status_code=HTTP_200_OK,
    **_documented((200, DelegationView), 404, 409, body=DecisionRequest),
)
async def decide_delegation(
    request: Request[Any, Any, Any], state: State, db: NamedDependency[DbSession], delegation_id: FromPath[str]
) -> Response[Any]:
    """A signed decision. Not through `DeviceCall`: the device is read with the delegation (`decide_signed`).
    Its plain case skips Litestar (`decision_lane`); this route answers the rest, and documents it."""
    body = await request.body()
    target = request_target(request)
    return await answer(lambda: decide(request.headers, target, body, delegation_id, db, state))


async def decide(
    headers: Mapping[str, str], target: str, body: bytes, delegation_id: str, db: DbSession, state: State
) -> msgspec.Struct:
    """The decision on `delegation_id`, in `db`'s unit of work (statement by statement on PostgreSQL); VouchsimError
    when it is refused, with the checks in `DeviceCall`'s order: the signature first, then the body, then the
    decision itself."""
    runtime: Runtime = state.runtime
    delegations: DelegationService = state.resources.delegations
    signed = parse_signed_request(headers, "POST", target, body)
    # Each write of a decision is one statement that stands alone (the nonce, the compare-and-swap and its NOTIFY go
    # together): on PostgreSQL, no BEGIN and COMMIT around them.
    await statement_by_statement(db)
    authenticator = DeviceAuthenticator(DeviceRepository(db), runtime.clock, runtime.settings)
    try:
        payload = decode_body(signed.body, DecisionRequest)
    except InvalidRequest:
        await authenticator.authenticate(signed)
        raise

    async def admit(signer: DeviceSigner | None, nonce_seen: bool | None) -> Admitted:
        device = await authenticator.admit(signed, signer, nonce_seen=nonce_seen)
        if nonce_seen is None:  # remembered by `admit`, as for any request
            return Admitted(device.user_id)
        return Admitted(device.user_id, authenticator.nonce_of(signed), partial(authenticator.remember, signed))

    return await delegations.within(db).decide_signed(
        device_id=signed.device_id,
        delegation_id=delegation_id,
        decision=payload.decision,
        nonce=payload.nonce,
        signature=payload.signature,
        admit=admit,
        request_nonce=signed.nonce,
    )


# -- the decision's fast lane ----------------------------------------------------------------------------------

_DECISION_PATH: Final = re.compile(r"\A/device/delegations/([^/]+)/decision\Z")
_JSON_NO_STORE: Final = ((b"cache-control", b"no-store"), (b"content-type", b"application/json"))
# What answers an unexpected failure as Litestar's exception handling would have (the composition root has it).
Failure = Callable[[Scope, Receive, Send, Exception], Awaitable[None]]


def decision_lane(app: ASGIApp, failure: Failure) -> ASGIApp:
    """`app` with the plain case of a decision served first, with no `Request`, dependency, signature model or
    `Response` built for it (Litestar's share of a decision was about a tenth of its CPU): `POST` at exactly
    `/device/delegations/<id>/decision`, no root path, a `Host` the router would accept. The answers are byte for
    byte the route's (a test compares); anything else (`…/decision/`, other methods, an odd `Host`) still goes through
    Litestar to `decide_delegation`. It runs inside the edge, so CORS, rate limits, the input guard, and the testbed's
    journal and faults around it, see it as before."""

    async def lane(scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == ScopeType.HTTP
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and (matched := _DECISION_PATH.match(scope["path"])) is not None
        ):
            headers = _first_headers(scope)
            if routable_host(headers.get("host")):
                await _decide_plain(scope, receive, send, matched[1], headers, failure)
                return
        await app(scope, receive, send)

    return lane


def _first_headers(scope: Scope) -> dict[str, str]:
    """The request's headers by lower-case name, the first of each (as Litestar's `request.headers.get`)."""
    headers: dict[str, str] = {}
    for name, value in scope["headers"]:
        headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
    return headers


async def _decide_plain(
    scope: Scope, receive: Receive, send: Send, delegation_id: str, headers: dict[str, str], failure: Failure
) -> None:
    state: State = scope["app"].state
    try:
        body = await _body(receive)
        async with transaction(state.resources.sessions) as db:  # the unit of work the `db` dependency opens
            try:
                result = await decide(headers, _raw_target(scope), body, delegation_id, db, state)
                status = HTTP_200_OK
            except VouchsimError as error:  # an answer: what it recorded commits (see `answer`)
                result, status = _error_body(error), error.status
    except Exception as error:  # a bug, or what a parser or the database refused: as Litestar would answer
        await failure(scope, receive, send, error)
        return
    content = msgspec.json.encode(result)
    length = (b"content-length", str(len(content)).encode())
    await send({"type": "http.response.start", "status": status, "headers": [*_JSON_NO_STORE, length]})
    await send({"type": "http.response.body", "body": content, "more_body": False})


async def _body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise InternalServerException("client disconnected prematurely")  # Litestar's words
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _raw_target(scope: Scope) -> str:
    """`request_target`, from the scope."""
    raw: bytes = scope.get("raw_path") or scope["path"].encode()
    path = raw.split(b"?", 1)[0].decode("latin-1")
    query: bytes = scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


@post(
    "/delegations/{delegation_id:str}/revoke",
    status_code=HTTP_200_OK,
    **_documented((200, DelegationView), 404, 409, body=EmptyRequest, optional_body=True),
)
async def revoke_delegation(call: NamedDependency[DeviceCall], delegation_id: FromPath[str]) -> Response[Any]:
    async def work() -> msgspec.Struct:
        device = call.device  # the signature first, then the body
        _no_body(call.body)
        return await call.delegations.revoke_by_device(user_id=device.user_id, delegation_id=delegation_id)

    return await answer(work)


device_router = Router(
    path="/device",
    route_handlers=[
        enrol,
        me,
        forget_device,
        claim_pairing,
        approve_pairing,
        decline_pairing,
        list_connections,
        revoke_connection,
        list_delegations,
        stream_delegations,
        decide_delegation,
        revoke_delegation,
    ],
    dependencies={"call": Provide(provide_device_call)},
    exception_handlers={VouchsimError: _on_domain_error, ValidationException: _on_validation_error},
    cache_control=CacheControlHeader(no_store=True),
    tags=["device"],
)
