"""MCP 2026-07-28 authorization details besides CIMD: `prompt` (OpenID Connect Core §3.1.2.1; the Python SDK sends
`prompt=consent` with `offline_access`), the 403 step-up challenge naming only resource scopes (SEP-2207, SEP-2350),
`resource` compared with its scheme and host in lower case ("Canonical Server URI"), and pre-registered clients
after a testbed reset or once they leave the clients file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from server.tests.http.conftest import ISSUER, TEST_HOSTS
from server.tests.http.test_mcp_routes import PAYMENT, Agent, tokens_for
from server.tests.support import Flow, authorize_params, exchange, pkce, redirect_query, register
from vouchsim.server.app import create_app
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.settings import Settings


# -- prompt ------------------------------------------------------------------------------------------------------
def test_prompt_none_without_a_signed_in_browser_is_login_required(flow: Flow, public_client: dict[str, Any]) -> None:
    _verifier, challenge = pkce()
    response = flow.start(authorize_params(public_client, challenge, prompt="none"))
    assert response.status_code == 303
    query = redirect_query(response.headers["location"])
    assert response.headers["location"].startswith(public_client["redirect_uris"][0])
    assert query == {
        "error": "login_required",
        "error_description": query["error_description"],
        "state": "opaque-state",
        "iss": ISSUER,
    }


def test_prompt_none_with_a_signed_in_browser_is_consent_required(flow: Flow, public_client: dict[str, Any]) -> None:
    _verifier, challenge = pkce()
    flow.authorize(authorize_params(public_client, challenge))  # signs the browser in
    response = flow.start(authorize_params(public_client, challenge, prompt="none"))
    assert redirect_query(response.headers["location"])["error"] == "consent_required"
    combined = flow.start(authorize_params(public_client, challenge, prompt="none consent"))
    assert redirect_query(combined.headers["location"])["error"] == "invalid_request"


def test_prompt_consent_shows_the_consent_page_and_login_pairs_again(flow: Flow, public_client: dict[str, Any]) -> None:
    verifier, challenge = pkce()
    flow.authorize(authorize_params(public_client, challenge))
    consent = flow.start(
        authorize_params(public_client, challenge, prompt="consent", scope="identity delegation offline_access")
    )
    assert consent.status_code == 303 and consent.headers["location"].endswith("/consent")
    login = flow.start(authorize_params(public_client, challenge, prompt="login"))
    assert login.status_code == 303 and login.headers["location"].startswith("/oauth/authorize/pairing/")
    code = flow.submit(login.headers["location"], flow.scan_and_approve(login.headers["location"]))
    assert exchange(flow.client, public_client, redirect_query(code.headers["location"])["code"], verifier).json()[
        "access_token"
    ]


# -- the step-up challenge --------------------------------------------------------------------------------------
def test_the_step_up_challenge_never_names_offline_access(flow: Flow) -> None:
    info = register(flow.client)
    tokens = tokens_for(flow, info, scope="identity offline_access")
    assert "offline_access" in tokens["scope"].split()
    mcp = Agent(flow.client, tokens["access_token"])
    assert mcp.initialize().status_code == 200
    response = mcp.call("delegation_request", PAYMENT)
    assert response.status_code == 403
    assert 'scope="identity delegation"' in response.headers["www-authenticate"]


# -- resource, canonically ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("resource", ["HTTPS://VOUCH.TEST/mcp", "https://Vouch.Test/mcp/"])
def test_an_upper_case_scheme_or_host_in_resource_is_the_same_resource(
    flow: Flow, public_client: dict[str, Any], resource: str
) -> None:
    verifier, challenge = pkce()
    query = flow.authorize(authorize_params(public_client, challenge, resource=resource))
    response = exchange(flow.client, public_client, query["code"], verifier, resource=resource)
    assert response.status_code == 200, response.text
    mcp = Agent(flow.client, response.json()["access_token"])
    assert mcp.initialize().status_code == 200  # bound to https://vouch.test/mcp, accepted at /mcp


def test_a_resource_with_another_path_case_is_another_resource(flow: Flow, public_client: dict[str, Any]) -> None:
    _verifier, challenge = pkce()
    response = flow.start(authorize_params(public_client, challenge, resource="https://vouch.test/MCP"))
    assert redirect_query(response.headers["location"])["error"] == "invalid_target"


# -- pre-registered clients: testbed reset, retirement -------------------------------------------------------------
PREREGISTERED = {
    "client_id": "acme-agent",
    "client_name": "ACME agent",
    "redirect_uris": ["http://127.0.0.1:41234/callback"],
}
TOKEN = "testbed-token-for-the-tests-0123456789"


def _authorize(client: TestClient[Any], params: tuple[dict[str, Any], str]) -> Any:
    return client.get("/oauth/authorize", params=authorize_params(*params), follow_redirects=False)


def test_a_testbed_reset_seeds_the_clients_file_again(database_url: str, tmp_path: Path, clock: FrozenClock) -> None:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [PREREGISTERED]}))
    settings = Settings(
        database_url=database_url,
        clients_file=str(path),
        testbed=True,
        testbed_token=TOKEN,
        allowed_hosts=TEST_HOSTS,
    )
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with TestClient(create_app(settings, clock=clock), base_url=ISSUER) as client:
        _verifier, challenge = pkce()
        assert _authorize(client, (PREREGISTERED, challenge)).status_code == 303
        renamed = {**PREREGISTERED, "client_id": "acme-agent-2"}
        path.write_text(json.dumps({"clients": [renamed]}))  # edited between two runs
        assert client.post("/testbed/reset", headers=auth).status_code == 204
        assert _authorize(client, (renamed, challenge)).status_code == 303
        assert _authorize(client, (PREREGISTERED, challenge)).status_code == 400

        path.write_text("{not json")
        refused = client.post("/testbed/reset", headers=auth)
        assert refused.status_code == 409 and refused.json()["error"] == "conflict"
        assert "the clients file" in refused.json()["error_description"]
        # nothing was wiped
        assert _authorize(client, (renamed, challenge)).status_code == 303


def test_a_client_that_left_the_file_is_unknown(database_url: str, tmp_path: Path, clock: FrozenClock) -> None:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [PREREGISTERED]}))
    settings = Settings(database_url=database_url, clients_file=str(path), allowed_hosts=TEST_HOSTS)
    with TestClient(create_app(settings, clock=clock), base_url=ISSUER) as first:
        assert first.get("/healthz").status_code == 200
    path.write_text(json.dumps({"clients": []}))
    with TestClient(create_app(settings, clock=clock), base_url=ISSUER) as client:
        _verifier, challenge = pkce()
        page = _authorize(client, (PREREGISTERED, challenge))
        assert page.status_code == 400 and "location" not in page.headers
        token = exchange(client, PREREGISTERED, "a-code-never-issued", _verifier)
        assert token.json()["error"] == "invalid_client"
