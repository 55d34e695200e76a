"""The authorization endpoint and its pages: validation order, PKCE, resource, pairing, consent, CSRF."""

from __future__ import annotations

from typing import Any

import pytest
from litestar.testing import TestClient

from server.tests.http.conftest import ISSUER
from server.tests.support import (
    Device,
    Flow,
    authorize_params,
    csrf_of,
    exchange,
    qr_payload_for,
    redirect_query,
    register,
)
from vouchsim.server.core.clock import FrozenClock


def _params(client_info: dict[str, Any], challenge: str, **overrides: Any) -> dict[str, str]:
    return authorize_params(client_info, challenge, **overrides)


# -- before the client and redirect URI are known good: a page, never a redirect -----------------------------
@pytest.mark.parametrize(
    "overrides",
    [
        {"client_id": "vsc_unknown"},
        {"client_id": None},
        {"redirect_uri": "http://127.0.0.1:33418/elsewhere"},
        {"redirect_uri": "https://attacker.example/callback"},
    ],
)
def test_bad_client_or_redirect_shows_an_error_page(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str], overrides: dict[str, Any]
) -> None:
    response = flow.start(_params(public_client, verifier_challenge[1], **overrides))
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "not valid" in response.text


@pytest.mark.parametrize(
    ("redirect_uri", "reason"),
    [
        # Issue 9, finding 1: a browser reads both as host evil.example; urlsplit read them as 127.0.0.1.
        ("http://evil.example\\@127.0.0.1:33418/callback", "backslash"),
        ("http://evil.example\\@127.0.0.1:50123/callback", "backslash"),
        ("http://evil.example@127.0.0.1:33418/callback", "@"),
        ("http://127.0.0.1:50123/callback\r\nX: y", "control"),
        ("http://2130706433:50123/callback", "IPv4"),
        ("HTTP://127.0.0.1:50123/callback", "lower-case"),
    ],
)
def test_a_redirect_uri_a_browser_reads_differently_gets_the_error_page_and_no_code(
    flow: Flow,
    public_client: dict[str, Any],
    verifier_challenge: tuple[str, str],
    redirect_uri: str,
    reason: str,
) -> None:
    response = flow.start(_params(public_client, verifier_challenge[1], redirect_uri=redirect_uri))
    assert response.status_code == 400, response.text
    assert "location" not in response.headers  # no pairing, no consent, no code: nothing to follow
    assert response.headers["content-type"].startswith("text/html")
    assert "not valid" in response.text and "redirect URI" in response.text
    assert reason in response.text
    assert "set-cookie" not in response.headers  # the request was never opened for a browser


def test_loopback_redirect_may_use_any_port(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    params = _params(public_client, verifier_challenge[1], redirect_uri="http://127.0.0.1:50123/callback")
    query = flow.authorize(params)
    assert query["state"] == "opaque-state"


# -- after: errors go back to the client with state and iss ----------------------------------------------------
@pytest.mark.parametrize(
    ("overrides", "error"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "invalid_request"),
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": "short"}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"resource": "https://other.example/mcp"}, "invalid_target"),
        ({"resource": f"{ISSUER}/api"}, "invalid_target"),
    ],
)
def test_invalid_request_goes_back_to_the_client(
    flow: Flow,
    public_client: dict[str, Any],
    verifier_challenge: tuple[str, str],
    overrides: dict[str, Any],
    error: str,
) -> None:
    response = flow.start(_params(public_client, verifier_challenge[1], **overrides))
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    assert location.startswith("http://127.0.0.1:33418/callback?")
    query = redirect_query(location)
    assert query["error"] == error
    assert query["state"] == "opaque-state"
    assert query["iss"] == ISSUER


