"""What the journal sees of a request and its answer: kinds by path, the meaningful fields, and no secret."""

from __future__ import annotations

import base64
import json

import pytest

from vouchsim.server.testbed.observe import MASK, answer_facts, kind_of, mask, masked_url, request_facts

FORM = {"content-type": "application/x-www-form-urlencoded"}
JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("/.well-known/oauth-authorization-server", "discovery"),
        ("/.well-known/openid-configuration", "discovery"),
        ("/.well-known/oauth-protected-resource/mcp", "discovery"),
        ("/.well-known/jwks.json", "discovery"),
        ("/oauth/register", "register"),
        ("/oauth/authorize", "authorize"),
        ("/oauth/authorize/requests/req_1/consent", "authorize"),
        ("/oauth/authorize/requests/req_1/deny", "authorize"),
        ("/oauth/authorize/requests/req_1/pair", "pairing"),
        ("/oauth/authorize/pairing/prg_1", "pairing"),
        ("/oauth/authorize/pairing/prg_1/qr.png", "pairing"),
        ("/oauth/token", "token"),
        ("/oauth/revoke", "revoke"),
        ("/oauth/introspect", "introspect"),
        ("/mcp", "mcp"),
        ("/device/pairings/claim", "device"),
        ("/healthz", None),
        ("/schema/openapi.json", None),
        ("/static/authorize.css", None),
        ("/testbed/journal", None),
        ("/oauth/elsewhere", None),
    ],
)
def test_each_path_has_one_kind(path: str, kind: str | None) -> None:
    assert kind_of(path) == kind


def test_masking_reaches_every_depth_and_bounds_what_it_keeps() -> None:
    value = {"token": "t", "nested": {"Code": "c", "list": [{"client_secret": "s"}, "x" * 500]}, "n": 1}
    masked = mask(value)
    assert masked["token"] == MASK and masked["nested"]["Code"] == MASK
    assert masked["nested"]["list"][0]["client_secret"] == MASK
    assert len(masked["nested"]["list"][1]) == 201 and masked["n"] == 1
    assert mask({"a": {"b": {"c": {"d": {"e": 1}}}}}) == {"a": {"b": {"c": {"d": "…"}}}}
    assert masked_url("http://127.0.0.1:9/cb?code=abc&state=s&iss=x") == "http://127.0.0.1:9/cb?code=***&state=s&iss=x"


def test_a_token_request_says_its_grant_and_client_and_hides_its_secrets() -> None:
    body = b"grant_type=authorization_code&code=the-code&code_verifier=the-verifier&client_id=vsc_1&resource=r"
    facts = request_facts("token", "POST", "/oauth/token", "", FORM, body)
    assert (facts.grant_type, facts.client_id) == ("authorization_code", "vsc_1")
    assert facts.summary == {
        "grant_type": "authorization_code",
        "resource": "r",
        "client_id": "vsc_1",
        "code": MASK,
        "code_verifier": MASK,
    }
    basic = base64.b64encode(b"vsc_2:the-secret").decode()
    facts = request_facts(
        "token", "POST", "/oauth/token", "", {**FORM, "authorization": f"Basic {basic}"}, b"grant_type=refresh_token"
    )
    assert facts.client_id == "vsc_2" and "the-secret" not in json.dumps(facts.summary)


def test_an_mcp_request_says_its_method_tool_and_id() -> None:
    message = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "identity_get", "arguments": {}}}
    headers = {**JSON, "authorization": "Bearer vsat_secret", "mcp-protocol-version": "2025-11-25"}
    facts = request_facts("mcp", "POST", "/mcp", "", headers, json.dumps(message).encode())
    assert (facts.mcp_method, facts.tool, facts.bearer) == ("tools/call", "identity_get", "vsat_secret")
    assert facts.summary == {
        "method": "tools/call",
        "id": 7,
        "name": "identity_get",
        "arguments": {},
        "protocol_version": "2025-11-25",
    }
    assert "vsat_secret" not in json.dumps(facts.summary)


def test_bodies_that_are_not_what_they_claim_say_nothing() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    assert request_facts("mcp", "POST", "/mcp", "", JSON, deep).summary == {}
    assert request_facts("token", "POST", "/oauth/token", "", JSON, b"\xff\xfe").summary == {}
    assert request_facts("mcp", "POST", "/mcp", "", JSON, b"not json").mcp_method is None


def test_a_device_request_names_the_device_and_hides_the_qr_payload_and_signature() -> None:
    headers = {**JSON, "vouch-device-id": "dev_1", "vouch-signature": "sig"}
    body = json.dumps({"qr_payload": "vouchsim://pair?secret=s3cr3t"}).encode()
    facts = request_facts("device", "POST", "/device/pairings/claim", "", headers, body)
    assert facts.summary == {"device_id": "dev_1", "qr_payload": MASK}


def test_answers_give_the_error_the_client_and_the_issued_token() -> None:
    token = request_facts("token", "POST", "/oauth/token", "", FORM, b"grant_type=refresh_token&client_id=c")
    issued = {"access_token": "vsat_a", "refresh_token": "vsrt_b", "expires_in": 3600, "token_type": "Bearer"}
    answer = answer_facts(token, 200, JSON, json.dumps(issued).encode())
    assert answer.access_token == "vsat_a" and answer.summary == {"expires_in": 3600, "token_type": "Bearer"}
    refused = answer_facts(token, 400, JSON, b'{"error": "invalid_grant", "error_description": "no"}')
    assert refused.summary == {"error": "invalid_grant"}
    mcp = request_facts("mcp", "POST", "/mcp", "", JSON, b"{}")
    challenge = {"www-authenticate": 'Bearer error="invalid_token", resource_metadata="x"', **JSON}
    body = b'{"jsonrpc":"2.0","id":null,"error":{"code":-32001,"message":"m","data":{"error":"invalid_token"}}}'
    assert answer_facts(mcp, 401, challenge, body).summary == {"error": "invalid_token"}
    stream = b'event: message\ndata: {"jsonrpc":"2.0","id":1,"error":{"code":-32603,"message":"m"}}\n\n'
    assert answer_facts(mcp, 200, {"content-type": "text/event-stream"}, stream).summary == {"error": -32603}
    register = request_facts("register", "POST", "/oauth/register", "", JSON, b"{}")
    registered = answer_facts(register, 201, JSON, b'{"client_id": "vsc_9", "client_secret": "shh"}')
    assert registered.client_id == "vsc_9" and registered.summary == {"client_id": "vsc_9", "client_secret": MASK}


def test_a_redirect_names_where_it_leads_with_the_code_masked() -> None:
    page = request_facts("pairing", "POST", "/oauth/authorize/pairing/prg_1", "", FORM, b"csrf=x&code=ABCD-EFGH")
    assert page.pairing_id == "prg_1" and page.summary == {"pairing_id": "prg_1", "code": MASK}
    back = answer_facts(page, 303, {"location": "http://127.0.0.1:1/cb?code=secret&state=s"}, b"")
    assert back.summary == {"location": "http://127.0.0.1:1/cb?code=***&state=s"}
    start = request_facts("authorize", "GET", "/oauth/authorize", "client_id=vsc_1&state=s", {}, b"")
    led = answer_facts(start, 303, {"location": "/oauth/authorize/pairing/prg_2"}, b"")
    assert start.client_id == "vsc_1" and led.pairing_id == "prg_2"
    denied = answer_facts(start, 303, {"location": "http://127.0.0.1:1/cb?error=access_denied&state=s"}, b"")
    assert denied.summary["error"] == "access_denied"
