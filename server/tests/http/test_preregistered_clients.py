"""Pre-registered clients (`VOUCHSIM_CLIENTS_FILE`) are in the database once the server has started, and go
through the whole authorization flow like registered ones: a public client, and a confidential one that
authenticates with the secret from the file."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from server.tests.support import Flow, authorize_params, exchange
from vouchsim.server.app import create_app
from vouchsim.server.oauth.preregistered import ClientsFileError
from vouchsim.server.settings import Settings

PUBLIC = {
    "client_id": "acme-agent",
    "client_name": "ACME agent",
    "redirect_uris": ["http://127.0.0.1:41234/callback"],
    "application_type": "native",
}
CONFIDENTIAL = {
    "client_id": "acme-backend",
    "client_name": "ACME backend",
    "redirect_uris": ["https://acme.example/oauth/callback"],
    "token_endpoint_auth_method": "client_secret_basic",
    "client_secret": "correct-horse-battery-staple",
}


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    path = tmp_path / "clients.json"
    path.write_text(json.dumps({"clients": [PUBLIC, CONFIDENTIAL]}))
    return Settings(database_url=database_url, clients_file=str(path), allowed_hosts="vouch.test")


def test_a_preregistered_public_client_completes_the_flow(flow: Flow, verifier_challenge: tuple[str, str]) -> None:
    query = flow.authorize(authorize_params(PUBLIC, verifier_challenge[1]))
    response = exchange(flow.client, PUBLIC, query["code"], verifier_challenge[0])
    assert response.status_code == 200, response.text
    assert response.json()["access_token"]


def test_a_preregistered_confidential_client_authenticates_with_its_secret(
    flow: Flow, verifier_challenge: tuple[str, str]
) -> None:
    query = flow.authorize(authorize_params(CONFIDENTIAL, verifier_challenge[1]))
    basic = base64.b64encode(b"acme-backend:correct-horse-battery-staple").decode()
    wrong = base64.b64encode(b"acme-backend:not-the-secret-at-all").decode()
    data = {
        "grant_type": "authorization_code",
        "code": query["code"],
        "redirect_uri": CONFIDENTIAL["redirect_uris"][0],
        "code_verifier": verifier_challenge[0],
    }
    anonymous = flow.client.post("/oauth/token", data={**data, "client_id": "acme-backend"})
    assert anonymous.status_code in (400, 401) and anonymous.json()["error"] == "invalid_client"
    bad = flow.client.post("/oauth/token", data=data, headers={"Authorization": f"Basic {wrong}"})
    assert bad.status_code == 401 and bad.json()["error"] == "invalid_client"
    good = flow.client.post("/oauth/token", data=data, headers={"Authorization": f"Basic {basic}"})
    assert good.status_code == 200, good.text


def test_an_unusable_clients_file_stops_the_app_at_once(tmp_path: Path, database_url: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"clients": [{**PUBLIC, "redirect_uris": ["http://evil.example/cb"]}]}))
    with pytest.raises(ClientsFileError, match="must use https"):
        create_app(Settings(database_url=database_url, clients_file=str(path)))