def test_resource_with_trailing_slash_and_default_scope_are_accepted(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    params = _params(public_client, verifier_challenge[1], resource=f"{ISSUER}/mcp/", scope=None)
    page = flow.client.get(flow.pairing_page(params))
    assert "identity" in page.text and "delegation" in page.text


# -- scopes (issue 9, finding 5): unknown ones dropped, unregistered ones refused, never narrowed silently --------
@pytest.mark.parametrize(
    ("asked", "shown", "not_shown"),
    [
        ("identity claudeai", ["identity"], ["claudeai", "delegation"]),
        ("claudeai", ["identity", "delegation"], ["claudeai"]),  # nothing known: the registered scope
        ("admin delegation", ["delegation"], ["admin"]),
    ],
)
def test_unknown_scopes_are_dropped_not_refused(
    flow: Flow,
    public_client: dict[str, Any],
    verifier_challenge: tuple[str, str],
    asked: str,
    shown: list[str],
    not_shown: list[str],
) -> None:
    page = flow.client.get(flow.pairing_page(_params(public_client, verifier_challenge[1], scope=asked)))
    assert page.status_code == 200, page.text
    granted = page.text.split('class="scopes"')[1].split("</ul>")[0]
    assert all(f"<code>{name}</code>" in granted for name in shown), granted
    assert not any(f"<code>{name}</code>" in granted for name in not_shown), granted


def test_a_scope_the_client_did_not_register_is_invalid_scope_not_narrowed(
    flow: Flow, client: TestClient[Any], verifier_challenge: tuple[str, str]
) -> None:
    narrow = register(client, scope="identity")
    response = flow.start(_params(narrow, verifier_challenge[1], scope="identity delegation"))
    assert response.status_code in (302, 303), response.text
    query = redirect_query(response.headers["location"])
    assert query["error"] == "invalid_scope"
    assert "delegation" in query["error_description"]
    assert "code" not in query and query["state"] == "opaque-state" and query["iss"] == ISSUER
    # What it registered still works, as does offline_access (always accepted).
    assert "code" in flow.authorize(_params(narrow, verifier_challenge[1], scope="identity offline_access"))


# -- the pairing page ----------------------------------------------------------------------------------------
def test_page_is_protected_and_shows_who_is_asking(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    start = flow.start(_params(public_client, verifier_challenge[1]))
    cookie = start.headers["set-cookie"]
    assert cookie.startswith("__Host-vouchsim_browser=")
    assert "HttpOnly" in cookie and "Secure" in cookie and "SameSite=lax" in cookie.replace("Lax", "lax")
    page = flow.client.get(start.headers["location"])
    assert page.status_code == 200
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert "Acme Agent Client" in page.text and "127.0.0.1" in page.text
    assert "expires in" in page.text
    payload = qr_payload_for(flow.client, start.headers["location"])
    assert payload.startswith("vouchsim://pair?")
    assert "iss=https%3A%2F%2Fvouch.test" in payload


def test_page_shows_that_the_device_scanned(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    path = flow.pairing_page(_params(public_client, verifier_challenge[1]))
    assert flow.client.get(f"{path}/status").json()["status"] == "waiting"
    payload = qr_payload_for(flow.client, path)
    flow.device.call(flow.client, "POST", "/device/pairings/claim", {"qr_payload": payload})
    assert flow.client.get(f"{path}/status").json()["status"] == "claimed"
    assert "Scanned by" in flow.client.get(path).text


def test_successful_pairing_redirects_with_code_state_and_iss(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    query = flow.authorize(_params(public_client, verifier_challenge[1]))
    assert query["code"] and query["state"] == "opaque-state" and query["iss"] == ISSUER


def test_code_is_normalised(flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]) -> None:
    path = flow.pairing_page(_params(public_client, verifier_challenge[1]))
    code = flow.scan_and_approve(path)
    response = flow.submit(path, " " + code.replace("-", "").lower() + " ")
    assert response.status_code == 303
    assert "code" in redirect_query(response.headers["location"])


def test_five_wrong_codes_burn_the_pairing(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    path = flow.pairing_page(_params(public_client, verifier_challenge[1]))
    code = flow.scan_and_approve(path)
    wrong = "BBBB-BBBB" if code != "BBBB-BBBB" else "CCCC-CCCC"
    for attempt in range(4):
        response = flow.submit(path, wrong)
        assert response.status_code == 400
        assert f"{4 - attempt}" in response.text
    final = flow.submit(path, wrong)
    assert "Too many wrong pairing codes" in final.text
    after = flow.submit(path, code)
    assert after.status_code != 303
    assert "Start again" in flow.client.get(path).text


def test_code_from_another_browser_session_is_refused(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    path = flow.pairing_page(_params(public_client, verifier_challenge[1]))
    code = flow.scan_and_approve(path)
    flow.client.cookies.clear()  # another browser: its own cookie, its own CSRF token
    other_page = flow.client.get(path)
    assert other_page.status_code == 404
    response = flow.client.post(path, data={"csrf": "x", "code": code}, follow_redirects=False)
    assert response.status_code == 403
    assert "location" not in response.headers


def test_missing_csrf_token_is_refused(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    path = flow.pairing_page(_params(public_client, verifier_challenge[1]))
    code = flow.scan_and_approve(path)
    response = flow.client.post(path, data={"code": code}, follow_redirects=False)
    assert response.status_code == 403


def test_every_form_of_the_pages_refuses_a_wrong_csrf_token_with_the_page(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    """The CSRF guard sits on each form the pages post, and it answers with the readable page, not a bare 403; the
    request it refused is left as it was (the right token still works afterwards)."""
    path = flow.pairing_page(_params(public_client, verifier_challenge[1]))
    page = flow.client.get(path)
    request_id = page.text.split('action="/oauth/authorize/requests/')[1].split("/")[0]
    token = csrf_of(page.text)
    wrong = token[:-1] + ("A" if token[-1] != "A" else "B")
    forms = [path, *(f"/oauth/authorize/requests/{request_id}/{action}" for action in ("pair", "deny", "consent"))]
    for form in forms:
        for data in ({"csrf": wrong, "code": "123456"}, {"csrf": ""}):
            response = flow.client.post(form, data=data, follow_redirects=False)
            assert response.status_code == 403, form
            assert "This form has expired" in response.text and "location" not in response.headers
            assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
            assert response.headers["cache-control"] == "no-store"
    cookies = dict(flow.client.cookies)
    flow.client.cookies.clear()  # the right token from a browser without the cookie it belongs to
    assert flow.client.post(forms[1], data={"csrf": token}, follow_redirects=False).status_code == 403
    flow.client.cookies.update(cookies)
    denied = flow.client.post(forms[2], data={"csrf": token}, follow_redirects=False)
    assert redirect_query(denied.headers["location"])["error"] == "access_denied"


def test_declined_on_the_device_sends_access_denied(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    path = flow.pairing_page(_params(public_client, verifier_challenge[1]))
    payload = qr_payload_for(flow.client, path)
    pairing_id = flow.device.call(flow.client, "POST", "/device/pairings/claim", {"qr_payload": payload}).json()[
        "pairing_id"
    ]
    assert flow.device.call(flow.client, "POST", f"/device/pairings/{pairing_id}/decline").status_code == 200
    response = flow.client.get(path, follow_redirects=False)
    assert response.status_code == 303
    query = redirect_query(response.headers["location"])
    assert query["error"] == "access_denied" and query["state"] == "opaque-state" and query["iss"] == ISSUER


def test_expired_pairing_says_so_and_can_start_again(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str], clock: FrozenClock
) -> None:
    path = flow.pairing_page(_params(public_client, verifier_challenge[1]))
    clock.advance(301)
    page = flow.client.get(path)
    assert "expired" in page.text
    request_form = page.text.split('action="/oauth/authorize/requests/')[1].split('"')[0]
    restart = flow.client.post(
        f"/oauth/authorize/requests/{request_form}", data={"csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert restart.status_code == 303
    new_path = restart.headers["location"]
    assert new_path != path
    code = flow.scan_and_approve(new_path)
    assert flow.submit(new_path, code).status_code == 303


def test_cancel_sends_access_denied(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    path = flow.pairing_page(_params(public_client, verifier_challenge[1]))
    page = flow.client.get(path)
    deny_path = page.text.split('action="/oauth/authorize/requests/')[-1].split('"')[0]
    response = flow.client.post(
        f"/oauth/authorize/requests/{deny_path}", data={"csrf": csrf_of(page.text)}, follow_redirects=False
    )
    assert redirect_query(response.headers["location"])["error"] == "access_denied"


# -- a signed-in browser: consent instead of a QR ------------------------------------------------------------
def test_signed_in_browser_gets_the_session_consent(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str]
) -> None:
    flow.authorize(_params(public_client, verifier_challenge[1]))
    other = register(flow.client, client_name="Second Agent")
    start = flow.start(_params(other, verifier_challenge[1]))
    assert start.status_code == 303 and start.headers["location"].endswith("/consent")
    page = flow.client.get(start.headers["location"])
    assert "Authorize with this session" in page.text and "Second Agent" in page.text
    response = flow.client.post(start.headers["location"], data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    query = redirect_query(response.headers["location"])
    assert query["code"] and query["iss"] == ISSUER
    connections = flow.device.call(flow.client, "GET", "/device/connections").json()["connections"]
    assert {c["client_name"] for c in connections} == {"Acme Agent Client", "Second Agent"}


def test_loopback_http_issuer_uses_a_plain_cookie(settings: Any, clock: FrozenClock) -> None:
    from vouchsim.server.app import create_app

    with TestClient(create_app(settings, clock=clock), base_url="http://127.0.0.1:8741") as client:
        info = register(client)
        from server.tests.support import pkce

        start = client.get("/oauth/authorize", params=authorize_params(info, pkce()[1]), follow_redirects=False)
        cookie = start.headers["set-cookie"]
        assert cookie.startswith("vouchsim_browser=") and "Secure" not in cookie and "HttpOnly" in cookie
        device = Device(clock=clock)
        device.enrol(client)
        query = Flow(client, device).authorize(authorize_params(info, pkce()[1]))
        assert query["iss"] == "http://127.0.0.1:8741"


@pytest.mark.parametrize(
    "redirect", ["https://evil.example/%22x%22", "https://evil.example/%C3%A9", 'http://127.0.0.1:33418/"']
)
def test_odd_characters_in_parameters_never_cause_a_500(
    flow: Flow, public_client: dict[str, Any], verifier_challenge: tuple[str, str], redirect: str
) -> None:
    from urllib.parse import unquote

    response = flow.start(_params(public_client, verifier_challenge[1], redirect_uri=unquote(redirect)))
    assert response.status_code == 400
    assert "location" not in response.headers


def test_odd_grant_type_is_a_400(client: TestClient[Any]) -> None:
    response = client.post("/oauth/token", data={"grant_type": 'x"y', "client_id": "é"})
    assert response.status_code in (400, 401)


def test_an_idn_redirect_host_is_shown_in_punycode_on_the_page_and_the_device(
    flow: Flow, client: TestClient[Any], verifier_challenge: tuple[str, str]
) -> None:
    """Issue 9, finding 4: a Cyrillic look-alike (U+0435) cannot pass as "evil" on the page or on the device."""
    info = register(client, redirect_uris=["https://\u0435vil.example/cb"])
    path = flow.pairing_page(_params(info, verifier_challenge[1]))
    page = flow.client.get(path)
    assert '<dd class="redirect-host">xn--vil-qdd.example</dd>' in page.text
    assert "\u0435vil" not in page.text.split('class="who"')[1].split("</section>")[0]
    assert "form-action 'self' https://xn--vil-qdd.example;" in page.headers["content-security-policy"]
    claim = flow.device.call(
        flow.client, "POST", "/device/pairings/claim", {"qr_payload": qr_payload_for(client, path)}
    )
    assert claim.status_code == 200, claim.text
    assert claim.json()["redirect_host"] == "xn--vil-qdd.example"


def test_cursor_registers_its_app_scheme_pairs_and_gets_its_code_and_tokens(
    flow: Flow, client: TestClient[Any], verifier_challenge: tuple[str, str]
) -> None:
    """Cursor registers `cursor://anysphere.cursor-mcp/oauth/callback` (an app's own scheme, RFC 8252 §7.1): the page
    lets the browser follow the redirect to it (CSP form-action), the device names the app, and the code is Cursor's."""
    redirect_uri = "cursor://anysphere.cursor-mcp/oauth/callback"
    info = register(client, client_name="Cursor", redirect_uris=[redirect_uri], application_type="native")
    assert info["redirect_uris"] == [redirect_uri]
    params = _params(info, verifier_challenge[1])
    path = flow.pairing_page(params)
    page = flow.client.get(path)
    assert '<dd class="redirect-host">cursor://anysphere.cursor-mcp</dd>' in page.text
    assert "form-action 'self' cursor:;" in page.headers["content-security-policy"]
    claim = flow.device.call(
        flow.client, "POST", "/device/pairings/claim", {"qr_payload": qr_payload_for(client, path)}
    )
    assert claim.status_code == 200, claim.text
    assert claim.json()["redirect_host"] == "cursor://anysphere.cursor-mcp"
    approved = flow.device.call(flow.client, "POST", f"/device/pairings/{claim.json()['pairing_id']}/approve")
    assert approved.status_code == 200, approved.text
    done = flow.submit(path, approved.json()["pairing_code"])
    assert done.status_code == 303, done.text
    location = done.headers["location"]
    assert location.startswith(redirect_uri + "?"), location
    query = redirect_query(location)
    assert query["state"] == "opaque-state" and query["iss"] == ISSUER
    elsewhere = exchange(client, info, query["code"], verifier_challenge[0], redirect_uri=redirect_uri + "/x")
    assert (elsewhere.status_code, elsewhere.json()["error"]) == (400, "invalid_grant")  # matched exactly
    tokens = exchange(client, info, query["code"], verifier_challenge[0])
    assert tokens.status_code == 200, tokens.text
    assert tokens.json()["token_type"] == "Bearer"
