"""The device's side of delegations over HTTP (docs/delegations.md, "Device API"): list, stream, decide,
revoke, their errors; and what audiences see: the JWKS and introspection of a delegation token.

The test client serves the app on an event loop of its own, in another thread (asyncpg connections cannot
cross loops): whatever touches the app's services directly runs there too, through `on_app`.
"""

from __future__ import annotations

import asyncio
import base64
import json
import queue
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio.to_thread
import pytest
from anyio.from_thread import BlockingPortal
from joserfc import jwt
from joserfc.jwk import KeySet
from litestar import Litestar
from litestar.testing import AsyncTestClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from server.tests.delegation_support import PURPOSE, new_nonce, sign, statement
from server.tests.http.conftest import app_for
from server.tests.pairing_support import SigningDevice, json_body, seed_client
from vouchsim.server.app import Resources
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.core.crypto import new_id
from vouchsim.server.delegation.schemas import DelegationView
from vouchsim.server.device.routes import delegation_events
from vouchsim.server.settings import Settings
from vouchsim.server.storage.engine import create_sessionmaker
from vouchsim.server.storage.models import RuntimeConnection

pytestmark = pytest.mark.anyio

BASE_URL = "https://vouch.test"
Client = AsyncTestClient[Litestar]
T = TypeVar("T")


def on_app(api: Client, work: Callable[[], Awaitable[T]]) -> T:
    """Run `work` on the app's own event loop and wait for it."""
    return api.blocking_portal.call(work)


def delegations(api: Client) -> Any:
    resources: Resources = api.app.state.resources
    return resources.delegations


