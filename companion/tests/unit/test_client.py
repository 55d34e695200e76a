"""DeviceApiClient against a MockTransport: request shapes, signatures, typed results, error mapping."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from companion.tests.fakes import (
    ISSUER,
    NOW,
    FakeDeviceServer,
    b64url_decode,
    enrolment_for,
    error,
    expected_canonical,
    pairing_uri,
    verify_request,
)
from vouchsim.companion.core import errors
from vouchsim.companion.core.client import DeviceApiClient
from vouchsim.companion.core.keystore import Keystore, fingerprint, generate_key, public_key_bytes
from vouchsim.companion.core.schemas import Connection, DeviceInfo, PairingApproval, PairingContext, PairingDecline

pytestmark = pytest.mark.anyio

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def server() -> FakeDeviceServer:
    return FakeDeviceServer(clock=lambda: NOW)


@pytest.fixture
async def http(server: FakeDeviceServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=ISSUER, transport=server.transport) as client:
        yield client


def make_client(http: httpx.AsyncClient, state_dir: Path) -> DeviceApiClient:
    return DeviceApiClient(http, Keystore(state_dir), clock=lambda: NOW)


@pytest.fixture
async def enrolled(http: httpx.AsyncClient, state_dir: Path) -> DeviceApiClient:
    client = make_client(http, state_dir)
    await client.enrol("Pixel of QA")
    return client


async def client_with(handler: Handler, state_dir: Path) -> tuple[DeviceApiClient, httpx.AsyncClient]:
    """A client whose enrolment happened on a fake server, now talking to `handler`."""
    server = FakeDeviceServer(clock=lambda: NOW)
    async with httpx.AsyncClient(base_url=ISSUER, transport=server.transport) as http:
        await make_client(http, state_dir).enrol("Pixel of QA")
    http = httpx.AsyncClient(base_url=ISSUER, transport=httpx.MockTransport(handler))
    return make_client(http, state_dir), http


# --- enrolment -----------------------------------------------------------------------------------------


async def test_enrol_sends_a_signed_proof_of_possession_and_saves_the_record(
    http: httpx.AsyncClient, server: FakeDeviceServer, state_dir: Path
) -> None:
    info = await make_client(http, state_dir).enrol("  Pixel of QA ")
    request = server.requests[-1]
    assert (request.method, request.url.path) == ("POST", "/device/enrol")
    assert request.headers["Vouch-Device-Id"] == "new"
    assert request.headers["Content-Type"] == "application/json"
    body = json.loads(request.content)
    assert body["name"] == "Pixel of QA"
    assert isinstance(info, DeviceInfo)
    assert info.device_id == "dev_1"
    identity = Keystore(state_dir).load_identity()
    assert identity.enrolment.fingerprint == fingerprint(public_key_bytes(identity.key)) == info.fingerprint
    assert identity.enrolment.server_url == ISSUER
    assert identity.enrolment.issuer == ISSUER


async def test_enrol_reuses_a_stored_key_unless_asked_for_a_new_one(
    http: httpx.AsyncClient, server: FakeDeviceServer, state_dir: Path
) -> None:
    client = make_client(http, state_dir)
    first = await client.enrol("one")
    with pytest.raises(errors.DeviceExistsError):
        await client.enrol("again")  # same key: the server already knows it
    second = await client.enrol("fresh", new_key=True)
    assert second.fingerprint != first.fingerprint
    assert Keystore(state_dir).load_identity().enrolment.device_id == second.device_id == "dev_2"


async def test_failed_enrolment_keeps_the_previous_identity(
    http: httpx.AsyncClient, server: FakeDeviceServer, state_dir: Path
) -> None:
    client = make_client(http, state_dir)
    await client.enrol("one")
    before = (state_dir / "device_key.pem").read_bytes()
    server.next_error = error(400, "invalid_request", "bad name")
    with pytest.raises(errors.InvalidRequestError):
        await client.enrol("two", new_key=True)
    assert (state_dir / "device_key.pem").read_bytes() == before


async def test_enrol_rejects_a_server_that_reports_another_fingerprint(state_dir: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        info = {
            "device_id": "dev_1",
            "user_id": "usr_1",
            "name": "n",
            "fingerprint": "0000-0000-0000-0000",
            "issuer": ISSUER,
            "enrolled_at": "2026-11-25T15:00:00Z",
        }
        return httpx.Response(201, json=info)

    async with httpx.AsyncClient(base_url=ISSUER, transport=httpx.MockTransport(handler)) as http:
        with pytest.raises(errors.UnexpectedResponseError, match="fingerprint"):
            await make_client(http, state_dir).enrol("n")
    assert Keystore(state_dir).read_enrolment() is None


@pytest.mark.parametrize("name", ["", "   ", "x" * 65])
async def test_enrol_checks_the_name_before_calling(
    http: httpx.AsyncClient, server: FakeDeviceServer, state_dir: Path, name: str
) -> None:
    with pytest.raises(errors.InvalidDeviceNameError):
        await make_client(http, state_dir).enrol(name)
    assert server.requests == []


async def test_calls_before_enrolment_fail_without_a_request(
    http: httpx.AsyncClient, server: FakeDeviceServer, state_dir: Path
) -> None:
    with pytest.raises(errors.NotEnrolledError):
        await make_client(http, state_dir).me()
    assert server.requests == []


def test_client_needs_a_base_url(state_dir: Path) -> None:
    with pytest.raises(ValueError, match="base_url"):
        DeviceApiClient(httpx.AsyncClient(), Keystore(state_dir))


# --- signed calls --------------------------------------------------------------------------------------


async def test_every_call_is_signed_over_what_was_sent(enrolled: DeviceApiClient, server: FakeDeviceServer) -> None:
    uri = server.open_pairing()
    await enrolled.me()
    context = await enrolled.claim(uri)
    await enrolled.approve_pairing(context.pairing_id)
    await enrolled.connections()
    device = server.devices["dev_1"]
    signed = server.requests[1:]
    assert [r.method for r in signed] == ["GET", "POST", "POST", "GET"]
    for request in signed:
        assert request.headers["Vouch-Device-Id"] == "dev_1"
        assert request.headers["Vouch-Timestamp"] == str(NOW)
        assert verify_request(request, device.public_key), expected_canonical(request)
    assert len({r.headers["Vouch-Nonce"] for r in server.requests}) == len(server.requests)


async def test_me_returns_device_info(enrolled: DeviceApiClient) -> None:
    me = await enrolled.me()
    assert (me.device_id, me.user_id, me.name) == ("dev_1", "usr_1", "Pixel of QA")


async def test_claim_sends_the_payload_and_returns_the_context(
    enrolled: DeviceApiClient, server: FakeDeviceServer
) -> None:
    uri = server.open_pairing()
    context = await enrolled.claim(f"  {uri}\n")
    assert json.loads(server.requests[-1].content) == {"qr_payload": uri}
    assert isinstance(context, PairingContext)
    assert (context.pairing_id, context.status, context.client_name) == (
        "pair_1",
        "claimed",
        "Acme Agent Client",
    )
    assert context.scopes == ["identity", "delegation"]
    assert context.expires_at.isoformat() == "2026-11-25T15:05:00+00:00"


async def test_claim_refuses_another_issuer_before_calling(enrolled: DeviceApiClient, server: FakeDeviceServer) -> None:
    sent = len(server.requests)
    with pytest.raises(errors.IssuerMismatchError, match=r"https://evil\.example"):
        await enrolled.claim(pairing_uri("https://evil.example"))
    with pytest.raises(errors.NotAPairingQrError):
        await enrolled.claim("https://example.com/")
    assert len(server.requests) == sent


async def test_approve_and_decline(enrolled: DeviceApiClient, server: FakeDeviceServer) -> None:
    first = await enrolled.claim(server.open_pairing())
    approval = await enrolled.approve_pairing(first.pairing_id)
    assert isinstance(approval, PairingApproval)
    assert (approval.status, approval.pairing_code) == ("approved", "BCDF-GHJK")
    assert server.requests[-1].content == b""  # empty body, hashed as the empty string
    second = await enrolled.claim(server.open_pairing())
    decline = await enrolled.decline_pairing(second.pairing_id)
    assert decline == PairingDecline(pairing_id="pair_2", status="declined")
    assert server.pairing("pair_2").status == "declined"


async def test_connections_and_revoke(enrolled: DeviceApiClient, server: FakeDeviceServer) -> None:
    server.add_connection("dev_1", "Old")
    server.add_connection("dev_1", "New")
    listing = await enrolled.connections()
    assert [c.client_name for c in listing] == ["New", "Old"]
    assert all(isinstance(c, Connection) and c.revoked_at is None and c.last_used_at is None for c in listing)
    revoked = await enrolled.revoke_connection("conn_1")
    assert server.requests[-1].method == "DELETE"
    assert revoked.connection_id == "conn_1"
    assert revoked.revoked_at is not None


async def test_ids_are_escaped_into_one_path_segment(enrolled: DeviceApiClient, server: FakeDeviceServer) -> None:
    with pytest.raises(errors.ConnectionNotFoundError):
        await enrolled.revoke_connection("../pairings/x")
    assert server.requests[-1].url.raw_path == b"/device/connections/..%2Fpairings%2Fx"
    assert verify_request(server.requests[-1], server.devices["dev_1"].public_key)


async def test_a_base_url_path_prefix_is_part_of_the_signed_path(state_dir: Path) -> None:
    seen: list[httpx.Request] = []

    def behind_proxy(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raw = b64url_decode(json.loads(request.content)["public_key"])
        info = {
            "device_id": "dev_1",
            "user_id": "usr_1",
            "name": "n",
            "fingerprint": fingerprint(raw),
            "issuer": ISSUER,
            "enrolled_at": "2026-11-25T15:00:00Z",
        }
        return httpx.Response(201, json=info)

    transport = httpx.MockTransport(behind_proxy)
    async with httpx.AsyncClient(base_url=f"{ISSUER}/vouch/", transport=transport) as http:
        await make_client(http, state_dir).enrol("n")
    (request,) = seen
    assert request.url.raw_path == b"/vouch/device/enrol"
    public_key = Keystore(state_dir).load_identity().key.public_key()
    assert verify_request(request, public_key)
    assert Keystore(state_dir).load_identity().enrolment.server_url == f"{ISSUER}/vouch"


# --- failures ------------------------------------------------------------------------------------------

ERROR_CASES = [
    (400, "invalid_request", errors.InvalidRequestError),
    (401, "invalid_signature", errors.InvalidSignatureError),
    (401, "device_revoked", errors.DeviceRevokedError),
    (409, "device_exists", errors.DeviceExistsError),
    (400, "invalid_qr_payload", errors.InvalidQrPayloadError),
    (404, "pairing_not_found", errors.PairingNotFoundError),
    (410, "pairing_expired", errors.PairingExpiredError),
    (409, "pairing_already_claimed", errors.PairingAlreadyClaimedError),
    (409, "pairing_closed", errors.PairingClosedError),
    (404, "connection_not_found", errors.ConnectionNotFoundError),
    (404, "delegation_not_found", errors.DelegationNotFoundError),
    (409, "delegation_closed", errors.DelegationClosedError),
    (400, "invalid_decision", errors.InvalidDecisionError),
]


@pytest.mark.parametrize(("status", "code", "cls"), ERROR_CASES)
async def test_error_codes_map_to_typed_exceptions(
    state_dir: Path, status: int, code: str, cls: type[errors.ApiError]
) -> None:
    client, http = await client_with(lambda r: error(status, code, f"Server says {code}."), state_dir)
    async with http:
        with pytest.raises(cls) as caught:
            await client.approve_pairing("pair_1")
    assert type(caught.value) is cls
    assert (caught.value.status, caught.value.error_code) == (status, code)
    assert str(caught.value) == f"Server says {code}."


def test_every_documented_code_has_its_own_class() -> None:
    assert {code for _, code, _ in ERROR_CASES} == set(errors.API_ERRORS)
    assert len({cls for _, _, cls in ERROR_CASES}) == len(ERROR_CASES)


async def test_unknown_error_code_keeps_its_code(state_dir: Path) -> None:
    client, http = await client_with(lambda r: error(429, "slow_down", "Too many requests."), state_dir)
    async with http:
        with pytest.raises(errors.ApiError) as caught:
            await client.me()
    assert type(caught.value) is errors.ApiError
    assert (caught.value.status, caught.value.error_code, str(caught.value)) == (
        429,
        "slow_down",
        "Too many requests.",
    )


async def test_error_without_description_uses_the_default_message(state_dir: Path) -> None:
    client, http = await client_with(lambda r: httpx.Response(410, json={"error": "pairing_expired"}), state_dir)
    async with http:
        with pytest.raises(errors.PairingExpiredError, match="This pairing has expired"):
            await client.approve_pairing("pair_1")


@pytest.mark.parametrize(
    ("response", "match"),
    [
        (httpx.Response(500, text="Internal Server Error"), "HTTP 500"),
        (httpx.Response(502, html="<h1>Bad gateway</h1>"), "HTTP 502"),
        (httpx.Response(404, text="not json"), "HTTP 404"),
        (httpx.Response(302, headers={"location": "https://other/"}), "redirected to https://other/"),
        (httpx.Response(200, text="{"), "not what the device API promises"),
        (httpx.Response(200, json={"device_id": "dev_1"}), "not what the device API promises"),
    ],
)
async def test_unexpected_responses_are_typed(state_dir: Path, response: httpx.Response, match: str) -> None:
    client, http = await client_with(lambda r: response, state_dir)
    async with http:
        with pytest.raises(errors.UnexpectedResponseError, match=match):
            await client.me()


@pytest.mark.parametrize(
    ("exc", "cls"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), errors.ServerUnreachableError),
        (httpx.ConnectTimeout("timed out"), errors.ServerTimeoutError),
        (httpx.ReadTimeout("timed out"), errors.ServerTimeoutError),
        (httpx.RemoteProtocolError("peer closed connection"), errors.TransportError),
        (httpx.ReadError("reset"), errors.TransportError),
    ],
)
async def test_transport_failures_are_typed(state_dir: Path, exc: httpx.HTTPError, cls: type[Exception]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    client, http = await client_with(handler, state_dir)
    async with http:
        with pytest.raises(cls) as caught:
            await client.connections()
    assert type(caught.value) is cls
    assert ISSUER in str(caught.value)
    assert isinstance(caught.value.__cause__, httpx.HTTPError)


async def test_a_real_refused_connection_is_server_unreachable(state_dir: Path) -> None:
    key = generate_key()
    Keystore(state_dir).save(key, enrolment_for(key))
    with socket.socket() as probe:  # a port that was just free: nothing listens there now
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        with pytest.raises(errors.ServerUnreachableError, match=f"127.0.0.1:{port}"):
            await DeviceApiClient(http, Keystore(state_dir)).me()
