"""The trusted-device API over HTTP (docs/device-api.md): every endpoint, its error shape, and signatures
checked against the request exactly as it travelled. Runs the whole app (`app_for`), on a real database (SQLite, and
PostgreSQL when set) and a frozen clock."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.tests.http.conftest import app_for
from server.tests.pairing_support import (
    BROWSER_SECRET,
    HMAC_KEY,
    SigningDevice,
    json_body,
    pairing_service,
    seed_client,
    seed_device,
    seed_request,
    seed_token,
)
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.pairing.service import StartedPairing
from vouchsim.server.settings import Settings
from vouchsim.server.storage.engine import create_sessionmaker
from vouchsim.server.storage.models import OAuthToken, PairingSession
from vouchsim.server.storage.repositories.connections import ConnectionRepository

pytestmark = pytest.mark.anyio

BASE_URL = "https://vouch.test"
Client = AsyncTestClient[Litestar]


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def api(database_url: str, clock: FrozenClock, free_apps: dict[bool, list[Litestar]]) -> AsyncIterator[Client]:
    """The whole app, as served (`app_for`: an earlier test's routes bound to this test's deployment): its engine
    is made in its lifespan on the loop that serves it (asyncpg connections cannot cross event loops). The HMAC
    key is fixed so the tests can seed pairings directly."""
    settings = Settings(database_url=database_url, secret_key=HMAC_KEY.decode(), allowed_hosts="vouch.test,other.test")
    with app_for(settings, clock, free_apps) as app:
        async with AsyncTestClient(app, base_url=BASE_URL) as client:
            yield client


async def send(
    api: Client,
    device: SigningDevice,
    method: str,
    target: str,
    body: Any = None,
    *,
    headers: dict[str, str] | None = None,
    raw: bytes | None = None,
) -> Any:
    content = raw if raw is not None else (json_body(body) if body is not None else b"")
    signed = headers or device.headers(method, target, content)
    extra = {"Content-Type": "application/json"} if content else {}
    return await api.request(method, target, content=content, headers={**signed, **extra})


async def enrol(api: Client, device: SigningDevice, name: str = "Pixel of QA") -> dict[str, Any]:
    response = await send(api, device, "POST", "/device/enrol", {"public_key": device.public_key, "name": name})
    assert response.status_code == 201, response.text
    device.device_id = response.json()["device_id"]
    return response.json()  # type: ignore[no-any-return]


@pytest.fixture
async def phone(api: Client, clock: FrozenClock) -> SigningDevice:
    device = SigningDevice(clock)
    await enrol(api, device)
    return device


@pytest.fixture
async def other_phone(api: Client, clock: FrozenClock) -> SigningDevice:
    device = SigningDevice(clock)
    await enrol(api, device, "Another phone")
    return device


@pytest.fixture
async def started(sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> StartedPairing:
    """A pairing as the authorization page starts it, for the issuer the test client is."""
    async with sessions() as session, session.begin():
        request = await seed_request(session, clock)
        return await pairing_service(session, clock, Settings()).start(request.request_id, BROWSER_SECRET, BASE_URL)


def assert_error(response: Any, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    assert body["error_description"]
    assert response.headers["cache-control"] == "no-store"


# -- enrolment and me ----------------------------------------------------------------------------------------


async def test_enrol_then_me(api: Client, clock: FrozenClock) -> None:
    device = SigningDevice(clock)
    response = await send(api, device, "POST", "/device/enrol", {"public_key": device.public_key, "name": "Pixel"})
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    info = response.json()
    assert set(info) == {"device_id", "user_id", "name", "fingerprint", "issuer", "enrolled_at"}
    assert info["device_id"].startswith("dev_")
    assert info["user_id"].startswith("usr_")
    assert info["name"] == "Pixel"
    assert re.fullmatch(r"[0-9A-F]{4}(-[0-9A-F]{4}){3}", info["fingerprint"])
    assert (info["issuer"], info["enrolled_at"]) == (BASE_URL, "2026-11-25T12:00:00Z")

    device.device_id = info["device_id"]
    me = await send(api, device, "GET", "/device/me")
    assert me.status_code == 200
    assert me.json() == info


async def test_enrol_must_be_signed_by_the_enrolled_key(api: Client, clock: FrozenClock) -> None:
    device, impostor = SigningDevice(clock), SigningDevice(clock)
    body = json_body({"public_key": device.public_key, "name": "stolen"})
    response = await send(
        api,
        device,
        "POST",
        "/device/enrol",
        raw=body,
        headers=impostor.headers("POST", "/device/enrol", body),
    )
    assert_error(response, 401, "invalid_signature")


async def test_enrol_is_signed_as_device_new(api: Client, clock: FrozenClock) -> None:
    device = SigningDevice(clock, device_id="dev_chosen")
    response = await send(api, device, "POST", "/device/enrol", {"public_key": device.public_key, "name": "x"})
    assert_error(response, 401, "invalid_signature")


async def test_a_key_is_enrolled_once(api: Client, phone: SigningDevice, clock: FrozenClock) -> None:
    again = SigningDevice(clock, key=phone.key)
    response = await send(api, again, "POST", "/device/enrol", {"public_key": phone.public_key, "name": "again"})
    assert_error(response, 409, "device_exists")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe",
        b"[]",
        b'{"public_key": "KEY"}',
        b'{"public_key": "KEY", "name": ""}',
        b'{"public_key": "KEY", "name": "   "}',
        b'{"public_key": "KEY", "name": "' + b"x" * 65 + b'"}',
        b'{"public_key": "KEY", "name": "ok", "extra": 1}',
        b'{"public_key": "not-a-key", "name": "ok"}',
        b'{"public_key": 42, "name": "ok"}',
    ],
)
async def test_enrol_rejects_bad_bodies(api: Client, clock: FrozenClock, body: bytes) -> None:
    device = SigningDevice(clock)
    raw = body.replace(b"KEY", device.public_key.encode())
    response = await send(api, device, "POST", "/device/enrol", raw=raw)
    assert_error(response, 400, "invalid_request")


# -- signatures ----------------------------------------------------------------------------------------------


async def test_every_signature_failure_is_401(api: Client, phone: SigningDevice, clock: FrozenClock) -> None:
    good = phone.headers("GET", "/device/me")
    cases = {
        "bad signature": {
            **good,
            "Vouch-Signature": phone.headers("GET", "/device/connections")["Vouch-Signature"],
        },
        "stale timestamp": phone.headers("GET", "/device/me", timestamp=int(clock.now().timestamp()) - 121),
        "unknown device": SigningDevice(clock, device_id="dev_nobody").headers("GET", "/device/me"),
        "missing headers": {key: value for key, value in good.items() if key != "Vouch-Nonce"},
    }
    for name, headers in cases.items():
        response = await api.get("/device/me", headers=headers)
        assert response.status_code == 401, name
        assert_error(response, 401, "invalid_signature")
    assert (await api.get("/device/me", headers=good)).status_code == 200


async def test_a_replayed_request_is_refused(api: Client, phone: SigningDevice) -> None:
    headers = phone.headers("GET", "/device/connections")
    assert (await api.get("/device/connections", headers=headers)).status_code == 200
    assert_error(await api.get("/device/connections", headers=headers), 401, "invalid_signature")


async def test_a_replayed_request_that_failed_is_refused_too(api: Client, phone: SigningDevice) -> None:
    """Error answers are returned, not raised, so the transaction still keeps the nonce."""
    headers = phone.headers("POST", "/device/pairings/pair_nope/approve")
    assert_error(await api.post("/device/pairings/pair_nope/approve", headers=headers), 404, "pairing_not_found")
    assert_error(await api.post("/device/pairings/pair_nope/approve", headers=headers), 401, "invalid_signature")


async def test_a_tampered_body_is_refused(api: Client, phone: SigningDevice, started: StartedPairing) -> None:
    signed_for = json_body({"qr_payload": "vouchsim://pair?v=1"})
    headers = phone.headers("POST", "/device/pairings/claim", signed_for)
    response = await send(
        api, phone, "POST", "/device/pairings/claim", {"qr_payload": started.qr_payload}, headers=headers
    )
    assert_error(response, 401, "invalid_signature")


async def test_a_tampered_path_is_refused(api: Client, phone: SigningDevice) -> None:
    headers = phone.headers("GET", "/device/connections")
    assert_error(await api.get("/device/connections?x=1", headers=headers), 401, "invalid_signature")
    assert_error(await api.get("/device/me", headers=headers), 401, "invalid_signature")


async def test_the_query_string_is_signed_as_sent(api: Client, phone: SigningDevice) -> None:
    headers = phone.headers("GET", "/device/connections?x=1&y=%2F")
    response = await api.get("/device/connections?x=1&y=%2F", headers=headers)
    assert response.status_code == 200, response.text


async def test_the_path_is_signed_percent_encoded(api: Client, phone: SigningDevice) -> None:
    target = "/device/connections/conn%3Anot-yours"
    response = await api.delete(target, headers=phone.headers("DELETE", target))
    assert_error(response, 404, "connection_not_found")


# -- pairings ------------------------------------------------------------------------------------------------


async def test_claim_then_approve(api: Client, phone: SigningDevice, started: StartedPairing) -> None:
    claimed = await send(api, phone, "POST", "/device/pairings/claim", {"qr_payload": started.qr_payload})
    assert claimed.status_code == 200, claimed.text
    context = claimed.json()
    assert context == {
        "pairing_id": started.pairing_id,
        "status": "claimed",
        "client_id": context["client_id"],
        "client_name": "Acme Agent Client",
        "redirect_host": "127.0.0.1",
        "scopes": ["identity", "delegation"],
        "requested_at": "2026-11-25T12:00:00Z",
        "expires_at": "2026-11-25T12:05:00Z",
        "issuer": BASE_URL,
        "verified_host": None,  # a registered client: nothing about it was verified (docs/cimd.md)
        "localhost_only": False,
    }
    again = await send(api, phone, "POST", "/device/pairings/claim", {"qr_payload": started.qr_payload})
    assert again.json() == context

    approved = await send(api, phone, "POST", f"/device/pairings/{started.pairing_id}/approve")
    assert approved.status_code == 200, approved.text
    issued = approved.json()
    assert set(issued) == {"pairing_id", "status", "pairing_code", "code_expires_at"}
    assert (issued["pairing_id"], issued["status"]) == (started.pairing_id, "approved")
    assert re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", issued["pairing_code"])
    assert issued["code_expires_at"] == "2026-11-25T12:03:00Z"
    assert approved.headers["cache-control"] == "no-store"


async def test_approving_with_an_empty_object_body_is_fine(
    api: Client, phone: SigningDevice, started: StartedPairing
) -> None:
    await send(api, phone, "POST", "/device/pairings/claim", {"qr_payload": started.qr_payload})
    response = await send(api, phone, "POST", f"/device/pairings/{started.pairing_id}/approve", {})
    assert response.status_code == 200
    response = await send(api, phone, "POST", f"/device/pairings/{started.pairing_id}/approve", {"why": "x"})
    assert_error(response, 400, "invalid_request")


async def test_decline(api: Client, phone: SigningDevice, started: StartedPairing) -> None:
    await send(api, phone, "POST", "/device/pairings/claim", {"qr_payload": started.qr_payload})
    declined = await send(api, phone, "POST", f"/device/pairings/{started.pairing_id}/decline")
    assert declined.status_code == 200
    assert declined.json() == {"pairing_id": started.pairing_id, "status": "declined"}
    assert_error(
        await send(api, phone, "POST", f"/device/pairings/{started.pairing_id}/approve"),
        409,
        "pairing_closed",
    )
    assert_error(
        await send(api, phone, "POST", "/device/pairings/claim", {"qr_payload": started.qr_payload}),
        409,
        "pairing_closed",
    )


async def test_claim_errors(
    api: Client,
    phone: SigningDevice,
    other_phone: SigningDevice,
    started: StartedPairing,
    clock: FrozenClock,
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async def claim(device: SigningDevice, payload: Any) -> Any:
        return await send(api, device, "POST", "/device/pairings/claim", {"qr_payload": payload})

    assert_error(await claim(phone, "https://vouch.test/pair"), 400, "invalid_qr_payload")
    foreign = started.qr_payload.replace("vouch.test", "elsewhere.test")
    assert_error(await claim(phone, foreign), 400, "invalid_qr_payload")
    unknown = started.qr_payload[:-43] + "A" * 43
    assert_error(await claim(phone, unknown), 404, "pairing_not_found")
    assert_error(await claim(phone, 12), 400, "invalid_request")
    assert_error(await send(api, phone, "POST", "/device/pairings/claim", {}), 400, "invalid_request")

    assert (await claim(phone, started.qr_payload)).status_code == 200
    assert_error(await claim(other_phone, started.qr_payload), 409, "pairing_already_claimed")
    assert_error(
        await send(api, other_phone, "POST", f"/device/pairings/{started.pairing_id}/approve"),
        404,
        "pairing_not_found",
    )
    assert_error(
        await send(api, other_phone, "POST", f"/device/pairings/{started.pairing_id}/decline"),
        404,
        "pairing_not_found",
    )

    clock.advance(300)
    assert_error(await claim(phone, started.qr_payload), 410, "pairing_expired")
    assert_error(
        await send(api, phone, "POST", f"/device/pairings/{started.pairing_id}/approve"),
        410,
        "pairing_expired",
    )
    async with sessions() as session:  # the expiry was committed although the answer was an error
        status = await session.scalar(select(PairingSession.status).where(PairingSession.id == started.pairing_id))
    assert status == "expired"


async def test_the_issuer_follows_the_host_the_device_called(
    api: Client, phone: SigningDevice, started: StartedPairing
) -> None:
    body = json_body({"qr_payload": started.qr_payload})
    headers = {
        **phone.headers("POST", "/device/pairings/claim", body),
        "Host": "other.test",
        "Content-Type": "application/json",
    }
    response = await api.post("/device/pairings/claim", content=body, headers=headers)
    assert_error(response, 400, "invalid_qr_payload")


# -- connections ---------------------------------------------------------------------------------------------


async def test_list_and_unpair_connections(
    api: Client, phone: SigningDevice, clock: FrozenClock, sessions: async_sessionmaker[AsyncSession]
) -> None:
    me = (await send(api, phone, "GET", "/device/me")).json()
    async with sessions() as session, session.begin():
        client_id = await seed_client(session, clock)
        stranger = await seed_device(session, clock)
        repo = ConnectionRepository(session)
        mine = await repo.create(me["user_id"], client_id, me["device_id"], "identity delegation", clock.now())
        theirs = await repo.create(stranger.user_id, client_id, stranger.device_id, "identity", clock.now())
        token_id = await seed_token(session, clock, connection_id=mine.id, user_id=me["user_id"], client_id=client_id)

    listing = await send(api, phone, "GET", "/device/connections")
    assert listing.status_code == 200
    assert listing.json() == {
        "connections": [
            {
                "connection_id": mine.id,
                "client_id": client_id,
                "client_name": "Acme Agent Client",
                "scopes": ["identity", "delegation"],
                "created_at": "2026-11-25T12:00:00Z",
                "last_used_at": None,
                "revoked_at": None,
                "verified_host": None,
            }
        ]
    }

    clock.advance(60)
    revoked = await send(api, phone, "DELETE", f"/device/connections/{mine.id}")
    assert revoked.status_code == 200, revoked.text
    assert revoked.json()["revoked_at"] == "2026-11-25T12:01:00Z"
    async with sessions() as session:
        token = await session.get(OAuthToken, token_id)
        assert token is not None
        assert token.revoked_at == clock.now()

    clock.advance(60)
    again = await send(api, phone, "DELETE", f"/device/connections/{mine.id}")
    assert again.json() == revoked.json()
    listed = (await send(api, phone, "GET", "/device/connections")).json()["connections"]
    assert [c["revoked_at"] for c in listed] == ["2026-11-25T12:01:00Z"]

    assert_error(await send(api, phone, "DELETE", f"/device/connections/{theirs.id}"), 404, "connection_not_found")


async def test_a_bad_signature_is_401_whatever_the_body(api: Client, phone: SigningDevice) -> None:
    headers = phone.headers("POST", "/device/pairings/claim", b"{}")
    headers["Vouch-Signature"] = headers["Vouch-Signature"][::-1]
    response = await api.post("/device/pairings/claim", content=b"not json", headers=headers)
    assert_error(response, 401, "invalid_signature")
