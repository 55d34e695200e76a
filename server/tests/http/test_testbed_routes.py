"""The testbed controls over HTTP (README "Testbed controls"): off unless asked for, behind their bearer token;
the journal of a whole flow in order with no secret in it; each fault action; the clock moving every expiry
while signed device requests keep working; reset; and, on PostgreSQL, two instances following one state."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from litestar.testing import TestClient

from server.tests.http.conftest import ISSUER, TEST_HOSTS
from server.tests.support import Flow, authorize_params, exchange, pkce, qr_payload_for, register
from server.tests.testbed_support import (
    AUTH,
    PAYMENT,
    TOKEN,
    Agent,
    RecordingDevice,
    add_fault,
    advance,
    approve_on_device,
    authorize,
    journal,
)
from vouchsim.server.app import create_app
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.settings import Settings
from vouchsim.server.testbed.layer import ConnectionDropped

CONTROLS = [
    ("GET", "/testbed/journal"),
    ("DELETE", "/testbed/journal"),
    ("GET", "/testbed/faults"),
    ("POST", "/testbed/faults"),
    ("DELETE", "/testbed/faults"),
    ("DELETE", "/testbed/faults/flt_x"),
    ("GET", "/testbed/clock"),
    ("POST", "/testbed/clock"),
    ("DELETE", "/testbed/clock"),
    ("POST", "/testbed/reset"),
]


@pytest.fixture
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, testbed=True, testbed_token=TOKEN, allowed_hosts=TEST_HOSTS)


@pytest.fixture
def device(client: TestClient[Any], clock: FrozenClock) -> RecordingDevice:
    device = RecordingDevice(clock=clock)
    device.enrol(client)
    return device


def confidential(client: TestClient[Any]) -> dict[str, Any]:
    return register(client, token_endpoint_auth_method="client_secret_post")


# -- the switch and the token ------------------------------------------------------------------------------------


def test_the_controls_are_off_unless_asked_for(database_url: str, clock: FrozenClock) -> None:
    with TestClient(
        create_app(Settings(database_url=database_url, allowed_hosts=TEST_HOSTS), clock=clock), base_url=ISSUER
    ) as client:
        for method, path in CONTROLS:
            assert client.request(method, path, headers=AUTH).status_code in (404, 405), (method, path)
        paths = client.get("/schema/openapi.json").json()["paths"]
        assert not [path for path in paths if path.startswith("/testbed")]


@pytest.mark.parametrize(("method", "path"), CONTROLS)
def test_every_control_needs_the_testbed_token(client: TestClient[Any], method: str, path: str) -> None:
    for headers in ({}, {"Authorization": "Bearer not-the-token"}, {"Authorization": f"Basic {TOKEN}"}):
        response = client.request(method, path, headers=headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["www-authenticate"].startswith('Bearer realm="vouchsim-testbed"')
        assert response.json()["error"] == "unauthorized"
    assert client.get("/testbed/clock", headers=AUTH).status_code == 200


def test_the_controls_are_in_the_openapi_document_under_the_testbed_tag(client: TestClient[Any]) -> None:
    document = client.get("/schema/openapi.json").json()
    operations = {
        (method.upper(), path): operation
        for path, item in document["paths"].items()
        if path.startswith("/testbed")
        for method, operation in item.items()
    }
    assert set(operations) == {(method, path.replace("flt_x", "{fault_id}")) for method, path in CONTROLS}
    assert all(operation["tags"] == ["testbed"] for operation in operations.values())
    assert all(operation["security"] == [{"testbed_token": []}] for operation in operations.values())
    assert document["components"]["securitySchemes"]["testbed_token"] == {
        "type": "http",
        "scheme": "bearer",
        "description": "VOUCHSIM_TESTBED_TOKEN (printed at start when generated)",
    }


# -- the journal -----------------------------------------------------------------------------------------------


def test_the_journal_lists_a_whole_flow_in_order_with_no_secret_in_it(
    client: TestClient[Any], flow: Flow, device: RecordingDevice
) -> None:
    assert client.get("/.well-known/oauth-protected-resource/mcp").status_code == 200
    assert client.get("/.well-known/oauth-authorization-server").status_code == 200
    info = confidential(client)
    done = authorize(flow, info)
    mcp = Agent(client, done.access_token)
    assert mcp.initialize().status_code == 200
    assert mcp.call("identity_get", request_id=5).status_code == 200
    secret = info["client_secret"]
    refreshed = client.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": done.tokens["refresh_token"],
            "client_id": done.client_id,
            "client_secret": secret,
        },
    )
    assert refreshed.status_code == 200
    new = refreshed.json()
    data = {"token": new["access_token"], "client_id": done.client_id, "client_secret": secret}
    assert client.post("/oauth/introspect", data=data).status_code == 200
    assert client.post("/oauth/revoke", data=data).status_code == 200

    entries = journal(client)
    kinds = [entry["kind"] for entry in entries]
    expected = ["discovery", "discovery", "register", "authorize", "pairing", "token", "mcp", "mcp"]
    remaining = iter(kinds)
    assert all(any(kind == wanted for kind in remaining) for wanted in expected), kinds
    assert kinds[-3:] == ["token", "introspect", "revoke"]
    assert "device" in kinds  # the phone's enrolment, claim and approval

    mine = journal(client, client_id=done.client_id)
    assert [entry["kind"] for entry in mine][:2] == ["register", "authorize"]
    assert {"pairing", "token", "mcp", "introspect", "revoke"} <= {entry["kind"] for entry in mine}
    assert [entry["id"] for entry in entries] == sorted(entry["id"] for entry in entries)
    for entry in entries:
        assert set(entry) == {
            "id", "at", "kind", "method", "path", "status", "duration_ms", "client_id", "summary", "fault"
        }  # fmt: skip
        assert isinstance(entry["status"], int) and entry["duration_ms"] >= 0 and entry["fault"] is None
    exchange_entry = next(e for e in mine if e["kind"] == "token")
    assert exchange_entry["summary"]["grant_type"] == "authorization_code"
    assert exchange_entry["summary"]["code"] == exchange_entry["summary"]["code_verifier"] == "***"
    assert exchange_entry["summary"]["client_secret"] == "***"
    assert exchange_entry["summary"]["expires_in"] == 3600
    refresh_entry = [e for e in mine if e["kind"] == "token"][-1]
    assert refresh_entry["summary"]["grant_type"] == "refresh_token"
    call = next(e for e in mine if e["kind"] == "mcp" and e["summary"].get("method") == "tools/call")
    assert call["summary"]["name"] == "identity_get" and call["summary"]["id"] == 5 and call["status"] == 200
    claim = next(e for e in entries if e["path"] == "/device/pairings/claim")
    assert claim["client_id"] == done.client_id and claim["summary"]["qr_payload"] == "***"

    text = json.dumps(entries)
    leaked = [value for value in [*done.secrets, *device.secrets, new["access_token"], new["refresh_token"]] if value]
    assert leaked and not [value for value in leaked if value in text]


def test_the_journal_filters_pages_and_clears(client: TestClient[Any]) -> None:
    for _ in range(3):
        client.get("/.well-known/jwks.json")
    register(client)
    everything = journal(client)
    assert [e["kind"] for e in everything] == ["discovery"] * 3 + ["register"]
    first = everything[0]["id"]
    assert [e["id"] for e in journal(client, since=first)] == [e["id"] for e in everything[1:]]
    assert [e["id"] for e in journal(client, since=first, limit=1)] == [everything[1]["id"]]
    assert [e["id"] for e in journal(client, limit=2)] == [e["id"] for e in everything[2:]]
    assert [e["kind"] for e in journal(client, kind="register")] == ["register"]
    assert len(journal(client, kind="register,discovery")) == 4
    assert len(journal(client, since=everything[1]["at"])) == 4  # the frozen clock stamped them all alike
    assert journal(client, since="2100-01-01T00:00:00Z") == []
    assert client.get("/testbed/journal", params={"kind": "teapot"}, headers=AUTH).status_code == 400
    assert client.get("/testbed/journal", params={"since": "yesterday"}, headers=AUTH).status_code == 400
    assert client.get("/testbed/journal", params={"limit": 0}, headers=AUTH).status_code == 400
    assert journal(client, since=everything[-1]["id"], wait=0.05) == []  # a long poll that finds nothing
    assert client.delete("/testbed/journal", headers=AUTH).status_code == 204
    assert journal(client) == []
    client.get("/.well-known/jwks.json")
    assert journal(client)[0]["id"] == everything[-1]["id"] + 1  # numbering goes on
    assert client.get("/healthz").status_code == 200 and len(journal(client)) == 1  # not a journaled endpoint


def test_the_journal_is_bounded(database_url: str, clock: FrozenClock) -> None:
    settings = Settings(
        database_url=database_url, testbed=True, testbed_token=TOKEN, testbed_journal_size=3, allowed_hosts=TEST_HOSTS
    )
    with TestClient(create_app(settings, clock=clock), base_url=ISSUER) as client:
        for _ in range(5):
            client.get("/.well-known/jwks.json")
        assert [e["id"] for e in journal(client)] == [3, 4, 5]


# -- faults ------------------------------------------------------------------------------------------------------


def test_an_oauth_error_fault_answers_the_matching_refresh_once(client: TestClient[Any], flow: Flow) -> None:
    done = authorize(flow, register(client))
    fault = add_fault(
        client,
        {
            "match": {"kind": "token", "grant_type": "refresh_token"},
            "action": {"status": 400, "error": "invalid_grant", "error_description": "Refresh refused by a test."},
        },
    )
    listed = client.get("/testbed/faults", headers=AUTH).json()["faults"]
    assert [(f["id"], f["times"], f["remaining"], f["fired"]) for f in listed] == [(fault, 1, 1, 0)]
    data = {"grant_type": "refresh_token", "refresh_token": done.tokens["refresh_token"], "client_id": done.client_id}
    refused = client.post("/oauth/token", data=data)
    assert refused.status_code == 400
    assert refused.json() == {"error": "invalid_grant", "error_description": "Refresh refused by a test."}
    assert refused.headers["cache-control"] == "no-store"
    assert client.post("/oauth/token", data=data).status_code == 200  # fired once: the token was never touched
    assert client.get("/testbed/faults", headers=AUTH).json()["faults"][0]["remaining"] == 0
    entries = journal(client, kind="token")
    assert [(e["status"], e["fault"], e["summary"].get("error")) for e in entries[-2:]] == [
        (400, fault, "invalid_grant"),
        (200, None, None),
    ]


def test_a_503_fault_carries_retry_after_as_often_as_asked(client: TestClient[Any]) -> None:
    add_fault(client, {"match": {"kind": "register"}, "action": {"status": 503, "retry_after": 7}, "times": 2})
    for _ in range(2):
        answer = client.post("/oauth/register", json={"redirect_uris": ["http://127.0.0.1:1/cb"]})
        assert answer.status_code == 503 and answer.headers["retry-after"] == "7"
        assert answer.json()["error"] == "temporarily_unavailable"
    assert client.post("/oauth/register", json={"redirect_uris": ["http://127.0.0.1:1/cb"]}).status_code == 201


def test_a_fault_answers_browsers_with_the_apps_cors_headers(client: TestClient[Any]) -> None:
    add_fault(client, {"match": {"kind": "discovery"}, "action": {"status": 503}, "times": 2})
    answer = client.get("/.well-known/oauth-authorization-server", headers={"Origin": "http://localhost:6274"})
    assert answer.status_code == 503 and answer.headers["access-control-allow-origin"] == "http://localhost:6274"
    assert "retry-after" in answer.headers["access-control-expose-headers"].lower()
    # The same allow-list as the app's own answers: a foreign origin reads neither.
    foreign = client.get("/.well-known/oauth-authorization-server", headers={"Origin": "https://evil.example"})
    assert foreign.status_code == 503 and "access-control-allow-origin" not in foreign.headers


def test_a_fault_on_mcp_is_a_json_rpc_error_with_its_status(client: TestClient[Any], flow: Flow) -> None:
    done = authorize(flow, register(client))
    mcp = Agent(client, done.access_token)
    assert mcp.initialize().status_code == 200
    add_fault(
        client,
        {
            "match": {"kind": "mcp", "mcp_method": "tools/call", "tool": "identity_get"},
            "action": {"status": 401, "error": "invalid_token"},
        },
    )
    listed = mcp.send({"jsonrpc": "2.0", "id": 3, "method": "tools/list"})
    assert listed.status_code == 200  # another method: not matched
    refused = mcp.call("identity_get", request_id=4)
    assert refused.status_code == 401
    body = refused.json()
    assert body["jsonrpc"] == "2.0" and body["id"] == 4
    assert body["error"]["code"] == -32001 and body["error"]["data"] == {"error": "invalid_token"}
    challenge = refused.headers["www-authenticate"]
    assert 'error="invalid_token"' in challenge
    assert f'resource_metadata="{ISSUER}/.well-known/oauth-protected-resource/mcp"' in challenge
    assert mcp.call("identity_get").status_code == 200


def test_expire_token_makes_mcp_refuse_the_bearer_token_once(client: TestClient[Any], flow: Flow) -> None:
    done = authorize(flow, register(client))
    mcp = Agent(client, done.access_token)
    assert mcp.initialize().status_code == 200
    fault = add_fault(client, {"match": {"kind": "mcp"}, "action": {"expire_token": True}})
    refused = mcp.call("identity_get")
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused.headers["www-authenticate"]
    assert mcp.call("identity_get").status_code == 200  # the token itself was never touched
    entry = journal(client, kind="mcp")[-2]
    assert (entry["status"], entry["fault"], entry["client_id"]) == (401, fault, done.client_id)
    assert entry["summary"]["error"] == "invalid_token"


def test_a_drop_fault_closes_the_connection_without_an_answer(client: TestClient[Any]) -> None:
    fault = add_fault(client, {"match": {"kind": "discovery"}, "action": {"drop": True}})
    # The test client has no connection to close; under uvicorn the socket is aborted (e2e/test_testbed.py).
    with pytest.raises(ConnectionDropped):
        client.get("/.well-known/oauth-authorization-server")
    assert client.get("/.well-known/oauth-authorization-server").status_code == 200
    dropped = journal(client)[0]
    assert (dropped["status"], dropped["fault"]) == (None, fault)


def test_a_delay_fault_is_slow_then_handled_normally(client: TestClient[Any]) -> None:
    fault = add_fault(client, {"match": {"kind": "discovery"}, "action": {"delay_ms": 20}})
    assert client.get("/.well-known/jwks.json").status_code == 200
    entry = journal(client)[0]
    assert (entry["status"], entry["fault"]) == (200, fault)
    assert entry["duration_ms"] >= 20  # the sleep is part of the request (not a timing check: a lower bound)


def test_a_fault_for_one_client_leaves_the_others_alone(client: TestClient[Any], flow: Flow) -> None:
    first = authorize(flow, register(client))
    second = authorize(flow, register(client))
    add_fault(
        client,
        {"match": {"kind": "mcp", "client_id": second.client_id}, "action": {"status": 503}, "times": None},
    )
    assert Agent(client, first.access_token).initialize().status_code == 200
    for _ in range(2):
        assert Agent(client, second.access_token).initialize().status_code == 503


def test_a_fault_until_deleted_fires_until_it_is_deleted(client: TestClient[Any]) -> None:
    fault = add_fault(client, {"match": {"kind": "discovery"}, "action": {"status": 500}, "times": None})
    for _ in range(3):
        assert client.get("/.well-known/jwks.json").status_code == 500
    [listed] = client.get("/testbed/faults", headers=AUTH).json()["faults"]
    assert (listed["times"], listed["remaining"], listed["fired"]) == (None, None, 3)
    assert client.delete(f"/testbed/faults/{fault}", headers=AUTH).status_code == 204
    assert client.delete(f"/testbed/faults/{fault}", headers=AUTH).status_code == 404
    assert client.get("/.well-known/jwks.json").status_code == 200
    add_fault(client, {"action": {"status": 500}})
    assert client.delete("/testbed/faults", headers=AUTH).status_code == 204
    assert client.get("/testbed/faults", headers=AUTH).json() == {"faults": []}


def test_malformed_faults_are_400(client: TestClient[Any]) -> None:
    for body in ({"action": {}}, {"action": {"status": 503}, "times": 0}, {"match": {"kind": "x"}}, [], "x"):
        response = client.post("/testbed/faults", json=body, headers=AUTH)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"] == "invalid_request"


# -- the clock -----------------------------------------------------------------------------------------------


def test_the_clock_expires_access_tokens_and_codes_and_keeps_refresh_tokens(
    client: TestClient[Any], flow: Flow
) -> None:
    done = authorize(flow, register(client))
    mcp = Agent(client, done.access_token)
    assert mcp.initialize().status_code == 200
    assert client.get("/testbed/clock", headers=AUTH).json()["offset_seconds"] == 0
    moved = advance(client, 3601)
    assert moved["offset_seconds"] == 3601
    refused = mcp.call("identity_get")
    assert refused.status_code == 401 and 'error="invalid_token"' in refused.headers["www-authenticate"]
    data = {"grant_type": "refresh_token", "refresh_token": done.tokens["refresh_token"], "client_id": done.client_id}
    renewed = client.post("/oauth/token", data=data)
    assert renewed.status_code == 200  # refresh tokens live 30 days
    assert Agent(client, renewed.json()["access_token"]).initialize().status_code == 200
    introspected = client.post("/oauth/introspect", data={"token": renewed.json()["access_token"]})
    assert introspected.status_code in (400, 401)  # a public client may not introspect; the exp check is below

    info = register(client)
    verifier, challenge = pkce()
    client.cookies.clear()  # another browser: it pairs instead of consenting with the first one's session
    pairing = flow.pairing_page(authorize_params(info, challenge))
    response = flow.submit(pairing, flow.scan_and_approve(pairing))  # the device signs on real time: accepted
    code = response.headers["location"].split("code=")[1].split("&")[0]
    advance(client, 61)
    assert exchange(client, info, code, verifier).json()["error"] == "invalid_grant"
    reset = client.delete("/testbed/clock", headers=AUTH).json()
    assert reset["offset_seconds"] == 0


def test_the_clock_expires_pairings_and_mcp_sessions(client: TestClient[Any], flow: Flow) -> None:
    info = register(client)
    _verifier, challenge = pkce()
    pairing = flow.pairing_page(authorize_params(info, challenge))
    payload = qr_payload_for(client, pairing)
    advance(client, 301)
    claimed = flow.device.call(client, "POST", "/device/pairings/claim", {"qr_payload": payload})
    assert claimed.status_code == 410 or claimed.json()["error"] == "pairing_expired", claimed.text

    done = authorize(flow, register(client))
    mcp = Agent(client, done.access_token)
    assert mcp.initialize().status_code == 200
    advance(client, 3600)  # the MCP session's idle limit (and the token's lifetime)
    data = {"grant_type": "refresh_token", "refresh_token": done.tokens["refresh_token"], "client_id": done.client_id}
    renewed = client.post("/oauth/token", data=data).json()
    mcp.token = renewed["access_token"]
    gone = mcp.call("identity_get")
    assert gone.status_code == 404, gone.text  # the session went idle on the moved clock


def test_signed_device_requests_keep_working_after_the_clock_moves(client: TestClient[Any], flow: Flow) -> None:
    advance(client, 7 * 24 * 3600)
    me = flow.device.call(client, "GET", "/device/me")
    assert me.status_code == 200, me.text
    done = authorize(flow, register(client))  # claim, approve, code: all signed on the device's (real) time
    assert Agent(client, done.access_token).initialize().status_code == 200


def test_delegations_and_their_tokens_follow_the_clock(client: TestClient[Any], flow: Flow) -> None:
    moved = datetime.fromisoformat(advance(client, 86_400)["now"])
    done = authorize(flow, register(client))  # on the moved clock from the start
    mcp = Agent(client, done.access_token)
    assert mcp.initialize().status_code == 200
    created = mcp.result("delegation_request", {**PAYMENT, "waitForApproval": False})
    assert datetime.fromisoformat(created["expiresAt"]) >= moved + timedelta(seconds=300)
    approve_on_device(flow, created["delegationId"])
    approved = mcp.result("delegation_status", {"delegationId": created["delegationId"]})
    keys = KeySet.import_key_set(client.get("/.well-known/jwks.json").json())
    claims = jwt.decode(approved["token"], keys, algorithms=["Ed25519"]).claims
    assert claims["iat"] >= int(moved.timestamp()) and claims["exp"] - claims["iat"] == 600  # `exp` follows
    advance(client, 601)
    later = mcp.result("delegation_status", {"delegationId": created["delegationId"]})
    assert later["status"] == "approved" and "token" not in later  # its token has expired on the moved clock


def test_a_waiting_delegation_request_is_answered_at_once_when_the_clock_expires_it(
    client: TestClient[Any], flow: Flow
) -> None:
    done = authorize(flow, register(client))
    mcp = Agent(client, done.access_token)
    assert mcp.initialize().status_code == 200
    answers: list[Any] = []
    waiting = threading.Thread(
        target=lambda: answers.append(mcp.call("delegation_request", {**PAYMENT, "timeoutSeconds": 50}))
    )
    waiting.start()
    try:
        while not flow.device.call(client, "GET", "/device/delegations").json()["delegations"]:
            waiting.join(0.02)  # until the call's delegation exists (bounded by the join below)
        advance(client, 301)
    finally:
        waiting.join(20)  # a hang guard: without the clock's help the call would wait its 50 s
    assert not waiting.is_alive() and answers
    result = answers[0].json()["result"]["structuredContent"]
    assert result["status"] == "expired"


def test_the_clock_only_moves_forward(client: TestClient[Any]) -> None:
    for body in ({"advance_seconds": -1}, {"advance_seconds": "soon"}, {}, {"advance_seconds": 1e12}):
        response = client.post("/testbed/clock", json=body, headers=AUTH)
        assert response.status_code == 400, (body, response.text)


# -- reset -----------------------------------------------------------------------------------------------------


def test_reset_wipes_everything_but_the_signing_keys(client: TestClient[Any], flow: Flow) -> None:
    done = authorize(flow, register(client))
    mcp = Agent(client, done.access_token)
    assert mcp.initialize().status_code == 200
    kids = {key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]}
    add_fault(client, {"match": {"kind": "revoke"}, "action": {"status": 500}})
    advance(client, 60)
    assert client.post("/testbed/reset", headers=AUTH).status_code == 204

    assert journal(client) == []
    assert client.get("/testbed/faults", headers=AUTH).json() == {"faults": []}
    assert client.get("/testbed/clock", headers=AUTH).json()["offset_seconds"] == 0
    assert mcp.call("identity_get").status_code == 401  # the token is gone (and no cache remembers it)
    _verifier, challenge = pkce()
    page = flow.start(authorize_params(done.info, challenge))
    assert page.status_code == 400  # the client is unknown now: the page says so, never redirects
    assert flow.device.call(client, "GET", "/device/me").status_code == 401  # so is the device
    assert {key["kid"] for key in client.get("/.well-known/jwks.json").json()["keys"]} == kids
    assert register(client)["client_id"]  # and the server goes on


# -- delegation token algorithms per audience ------------------------------------------------------------------


@pytest.fixture
def audiences_file(tmp_path: Any) -> str:
    path = tmp_path / "audiences.json"
    audiences = [
        {"audience_id": f"aud_{alg.lower()}", "name": alg, "scopes": ["read"], "alg": alg}
        for alg in ("Ed25519", "EdDSA", "ES256", "RS256")
    ]
    path.write_text(json.dumps({"audiences": audiences}))
    return str(path)


@pytest.fixture
def alg_client(database_url: str, audiences_file: str) -> Iterator[TestClient[Any]]:
    """On the real clock: PyJWT checks `exp` against the time of day."""
    settings = Settings(database_url=database_url, audiences_file=audiences_file, allowed_hosts=TEST_HOSTS)
    with TestClient(create_app(settings), base_url=ISSUER) as client:
        yield client


def test_each_audience_gets_tokens_in_its_algorithm_that_pyjwt_verifies(alg_client: TestClient[Any]) -> None:
    import jwt as pyjwt

    device = RecordingDevice()
    device.enrol(alg_client)
    flow = Flow(alg_client, device)
    done = authorize(flow, register(alg_client))
    mcp = Agent(alg_client, done.access_token)
    assert mcp.initialize().status_code == 200
    jwks = alg_client.get("/.well-known/jwks.json").json()
    assert sorted(key["alg"] for key in jwks["keys"]) == sorted(["Ed25519", "EdDSA", "ES256", "RS256"])
    assert {key["kty"] for key in jwks["keys"]} == {"OKP", "EC", "RSA"}
    keys = pyjwt.PyJWKSet.from_dict(jwks)  # the Ed25519-named key is skipped: PyJWT has no such algorithm
    for alg in ("EdDSA", "ES256", "RS256", "Ed25519"):
        audience = f"aud_{alg.lower()}"
        asked = {"audienceId": audience, "purpose": "Read.", "scopes": ["read"], "waitForApproval": False}
        created = mcp.result("delegation_request", asked)
        approve_on_device(flow, created["delegationId"])
        token = mcp.result("delegation_status", {"delegationId": created["delegationId"]})["token"]
        header = pyjwt.get_unverified_header(token)
        assert header["alg"] == alg
        if alg == "Ed25519":
            with pytest.raises(KeyError):
                keys[header["kid"]]
            continue
        claims = pyjwt.decode(token, keys[header["kid"]].key, algorithms=[alg], audience=audience, issuer=ISSUER)
        assert claims["act"]["sub"] == done.client_id and claims["scope"] == "read"
        introspected = alg_client.post("/oauth/introspect", data={"token": token})
        assert introspected.status_code in (400, 401)  # public clients may not introspect (RFC 7662 §2.1)


# -- two instances, one state (PostgreSQL) ---------------------------------------------------------------------


def test_two_instances_follow_one_clock_and_one_set_of_faults(database_url: str, clock: FrozenClock) -> None:
    if database_url.startswith("sqlite"):
        pytest.skip("instances share state across processes on PostgreSQL only (LISTEN/NOTIFY)")
    settings = Settings(
        database_url=database_url, testbed=True, testbed_token=TOKEN, workers=2, allowed_hosts=TEST_HOSTS
    )
    with (
        TestClient(create_app(settings, clock=clock), base_url=ISSUER) as one,
        TestClient(create_app(settings, clock=clock), base_url=ISSUER) as two,
    ):
        assert (
            one.get("/testbed/clock", headers=AUTH).headers["vouchsim-testbed-instance"]
            != two.get("/testbed/clock", headers=AUTH).headers["vouchsim-testbed-instance"]
        )
        advance(one, 3600)  # answered once both instances applied it
        assert two.get("/testbed/clock", headers=AUTH).json()["offset_seconds"] == 3600
        add_fault(two, {"match": {"kind": "discovery"}, "action": {"status": 503}, "times": 3})
        answers = [client.get("/.well-known/jwks.json").status_code for client in (one, two, one, two, one)]
        assert answers == [503, 503, 503, 200, 200]  # three firings in all, whoever served them
        assert one.get("/testbed/faults", headers=AUTH).json()["faults"][0]["fired"] == 3
        assert [e["status"] for e in journal(one)] == [503, 503, 200]  # each instance journals its own requests
        assert [e["status"] for e in journal(two)] == [503, 200]
        assert two.post("/testbed/reset", headers=AUTH).status_code == 204
        assert journal(one) == [] and one.get("/testbed/clock", headers=AUTH).json()["offset_seconds"] == 0
