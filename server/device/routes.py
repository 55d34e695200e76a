"""HTTP for the trusted-device API (docs/device-api.md): `device_router`, mounted at `/device`.

The only module here that knows HTTP. Domain errors become `{"error", "error_description"}` in one place
(`answer`): handlers *return* the error response rather than raise it, so the request's transaction still
commits what the failure recorded (the nonce, an expiry). A failed signature check records nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from litestar import Request, Response, Router, delete, get, post
from litestar.datastructures import CacheControlHeader
from litestar.di import NamedDependency, Provide
from litestar.exceptions import ValidationException
from litestar.params import FromPath
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED

from server.core.errors import VouchsimError
from server.core.issuer import derive_issuer
from server.core.runtime import Runtime
from server.device.auth import (
    AuthenticatedDevice,
    DeviceAuthenticator,
    SignedRequest,
    load_public_key,
    parse_signed_request,
)
from server.device.errors import InvalidRequest
from server.device.schemas import ClaimRequest, EmptyRequest, EnrolRequest, ErrorBody
from server.device.service import DeviceService
from server.pairing.service import PairingService
from server.storage.repositories.connections import ConnectionRepository
from server.storage.repositories.devices import DeviceRepository
from server.storage.repositories.pairings import PairingRepository
from server.storage.session import DbSession

T = TypeVar("T", bound=msgspec.Struct)
_NO_STORE = {"Cache-Control": "no-store"}


@dataclass(frozen=True)
class DeviceCall:
    """A request signed by an enrolled device, with the services it may use.

    A failed signature check travels inside the value instead of being raised from the dependency: Litestar
    does not close yield dependencies resolved before a dependency that raises, so raising here would leak the
    request's database session. Reading `device` re-raises it inside the handler, where `answer` returns it.
    """

    authenticated: AuthenticatedDevice | None
    failure: VouchsimError | None
    body: bytes
    issuer: str
    devices: DeviceService
    pairings: PairingService

    @property
    def device(self) -> AuthenticatedDevice:
        if self.authenticated is None:
            raise self.failure or InvalidRequest("The request is not signed.")
        return self.authenticated


# -- translation, in one place ---------------------------------------------------------------------------


def error_response(error: VouchsimError) -> Response[ErrorBody]:
    # Returned from a handler, the router's `cache_control` adds `no-store`; see `_on_domain_error`.
    return Response(ErrorBody(error=error.code, error_description=error.description), status_code=error.status)


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
    raw: bytes = request.scope.get("raw_path") or request.scope["path"].encode()
    path = raw.split(b"?", 1)[0].decode("latin-1")
    query: bytes = request.scope.get("query_string", b"")
    return f"{path}?{query.decode('latin-1')}" if query else path


def issuer_of(request: Request[Any, Any, Any], runtime: Runtime) -> str:
    return derive_issuer(
        runtime.settings.issuer,
        scheme=request.url.scheme,
        host=request.headers.get("host"),
        forwarded_proto=request.headers.get("x-forwarded-proto"),
    )


async def _signed(request: Request[Any, Any, Any]) -> SignedRequest:
    body = await request.body()
    return parse_signed_request(request.headers, request.method, request_target(request), body)


async def provide_device_call(
    request: Request[Any, Any, Any], db: NamedDependency[DbSession], runtime: NamedDependency[Runtime]
) -> DeviceCall:
    """Authenticate the signing device (401 otherwise) and hand the handler its services."""
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
        issuer=issuer_of(request, runtime),
        devices=DeviceService(devices, ConnectionRepository(db), runtime.clock),
        pairings=PairingService(PairingRepository(db), runtime.clock, runtime.settings, runtime.hmac_key),
    )


# -- endpoints -----------------------------------------------------------------------------------------------


@post("/enrol", status_code=HTTP_201_CREATED)
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


@get("/me")
async def me(call: NamedDependency[DeviceCall]) -> Response[Any]:
    return await answer(lambda: call.devices.me(call.device.device_id, call.issuer))


@post("/pairings/claim", status_code=HTTP_200_OK)
async def claim_pairing(call: NamedDependency[DeviceCall]) -> Response[Any]:
    async def work() -> msgspec.Struct:
        device = call.device  # the signature first, then the body
        payload = decode_body(call.body, ClaimRequest)
        return await call.pairings.claim(device.device_id, payload.qr_payload, call.issuer)

    return await answer(work)


@post("/pairings/{pairing_id:str}/approve", status_code=HTTP_200_OK)
async def approve_pairing(call: NamedDependency[DeviceCall], pairing_id: FromPath[str]) -> Response[Any]:
    async def work() -> msgspec.Struct:
        device = call.device  # the signature first, then the body
        _no_body(call.body)
        return await call.pairings.approve(device.device_id, pairing_id)

    return await answer(work)


@post("/pairings/{pairing_id:str}/decline", status_code=HTTP_200_OK)
async def decline_pairing(call: NamedDependency[DeviceCall], pairing_id: FromPath[str]) -> Response[Any]:
    async def work() -> msgspec.Struct:
        device = call.device  # the signature first, then the body
        _no_body(call.body)
        return await call.pairings.decline(device.device_id, pairing_id)

    return await answer(work)


@get("/connections")
async def list_connections(call: NamedDependency[DeviceCall]) -> Response[Any]:
    return await answer(lambda: call.devices.connections_of(call.device.user_id))


@delete("/connections/{connection_id:str}", status_code=HTTP_200_OK)
async def revoke_connection(call: NamedDependency[DeviceCall], connection_id: FromPath[str]) -> Response[Any]:
    return await answer(lambda: call.devices.revoke_connection(call.device.user_id, connection_id))


device_router = Router(
    path="/device",
    route_handlers=[
        enrol,
        me,
        claim_pairing,
        approve_pairing,
        decline_pairing,
        list_connections,
        revoke_connection,
    ],
    dependencies={"call": Provide(provide_device_call)},
    exception_handlers={VouchsimError: _on_domain_error, ValidationException: _on_validation_error},
    cache_control=CacheControlHeader(no_store=True),
    tags=["device"],
)
