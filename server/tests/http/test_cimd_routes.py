"""Client ID Metadata Documents through the endpoints: a client whose client_id is an https URL, served over real TLS
on loopback by a test server with its own CA (`VOUCHSIM_CIMD_CA_FILE`, `VOUCHSIM_CIMD_ALLOW_HOSTS`), goes through
authorize, pairing, token, refresh and revocation like a registered client; an unusable document stops the request
on the error page (never a redirect) and is `invalid_client` at the token endpoint; `VOUCHSIM_REGISTRATION` decides
what is offered and advertised."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import TestClient

from server.tests.cimd_support import DocumentServer, document, served
from server.tests.http.conftest import ISSUER, TEST_HOSTS
from server.tests.support import Device, Flow, authorize_params, exchange, pkce, redirect_query
from vouchsim.server.app import create_app
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.settings import Settings

PATH = "/oauth/client.json"


@pytest.fixture
def docs(tmp_path: Path) -> Iterator[DocumentServer]:
    yield from served(tmp_path)


def _settings(database_url: str, docs: DocumentServer, **extra: Any) -> Settings:
    # 127.0.0.1:1 is allowed too: nothing listens there (an unreachable document).
    allowed = f"{docs.host_key},127.0.0.1:1"
    return Settings(
        database_url=database_url,
        cimd_ca_file=str(docs.ca_file),
        cimd_allow_hosts=allowed,
        allowed_hosts=TEST_HOSTS,
        **extra,
    )


@pytest.fixture
def settings(database_url: str, docs: DocumentServer) -> Settings:
    return _settings(database_url, docs)


def _client_info(docs: DocumentServer, path: str = PATH, **fields: Any) -> dict[str, Any]:
    """Serve a valid document at `path`; the client as the tests use it (client_id = the URL)."""
    url = docs.url(path)
    body = document(url, **fields)
    docs.serve(path, body)
    return body


def _error_page(response: Any) -> str:
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert "This sign-in link is not valid" in response.text
    return str(response.text)


def test_a_metadata_document_client_goes_through_the_whole_flow(
    flow: Flow, client: TestClient[Any], docs: DocumentServer
) -> None:
    info = _client_info(docs)
    verifier, challenge = pkce()
    pairing_path = flow.pairing_page(authorize_params(info, challenge))
    page = client.get(pairing_path).text
    assert "Example MCP Client" in page
    assert '<dd class="verified-host">127.0.0.1' in page  # the client_id host, the verified identity
    assert "localhost-warning" in page  # every redirect URI of the document is on loopback

    payload_code = flow.scan_and_approve(pairing_path)
    submitted = flow.submit(pairing_path, payload_code)
    assert submitted.status_code == 303
    query = redirect_query(submitted.headers["location"])
    tokens = exchange(client, info, query["code"], verifier)
    assert tokens.status_code == 200, tokens.text
    pair = tokens.json()

    refreshed = client.post(
        "/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": pair["refresh_token"], "client_id": info["client_id"]},
    )
    assert refreshed.status_code == 200, refreshed.text
    revoked = client.post(
        "/oauth/revoke", data={"token": refreshed.json()["refresh_token"], "client_id": info["client_id"]}
    )
    assert revoked.status_code == 200, revoked.text
    # One fetch served the whole flow: the document's lifetime is at least five minutes.
    assert docs.fetches(PATH) == 1


def test_the_device_sees_the_verified_host_and_the_localhost_warning(
    flow: Flow, client: TestClient[Any], device: Device, docs: DocumentServer
) -> None:
    info = _client_info(docs, redirect_uris=["http://127.0.0.1:3000/callback", "https://app.example/callback"])
    _verifier, challenge = pkce()
    pairing_path = flow.pairing_page(authorize_params(info, challenge))
    from server.tests.support import qr_payload_for

    claimed = device.call(
        client, "POST", "/device/pairings/claim", {"qr_payload": qr_payload_for(client, pairing_path)}
    )
    assert claimed.status_code == 200, claimed.text
    context = claimed.json()
    assert context["client_id"] == info["client_id"]
    assert context["verified_host"] == "127.0.0.1"
    assert context["localhost_only"] is False  # one redirect URI is not loopback: no warning
    assert "localhost-warning" not in client.get(pairing_path).text


def test_a_registered_client_has_no_verified_host(
    flow: Flow, client: TestClient[Any], device: Device, public_client: dict[str, Any]
) -> None:
    _verifier, challenge = pkce()
    query = flow.authorize(authorize_params(public_client, challenge))
    assert query["code"]
    listed = device.call(client, "GET", "/device/connections").json()["connections"]
    assert listed[0]["verified_host"] is None


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        ({"status": 404, "body": b"nope", "content_type": "text/plain"}, "answered 404"),
        ({"status": 302, "headers": {"Location": "https://elsewhere.example/c.json"}}, "redirects are not followed"),
        ({"body": b"not json at all"}, "not valid JSON"),
        ({"body": b"{" + b" " * 6000 + b"}"}, "larger than 5120 bytes"),
        ({"content_type": "text/html", "body": b"{}"}, "must be application/json"),
    ],
)
def test_an_unusable_document_stops_on_the_error_page(
    client: TestClient[Any], docs: DocumentServer, answer: dict[str, Any], says: str
) -> None:
    url = docs.url(PATH)
    docs.serve(PATH, **answer)
    info = document(url)
    _verifier, challenge = pkce()
    page = _error_page(client.get("/oauth/authorize", params=authorize_params(info, challenge)))
    assert says in page


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"client_id": "https://other.example/client.json"}, "must be exactly the URL"),
        ({"client_secret": "s3cr3t-s3cr3t-s3cr3t"}, "client_secret"),
        ({"token_endpoint_auth_method": "client_secret_basic"}, "shared-secret method"),
        ({"redirect_uris": ["http://evil.example/cb"]}, "must use https"),
    ],
)
def test_an_invalid_document_stops_on_the_error_page_and_is_invalid_client_at_the_token_endpoint(
    client: TestClient[Any], docs: DocumentServer, fields: dict[str, Any], says: str
) -> None:
    url = docs.url(PATH)
    docs.serve(PATH, document(url, **fields))
    info = document(url)
    verifier, challenge = pkce()
    assert says in _error_page(client.get("/oauth/authorize", params=authorize_params(info, challenge)))
    token = exchange(client, info, "a-code-never-issued", verifier)
    assert token.status_code == 400 and token.json()["error"] == "invalid_client", token.text
    assert says in token.json()["error_description"]


def test_an_unreachable_document_is_the_error_page(client: TestClient[Any]) -> None:
    info = document("https://127.0.0.1:1/client.json")  # allowed, but nothing listens on port 1
    _verifier, challenge = pkce()
    assert "could not be fetched" in _error_page(
        client.get("/oauth/authorize", params=authorize_params(info, challenge))
    )


def test_a_private_address_without_the_allow_setting_is_refused(
    database_url: str, docs: DocumentServer, clock: FrozenClock
) -> None:
    info = _client_info(docs)
    settings = Settings(  # no VOUCHSIM_CIMD_ALLOW_HOSTS
        database_url=database_url, cimd_ca_file=str(docs.ca_file), allowed_hosts=TEST_HOSTS
    )
    with TestClient(create_app(settings, clock=clock), base_url=ISSUER) as plain:
        _verifier, challenge = pkce()
        page = _error_page(plain.get("/oauth/authorize", params=authorize_params(info, challenge)))
    assert "resolves to a loopback" in page and "VOUCHSIM_CIMD_ALLOW_HOSTS" in page
    assert docs.fetches(PATH) == 0


def test_a_redirect_uri_not_in_the_document_is_the_error_page_and_loopback_ports_may_differ(
    flow: Flow, client: TestClient[Any], docs: DocumentServer
) -> None:
    info = _client_info(docs)
    _verifier, challenge = pkce()
    wrong = authorize_params(info, challenge, redirect_uri="http://127.0.0.1:3000/elsewhere")
    _error_page(client.get("/oauth/authorize", params=wrong))
    other_port = authorize_params(info, challenge, redirect_uri="http://127.0.0.1:51234/callback")
    assert flow.pairing_page(other_port).startswith("/oauth/authorize/pairing/")


def test_metadata_advertises_cimd_and_registration_by_default(client: TestClient[Any]) -> None:
    metadata = client.get("/.well-known/oauth-authorization-server").json()
    assert metadata["client_id_metadata_document_supported"] is True
    assert metadata["registration_endpoint"] == f"{ISSUER}/oauth/register"


def test_cimd_alone_has_no_registration(database_url: str, docs: DocumentServer, clock: FrozenClock) -> None:
    with TestClient(create_app(_settings(database_url, docs, registration="cimd"), clock=clock), base_url=ISSUER) as c:
        metadata = c.get("/.well-known/oauth-authorization-server").json()
        assert metadata["client_id_metadata_document_supported"] is True
        assert "registration_endpoint" not in metadata
        response = c.post("/oauth/register", json={"redirect_uris": ["http://127.0.0.1:3000/cb"]})
        assert response.status_code == 404 and response.json()["error"] == "not_found"


def test_dcr_alone_never_fetches_a_document(database_url: str, docs: DocumentServer, clock: FrozenClock) -> None:
    info = _client_info(docs)
    with TestClient(create_app(_settings(database_url, docs, registration="dcr"), clock=clock), base_url=ISSUER) as c:
        metadata = c.get("/.well-known/oauth-authorization-server").json()
        assert metadata["client_id_metadata_document_supported"] is False
        assert metadata["registration_endpoint"] == f"{ISSUER}/oauth/register"
        verifier, challenge = pkce()
        assert "does not exist" in _error_page(c.get("/oauth/authorize", params=authorize_params(info, challenge)))
        token = exchange(c, info, "a-code-never-issued", verifier)
        assert token.json()["error"] == "invalid_client"
    assert docs.fetches(PATH) == 0


def test_a_cimd_client_cannot_introspect(client: TestClient[Any], docs: DocumentServer) -> None:
    info = _client_info(docs)
    response = client.post("/oauth/introspect", data={"token": "vsat_whatever", "client_id": info["client_id"]})
    assert response.status_code in (400, 401) and response.json()["error"] == "invalid_client"


def test_a_document_that_breaks_before_the_person_consents_ends_on_the_error_page(
    flow: Flow, client: TestClient[Any], docs: DocumentServer, clock: FrozenClock
) -> None:
    info = _client_info(docs)
    _verifier, challenge = pkce()
    flow.authorize(authorize_params(info, challenge))  # pairs, and signs this browser in
    start = flow.start(authorize_params(info, challenge))
    assert start.status_code == 303 and start.headers["location"].endswith("/consent")
    page = client.get(start.headers["location"])
    clock.advance(6 * 60)  # past the document's cache lifetime (5 minutes: no cache headers)
    docs.serve(PATH, status=404, body=b"gone", content_type="text/plain")
    from server.tests.support import csrf_of

    done = client.post(start.headers["location"], data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert "answered 404" in _error_page(done)
