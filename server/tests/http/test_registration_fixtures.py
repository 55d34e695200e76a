"""RFC 7591 registration against the payloads in fixtures/registration/ (listed in its index.json): real
clients' bodies register and are echoed, malformed ones get the RFC error code the index names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from server.tests.support import authorize_params, pkce

REGISTRATION_DIR = Path(__file__).resolve().parents[3] / "fixtures" / "registration"
INDEX: dict[str, Any] = json.loads((REGISTRATION_DIR / "index.json").read_text(encoding="utf-8"))

# RFC 7591 §2 client metadata, plus this server's `provider_id`: what a registration response must echo.
# Anything else (e.g. OpenID's `application_type`) is ignored, as RFC 7591 §2 lets a server do.
ECHOED = {
    "redirect_uris",
    "token_endpoint_auth_method",
    "grant_types",
    "response_types",
    "client_name",
    "client_uri",
    "logo_uri",
    "scope",
    "contacts",
    "tos_uri",
    "policy_uri",
    "jwks_uri",
    "jwks",
    "software_id",
    "software_version",
    "provider_id",
}


def payload(entry: dict[str, Any]) -> Any:
    return json.loads((REGISTRATION_DIR / entry["file"]).read_text(encoding="utf-8"))


def test_index_lists_every_payload_file() -> None:
    listed = {entry["file"] for entry in INDEX["valid"] + INDEX["invalid"]}
    on_disk = {p.relative_to(REGISTRATION_DIR).as_posix() for p in REGISTRATION_DIR.glob("*/*.json")}
    assert listed == on_disk
    assert {entry["expected_error"] for entry in INDEX["invalid"]} == {
        "invalid_redirect_uri",
        "invalid_client_metadata",
    }


@pytest.mark.parametrize("entry", INDEX["valid"], ids=lambda entry: Path(entry["file"]).stem)
def test_valid_payload_registers_and_is_echoed(client: TestClient[Any], entry: dict[str, Any]) -> None:
    body = payload(entry)
    response = client.post("/oauth/register", json=body)
    assert response.status_code == 201, response.text
    assert response.headers["cache-control"] == "no-store"
    registered = response.json()
    assert registered["client_id"]
    assert isinstance(registered["client_id_issued_at"], int)
    for name in ECHOED & body.keys():
        assert registered[name] == body[name], name
    if registered["token_endpoint_auth_method"] == "none":
        assert "client_secret" not in registered
    else:
        assert registered["client_secret"]
    # The registration is usable: an authorization request with it opens a pairing page.
    params = authorize_params(registered, pkce()[1], scope=registered["scope"])
    started = client.get("/oauth/authorize", params=params, follow_redirects=False)
    assert started.status_code == 303, started.text
    assert started.headers["location"].startswith("/oauth/authorize/pairing/")


@pytest.mark.parametrize("entry", INDEX["invalid"], ids=lambda entry: Path(entry["file"]).stem)
def test_invalid_payload_gets_its_error(client: TestClient[Any], entry: dict[str, Any]) -> None:
    response = client.post("/oauth/register", json=payload(entry))
    assert response.status_code == 400, response.text
    assert response.headers["cache-control"] == "no-store"
    assert response.json()["error"] == entry["expected_error"]
    assert response.json()["error_description"]