@pytest.fixture
def sessions(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return create_sessionmaker(engine)


@pytest.fixture
async def api(database_url: str, clock: FrozenClock, free_apps: dict[bool, list[Litestar]]) -> AsyncIterator[Client]:
    settings = Settings(database_url=database_url, allowed_hosts="vouch.test")
    with app_for(settings, clock, free_apps) as app:
        async with AsyncTestClient(app, base_url=BASE_URL) as c:
            yield c


async def send(api: Client, device: SigningDevice, method: str, target: str, body: Any = None) -> Any:
    content = json_body(body) if body is not None else b""
    extra = {"Content-Type": "application/json"} if content else {}
    return await api.request(
        method, target, content=content, headers={**device.headers(method, target, content), **extra}
    )


@dataclass
class Paired:
    """An enrolled phone whose user has paired a client: what the MCP tools would act as."""

    phone: SigningDevice
    user_id: str
    client_id: str
    connection_id: str
    api: Client = field(repr=False)

    def ask(self, **overrides: Any) -> DelegationView:
        values: dict[str, Any] = {
            "audience_id": "aud_test_payments",
            "purpose": PURPOSE,
            "scopes": ["payments.identity", "payments.prepare"],
            **overrides,
        }
        return on_app(
            self.api,
            lambda: delegations(self.api).request(
                user_id=self.user_id, client_id=self.client_id, connection_id=self.connection_id, **values
            ),
        )


async def pair(api: Client, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> Paired:
    phone = SigningDevice(clock)
    enrolled = await send(api, phone, "POST", "/device/enrol", {"public_key": phone.public_key, "name": "Pixel"})
    assert enrolled.status_code == 201, enrolled.text
    phone.device_id, user_id = enrolled.json()["device_id"], enrolled.json()["user_id"]
    async with sessions() as session, session.begin():
        client_id = await seed_client(session, clock, client_name="Acme Agent Client")
        connection = RuntimeConnection(
            id=new_id("conn"),
            user_id=user_id,
            client_id=client_id,
            device_id=phone.device_id,
            scope="identity delegation",
            created_at=clock.now(),
        )
        session.add(connection)
    return Paired(phone, user_id, client_id, connection.id, api)


@pytest.fixture
async def paired(api: Client, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> Paired:
    return await pair(api, sessions, clock)


@pytest.fixture
async def stranger(api: Client, sessions: async_sessionmaker[AsyncSession], clock: FrozenClock) -> Paired:
    return await pair(api, sessions, clock)


def assert_error(response: Any, status: int, error: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] == error and body["error_description"]
    assert response.headers["cache-control"] == "no-store"
    return body


def signed_body(phone: SigningDevice, delegation: dict[str, Any], decision: str = "approve") -> dict[str, str]:
    # SigningDevice keeps its key as `key`, like the companion's keystore does.
    return sign(phone.key, delegation, decision).body()


# -- listing -------------------------------------------------------------------------------------------------


async def test_the_list_shows_pending_delegations_as_the_wire_spells_them(api: Client, paired: Paired) -> None:
    empty = await send(api, paired.phone, "GET", "/device/delegations")
    assert (empty.status_code, empty.json()) == (200, {"delegations": []})
    view = paired.ask()
    listed = await send(api, paired.phone, "GET", "/device/delegations?status=pending")
    assert listed.status_code == 200 and listed.headers["cache-control"] == "no-store"
    [item] = listed.json()["delegations"]
    assert item == {
        "delegation_id": view.delegation_id,
        "status": "pending",
        "client_id": paired.client_id,
        "client_name": "Acme Agent Client",
        "connection_id": paired.connection_id,
        "audience_id": "aud_test_payments",
        "audience_name": "Test payments",
        "scopes": ["payments.identity", "payments.prepare"],
        "purpose": PURPOSE,
        "binding_message": view.binding_message,
        "created_at": "2026-11-25T12:00:00Z",
        "expires_at": "2026-11-25T12:05:00Z",
        "decided_at": None,
        "decided_by": None,
        "token_expires_at": None,
    }
    assert (await send(api, paired.phone, "GET", "/device/delegations?status=history")).json() == {"delegations": []}
    assert len((await send(api, paired.phone, "GET", "/device/delegations?status=all")).json()["delegations"]) == 1


async def test_a_user_sees_only_their_own(api: Client, paired: Paired, stranger: Paired) -> None:
    stranger.ask()
    assert (await send(api, paired.phone, "GET", "/device/delegations?status=all")).json() == {"delegations": []}


async def test_listing_errors(api: Client, paired: Paired, clock: FrozenClock) -> None:
    assert_error(await send(api, paired.phone, "GET", "/device/delegations?status=decided"), 400, "invalid_request")
    assert_error(await api.get("/device/delegations"), 401, "invalid_signature")


# -- deciding ------------------------------------------------------------------------------------------------


async def test_approve_then_the_history_and_a_second_decision(api: Client, paired: Paired, clock: FrozenClock) -> None:
    view = paired.ask()
    [shown] = (await send(api, paired.phone, "GET", "/device/delegations")).json()["delegations"]
    clock.advance(5)
    target = f"/device/delegations/{view.delegation_id}/decision"
    decided = await send(api, paired.phone, "POST", target, signed_body(paired.phone, shown))
    assert decided.status_code == 200, decided.text
    body = decided.json()
    assert (body["status"], body["decided_by"], body["decided_at"]) == (
        "approved",
        paired.phone.device_id,
        "2026-11-25T12:00:05Z",
    )
    assert body["token_expires_at"] == "2026-11-25T12:10:05Z"
    history = (await send(api, paired.phone, "GET", "/device/delegations?status=history")).json()["delegations"]
    assert [item["status"] for item in history] == ["approved"]
    again = await send(api, paired.phone, "POST", target, signed_body(paired.phone, shown, "deny"))
    closed = assert_error(again, 409, "delegation_closed")
    assert closed["status"] == "approved"


async def test_deny(api: Client, paired: Paired) -> None:
    view = paired.ask()
    [shown] = (await send(api, paired.phone, "GET", "/device/delegations")).json()["delegations"]
    denied = await send(
        api,
        paired.phone,
        "POST",
        f"/device/delegations/{view.delegation_id}/decision",
        signed_body(paired.phone, shown, "deny"),
    )
    assert (denied.status_code, denied.json()["status"]) == (200, "denied")


async def test_decision_errors(api: Client, paired: Paired, stranger: Paired) -> None:
    view = paired.ask()
    [shown] = (await send(api, paired.phone, "GET", "/device/delegations")).json()["delegations"]
    target = f"/device/delegations/{view.delegation_id}/decision"
    good = signed_body(paired.phone, shown)
    forged = {**good, "signature": signed_body(stranger.phone, shown)["signature"]}
    assert_error(await send(api, paired.phone, "POST", target, forged), 400, "invalid_decision")
    assert_error(await send(api, paired.phone, "POST", target, {**good, "decision": "maybe"}), 400, "invalid_decision")
    assert_error(await send(api, paired.phone, "POST", target, {**good, "extra": 1}), 400, "invalid_request")
    assert_error(await send(api, paired.phone, "POST", target, {"decision": "approve"}), 400, "invalid_request")
    assert_error(await send(api, stranger.phone, "POST", target, good), 404, "delegation_not_found")
    assert_error(
        await send(api, paired.phone, "POST", "/device/delegations/dlg_nope/decision", good),
        404,
        "delegation_not_found",
    )
    unsigned = await api.post(target, json=good)
    assert_error(unsigned, 401, "invalid_signature")
    assert (await send(api, paired.phone, "POST", target, good)).json()["status"] == "approved"  # still decidable


async def test_a_decision_needs_a_fresh_nonce(api: Client, paired: Paired) -> None:
    first, second = paired.ask(), paired.ask()
    shown = {
        d["delegation_id"]: d
        for d in (await send(api, paired.phone, "GET", "/device/delegations")).json()["delegations"]
    }
    nonce = new_nonce()
    for view, expected in ((first, 200), (second, 400)):
        delegation = shown[view.delegation_id]
        body = sign(paired.phone.key, delegation, "approve", nonce).body()
        response = await send(api, paired.phone, "POST", f"/device/delegations/{view.delegation_id}/decision", body)
        assert response.status_code == expected, response.text


async def test_the_statement_signed_is_the_documented_one(api: Client, paired: Paired) -> None:
    view = paired.ask(purpose="Überweisung vorbereiten")
    [shown] = (await send(api, paired.phone, "GET", "/device/delegations")).json()["delegations"]
    nonce = new_nonce()
    text = statement(shown, "approve", nonce)
    assert text.startswith(b'vouchsim-delegation-decision-v1\n{"audience_id":"aud_test_payments",')
    assert "Überweisung".encode() in text  # ensure_ascii=False
    signature = base64.urlsafe_b64encode(paired.phone.key.sign(text)).rstrip(b"=").decode()
    body = {"decision": "approve", "nonce": nonce, "signature": signature}
    response = await send(api, paired.phone, "POST", f"/device/delegations/{view.delegation_id}/decision", body)
    assert response.status_code == 200, response.text


async def test_the_decision_lane_and_litestars_router_answer_alike(
    api: Client, paired: Paired, stranger: Paired
) -> None:
    """`POST …/decision` skips the router (routes.decision_lane); `…/decision/` takes it to the route: same answers,
    byte for byte, for a decision and for each way one is refused."""
    views = [paired.ask(), paired.ask()]
    shown = {
        d["delegation_id"]: d
        for d in (await send(api, paired.phone, "GET", "/device/delegations")).json()["delegations"]
    }

    async def both(
        device: SigningDevice, body: Any, *, raw: bytes | None = None, unsigned: bool = False
    ) -> list[tuple[Any, ...]]:
        answers = []
        for view, suffix in zip(views, ("", "/"), strict=True):
            target = f"/device/delegations/{view.delegation_id}/decision{suffix}"
            content = raw if raw is not None else json_body(body(shown[view.delegation_id]))
            headers = {} if unsigned else device.headers("POST", target, content)
            response = await api.post(target, content=content, headers=headers)
            text = response.content.replace(view.delegation_id.encode(), b"<id>")
            answers.append((response.status_code, response.headers.multi_items(), text))
        return answers

    def same(answers: list[tuple[Any, ...]]) -> tuple[Any, ...]:
        assert answers[0] == answers[1]
        return answers[0]

    assert same(await both(paired.phone, lambda d: {}))[0] == 400
    assert same(await both(paired.phone, lambda d: {**signed_body(paired.phone, d), "extra": 1}))[0] == 400
    assert same(await both(paired.phone, lambda d: signed_body(paired.phone, d), raw=b"{not json"))[0] == 400
    assert same(await both(paired.phone, lambda d: signed_body(paired.phone, d), unsigned=True))[0] == 401
    assert same(await both(stranger.phone, lambda d: signed_body(stranger.phone, d)))[0] == 404
    forged = await both(paired.phone, lambda d: {**signed_body(paired.phone, d), "signature": "A" * 86})
    assert same(forged)[0] == 400
    approved = await both(paired.phone, lambda d: signed_body(paired.phone, d))
    # Two delegations: their bodies differ in values (binding message, token id), not in shape or headers.
    assert [(a[0], [h for h in a[1] if h[0] != "content-length"]) for a in approved] == [
        (200, [("cache-control", "no-store"), ("content-type", "application/json")])
    ] * 2
    decided = [json.loads(answer[2]) for answer in approved]
    assert list(decided[0]) == list(decided[1]) and decided[0]["status"] == decided[1]["status"] == "approved"
    assert same(await both(paired.phone, lambda d: signed_body(paired.phone, d, "deny")))[0] == 409


async def test_a_decision_is_three_statements_or_two(api: Client, paired: Paired, clock: FrozenClock) -> None:
    """The device and the delegation in one read, the request's nonce, the compare-and-swap: nothing else, once the
    device's `last_seen_at` is fresh. On PostgreSQL the nonce, the compare-and-swap and its NOTIFY are one
    statement."""
    from sqlalchemy import event

    view = paired.ask()
    [shown] = (await send(api, paired.phone, "GET", "/device/delegations")).json()["delegations"]
    engine = api.app.state.resources.engine.sync_engine
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement.split(None, 1)[0].upper())

    event.listen(engine, "before_cursor_execute", count)
    try:
        target = f"/device/delegations/{view.delegation_id}/decision"
        decided = await send(api, paired.phone, "POST", target, signed_body(paired.phone, shown))
    finally:
        event.remove(engine, "before_cursor_execute", count)
    assert decided.status_code == 200, decided.text
    # `WITH remembered AS (INSERT …), moved AS (UPDATE …) SELECT …, pg_notify(…)` on PostgreSQL
    writes = ["WITH"] if engine.dialect.name == "postgresql" else ["INSERT", "UPDATE"]
    assert statements == ["SELECT", *writes]


async def test_a_decision_request_is_refused_when_replayed(api: Client, paired: Paired) -> None:
    """Its nonce is remembered with the decision, or with the refusal: the same request again is a replay (401),
    whether it was answered 200 or refused."""
    for decided in (True, False):
        view = paired.ask()
        [shown] = [
            d
            for d in (await send(api, paired.phone, "GET", "/device/delegations")).json()["delegations"]
            if d["delegation_id"] == view.delegation_id
        ]
        target = f"/device/delegations/{view.delegation_id}/decision"
        body = signed_body(paired.phone, shown) if decided else {**signed_body(paired.phone, shown), "decision": "x"}
        content = json_body(body)
        headers = {**paired.phone.headers("POST", target, content), "Content-Type": "application/json"}
        first = await api.post(target, content=content, headers=headers)
        assert first.status_code == (200 if decided else 400), first.text
        again = await api.post(target, content=content, headers=headers)
        assert assert_error(again, 401, "invalid_signature")["error_description"] == (
            "This request was already received (Vouch-Nonce reused)."
        )


# -- revoking, the JWKS and introspection --------------------------------------------------------------------


async def approve(api: Client, paired: Paired) -> DelegationView:
    view = paired.ask()
    [shown] = (await send(api, paired.phone, "GET", "/device/delegations")).json()["delegations"]
    response = await send(
        api,
        paired.phone,
        "POST",
        f"/device/delegations/{view.delegation_id}/decision",
        signed_body(paired.phone, shown),
    )
    assert response.status_code == 200, response.text
    return on_app(api, lambda: delegations(api).get(view.delegation_id, connection_id=paired.connection_id))


async def delegation_token(api: Client, view: DelegationView) -> str:
    issued = on_app(api, lambda: delegations(api).token(view, issuer=BASE_URL))
    assert issued is not None
    return issued.token


async def introspect(api: Client, token: str) -> dict[str, Any]:
    registered = await api.post(
        "/oauth/register",
        json={
            "client_name": "Test payments (audience)",
            "redirect_uris": ["https://payments.example/cb"],
            "token_endpoint_auth_method": "client_secret_basic",
        },
    )
    assert registered.status_code == 201, registered.text
    info = registered.json()
    response = await api.post(
        "/oauth/introspect", data={"token": token}, auth=(info["client_id"], info["client_secret"])
    )
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"].startswith("no-store")
    return response.json()  # type: ignore[no-any-return]


async def test_the_token_verifies_against_the_published_jwks(api: Client, paired: Paired) -> None:
    view = await approve(api, paired)
    token = await delegation_token(api, view)
    metadata = (await api.get("/.well-known/oauth-authorization-server")).json()
    assert metadata["jwks_uri"] == f"{BASE_URL}/.well-known/jwks.json"
    jwks = await api.get("/.well-known/jwks.json")
    assert jwks.status_code == 200 and "max-age" in jwks.headers["cache-control"]
    claims = jwt.decode(token, KeySet.import_key_set(jwks.json()), algorithms=["Ed25519"]).claims
    assert (claims["iss"], claims["aud"], claims["delegation_id"]) == (
        BASE_URL,
        "aud_test_payments",
        view.delegation_id,
    )
    assert claims["act"] == {"sub": paired.client_id, "client_name": "Acme Agent Client"}


async def test_the_first_keys_exist_before_any_request(api: Client) -> None:
    """One per algorithm an audience may ask for (docs/delegations.md)."""
    keys = (await api.get("/.well-known/jwks.json")).json()["keys"]
    assert sorted(key["alg"] for key in keys) == sorted(["Ed25519", "EdDSA", "ES256", "RS256"])
    assert not [key for key in keys if {"d", "p", "q"} & set(key)]  # never a private half


async def test_revoke_makes_the_token_inactive(api: Client, paired: Paired) -> None:
    view = await approve(api, paired)
    token = await delegation_token(api, view)
    active = await introspect(api, token)
    assert active["active"] is True
    assert (active["delegation_id"], active["client_id"], active["scope"]) == (
        view.delegation_id,
        paired.client_id,
        "payments.identity payments.prepare",
    )
    target = f"/device/delegations/{view.delegation_id}/revoke"
    revoked = await send(api, paired.phone, "POST", target)
    assert (revoked.status_code, revoked.json()["status"]) == (200, "revoked")
    assert (await send(api, paired.phone, "POST", target)).json()["status"] == "revoked"  # idempotent
    assert await introspect(api, token) == {"active": False}


async def test_introspection_of_foreign_or_expired_tokens(api: Client, paired: Paired, clock: FrozenClock) -> None:
    token = await delegation_token(api, await approve(api, paired))
    header, payload, _ = token.split(".")
    assert await introspect(api, f"{header}.{payload}.AAAA") == {"active": False}
    clock.advance(600)
    assert await introspect(api, token) == {"active": False}


async def test_revoke_errors(api: Client, paired: Paired, stranger: Paired) -> None:
    view = paired.ask()
    target = f"/device/delegations/{view.delegation_id}/revoke"
    assert_error(await send(api, paired.phone, "POST", target), 400, "invalid_request")  # pending: deny it
    assert_error(await send(api, stranger.phone, "POST", target), 404, "delegation_not_found")
    assert_error(await send(api, paired.phone, "POST", target, {"why": "x"}), 400, "invalid_request")
    assert_error(
        await send(api, paired.phone, "POST", "/device/delegations/dlg_nope/revoke"), 404, "delegation_not_found"
    )


# -- the stream ------------------------------------------------------------------------------------------------


@dataclass
class EventStream:
    """`GET /device/delegations/stream` driven as a server would, through the ASGI interface on the app's loop,
    and read as it comes."""

    status: int
    headers: dict[str, str]
    messages: queue.Queue[dict[str, Any]]
    disconnect: asyncio.Event
    portal: BlockingPortal
    served: Future[None]
    buffer: str = ""

    async def next_event(self, within: float = 5) -> dict[str, str]:
        while "\r\n\r\n" not in self.buffer:
            message = await anyio.to_thread.run_sync(lambda: self.messages.get(timeout=within))
            self.buffer += message.get("body", b"").decode()
        block, self.buffer = self.buffer.split("\r\n\r\n", 1)
        event: dict[str, str] = {}
        for line in block.split("\r\n"):
            name, _, value = line.partition(": ")
            event[name or "comment"] = value
        return event

    async def close(self) -> None:
        self.portal.call(self.disconnect.set)  # the client goes away
        await anyio.to_thread.run_sync(lambda: self.served.result(5))


async def open_stream(api: Client, phone: SigningDevice) -> EventStream:
    target = "/device/delegations/stream"
    headers = [(k.lower().encode(), v.encode()) for k, v in phone.headers("GET", target).items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "https",
        "path": target,
        "raw_path": target.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"vouch.test"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("vouch.test", 443),
    }
    messages: queue.Queue[dict[str, Any]] = queue.Queue()
    disconnect = asyncio.Event()
    requested = False

    async def receive() -> dict[str, Any]:
        nonlocal requested
        if not requested:
            requested = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await disconnect.wait()
        return {"type": "http.disconnect"}

    async def send_message(message: dict[str, Any]) -> None:
        messages.put(message)

    portal = api.blocking_portal
    served = portal.start_task_soon(api.app, scope, receive, send_message)  # type: ignore[arg-type]
    start = await anyio.to_thread.run_sync(lambda: messages.get(timeout=5))
    assert start["type"] == "http.response.start"
    headers_out = {k.decode(): v.decode() for k, v in start["headers"]}
    return EventStream(start["status"], headers_out, messages, disconnect, portal, served)


async def test_the_stream_replays_pending_then_shows_new_ones_at_once(api: Client, paired: Paired) -> None:
    waiting = paired.ask()
    stream = await open_stream(api, paired.phone)
    try:
        assert stream.status == 200
        assert stream.headers["content-type"].startswith("text/event-stream")
        assert stream.headers["cache-control"] == "no-store"
        replayed = await stream.next_event()
        assert replayed["event"] == "delegation"
        assert json.loads(replayed["data"])["delegation_id"] == waiting.delegation_id
        created = paired.ask(audience_id="aud_test_files", scopes=["files.read"])
        shown = json.loads((await stream.next_event())["data"])
        assert (shown["delegation_id"], shown["status"], shown["audience_name"]) == (
            created.delegation_id,
            "pending",
            "Test files",
        )
        decided = await send(
            api,
            paired.phone,
            "POST",
            f"/device/delegations/{created.delegation_id}/decision",
            signed_body(paired.phone, shown, "deny"),
        )
        assert decided.status_code == 200
        changed = json.loads((await stream.next_event())["data"])
        assert (changed["delegation_id"], changed["status"]) == (created.delegation_id, "denied")
    finally:
        await stream.close()


async def test_the_stream_is_only_for_a_signed_device(api: Client) -> None:
    assert_error(await api.get("/device/delegations/stream"), 401, "invalid_signature")


async def test_a_quiet_stream_sends_keep_alive_comments(api: Client, paired: Paired) -> None:
    async def first_message() -> bytes:
        messages = delegation_events(delegations(api), paired.user_id, keepalive=0.05)
        try:
            return (await asyncio.wait_for(anext(messages), 5)).encode()
        finally:
            await messages.aclose()  # type: ignore[attr-defined]

    assert on_app(api, first_message) == b": keep-alive\r\n\r\n"
