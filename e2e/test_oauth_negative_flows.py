"""What must fail, failing over real HTTP: wrong and stolen pairing codes, replayed codes, PKCE tricks,
refresh-token reuse, redirect mismatches, revoked tokens and tokens shown to another resource.

The agent's side is plain httpx (so each test can misbehave on purpose); the person's side is the headless
browser and the companion's CLI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from e2e.harness import (
    HTTP_TIMEOUT,
    Browser,
    Companion,
    LiveServer,
    Page,
    Pkce,
    ServerFactory,
    authorization_url,
    exchange_code,
    mcp_initialize,
    query_of,
    refresh,
    register_client,
    run_companion,
    www_authenticate,
)
from vouchsim.companion.core.errors import PairingClosedError

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]


@dataclass
class Authorized:
    """A client that went through the pairing page: its registration, PKCE pair and redirect parameters."""

    client: dict[str, Any]
    pkce: Pkce
    state: str
    redirect: dict[str, str]

    @property
    def code(self) -> str:
        return self.redirect["code"]


async def authorize(http: httpx.AsyncClient, base_url: str, browser: Browser, companion: Companion) -> Authorized:
    client = await register_client(http, base_url)
    pkce = Pkce.new()
    url = authorization_url(base_url, client, pkce)
    location = await browser.authorize(url, companion)
    assert location.startswith(client["redirect_uris"][0] + "?"), location
    redirect = query_of(location)
    assert redirect["state"] == query_of(url)["state"]
    return Authorized(client, pkce, query_of(url)["state"], redirect)


async def tokens_for(http: httpx.AsyncClient, base_url: str, done: Authorized) -> dict[str, Any]:
    response = await exchange_code(http, base_url, done.client, done.code, done.pkce.verifier)
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


def assert_oauth_error(response: httpx.Response, error: str, status: int = 400) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"] == error, response.text
    assert response.headers["cache-control"] == "no-store"


def assert_rejected_token(response: httpx.Response) -> None:
    assert response.status_code == 401, response.text
    assert www_authenticate(response)["error"] == "invalid_token"


def another_code(code: str) -> str:
    """A well-formed pairing code that is not `code` (a malformed one would not count as an attempt)."""
    return "BCDF-GHJK" if code != "BCDF-GHJK" else "KJHG-FDCB"


# --- the pairing page ----------------------------------------------------------------------------------


@pytest.mark.requirement("PAIRING-CODE-ATTEMPTS")
async def test_five_wrong_codes_burn_the_pairing(
    live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, companion: Companion
) -> None:
    client = await register_client(http, live_server.base_url)
    page, code = await browser.pair(authorization_url(live_server.base_url, client, Pkce.new()), companion)
    wrong = another_code(code)
    for tries_left in (4, 3, 2, 1):
        response = await browser.submit_code(page, wrong)
        assert response.status_code == 400, response.text
        again = Page.of(response)
        assert "not the pairing code" in again.alerts, again.alerts
        assert f"{tries_left} {'try' if tries_left == 1 else 'tries'} left" in again.html
        page = again

    fifth = await browser.submit_code(page, wrong)
    assert 400 <= fifth.status_code < 500 and "location" not in fifth.headers, fifth.text
    assert "Too many wrong pairing codes" in fifth.text
    assert "too many times" in Page.of(fifth).alerts
    shown = await browser.page(page.url)
    assert "Too many wrong pairing codes" in shown.html
    assert not [form for form in shown.forms if "code" in form["fields"]], "the code form is still offered"

    # The right code is now refused, on the page and on the device.
    right = await browser.submit_code(page, code)
    assert right.status_code != 303 and "location" not in right.headers, right.text
    assert "Too many wrong pairing codes" in right.text
    pairing_id = page.url.rstrip("/").rsplit("/", 1)[-1]
    with pytest.raises(PairingClosedError):
        await companion.api.approve_pairing(pairing_id)


@pytest.mark.requirement("PAIRING-BROWSER-BINDING")
async def test_a_code_typed_in_another_browser_session_is_refused(
    live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, companion: Companion, tmp_path: Path
) -> None:
    client = await register_client(http, live_server.base_url)
    page, code = await browser.pair(authorization_url(live_server.base_url, client, Pkce.new()), companion)

    async with Browser(live_server.base_url, tmp_path) as intruder:
        # Copied form, CSRF token and code, but another cookie jar: the form is not theirs.
        copied = await intruder.submit_code(page, code)
        assert copied.status_code == 403, copied.text
        assert "location" not in copied.headers
        # With a valid CSRF token of their own session (from their own authorization page) it is still
        # not their pairing.
        own = await intruder.open_authorization(authorization_url(live_server.base_url, client, Pkce.new()))
        stolen = await intruder.submit_code(page, code, csrf=own.csrf)
        assert stolen.status_code == 404, stolen.text
        assert "location" not in stolen.headers

    # The code was the right one all along: in the session that opened the pairing, it works.
    done = await browser.submit_code(page, code)
    assert done.status_code == 303, done.text
    assert done.headers["location"].startswith(client["redirect_uris"][0] + "?")
    assert "code" in query_of(done.headers["location"])


@pytest.mark.requirement(
    "OAUTH-REDIRECT-MISMATCH-NO-REDIRECT", "OAUTH-LOOPBACK-REDIRECT", "OAUTH-REDIRECT-BROWSER-HOST"
)
@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/callback",
        "http://127.0.0.1:9/elsewhere",
        # Issue 9, finding 1: a browser goes to evil.example; the server once judged these 127.0.0.1.
        "http://evil.example\\@127.0.0.1:9/callback",
        "http://evil.example@127.0.0.1:9/callback",
    ],
    ids=["other-host", "loopback-other-path", "backslash-userinfo", "userinfo"],
)
async def test_a_redirect_uri_that_does_not_match_gets_an_error_page_not_a_redirect(
    live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, redirect_uri: str
) -> None:
    client = await register_client(http, live_server.base_url)
    url = authorization_url(live_server.base_url, client, Pkce.new(), redirect_uri=redirect_uri)
    response = await browser.get(url)
    assert response.status_code == 400, response.text
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "redirect" in Page.of(response).alerts.lower()


@pytest.mark.requirement("OAUTH-PKCE-NO-DOWNGRADE", "OAUTH-ISS-RESPONSE")
@pytest.mark.parametrize(
    "overrides",
    [
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
        {"code_challenge": None, "code_challenge_method": None},
    ],
    ids=["plain", "method-missing", "challenge-missing"],
)
async def test_pkce_downgrade_is_sent_back_as_invalid_request(
    live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, overrides: dict[str, str | None]
) -> None:
    client = await register_client(http, live_server.base_url)
    pkce = Pkce.new()
    if overrides.get("code_challenge_method", "") == "plain":
        overrides = {**overrides, "code_challenge": pkce.verifier}
    url = authorization_url(live_server.base_url, client, pkce, **overrides)
    response = await browser.get(url)
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    assert location.startswith(client["redirect_uris"][0] + "?"), location
    params = query_of(location)
    assert params["error"] == "invalid_request", params
    assert params["state"] == query_of(url)["state"]
    assert params["iss"] == live_server.base_url
    assert "code" not in params


# --- the token endpoint --------------------------------------------------------------------------------


@pytest.mark.requirement("OAUTH-CODE-SINGLE-USE", "OAUTH-CHALLENGE")
async def test_a_replayed_code_is_refused_and_revokes_what_it_issued(
    live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, companion: Companion
) -> None:
    done = await authorize(http, live_server.base_url, browser, companion)
    tokens = await tokens_for(http, live_server.base_url, done)
    assert (await mcp_initialize(http, live_server.mcp_url, tokens["access_token"])).status_code == 200

    replay = await exchange_code(http, live_server.base_url, done.client, done.code, done.pkce.verifier)
    assert_oauth_error(replay, "invalid_grant")
    assert_rejected_token(await mcp_initialize(http, live_server.mcp_url, tokens["access_token"]))
    assert_oauth_error(await refresh(http, live_server.base_url, done.client, tokens["refresh_token"]), "invalid_grant")


@pytest.mark.requirement("OAUTH-PKCE-VERIFIER-MISMATCH")
async def test_a_wrong_code_verifier_is_invalid_grant(
    live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, companion: Companion
) -> None:
    done = await authorize(http, live_server.base_url, browser, companion)
    wrong = await exchange_code(http, live_server.base_url, done.client, done.code, Pkce.new().verifier)
    assert_oauth_error(wrong, "invalid_grant")
    assert "access_token" not in wrong.json()


@pytest.mark.requirement("OAUTH-REFRESH-REUSE-GRACE", "OAUTH-REFRESH-ROTATION")
async def test_refresh_token_reuse_within_the_grace_window_gets_the_same_successor(
    live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, companion: Companion
) -> None:
    """The counterpart of the reuse test below: the default 30 s grace forgives a racing twin."""
    done = await authorize(http, live_server.base_url, browser, companion)
    first = await tokens_for(http, live_server.base_url, done)
    rotated = await refresh(http, live_server.base_url, done.client, first["refresh_token"])
    assert rotated.status_code == 200, rotated.text
    twin = await refresh(http, live_server.base_url, done.client, first["refresh_token"])
    assert twin.status_code == 200, twin.text
    assert twin.json()["refresh_token"] == rotated.json()["refresh_token"]
    assert twin.json()["access_token"] == rotated.json()["access_token"]
    assert (await mcp_initialize(http, live_server.mcp_url, rotated.json()["access_token"])).status_code == 200


@pytest.mark.requirement("OAUTH-REFRESH-REUSE-REVOKES", "OAUTH-REFRESH-ROTATION")
async def test_refresh_token_reuse_after_rotation_revokes_the_grant(
    servers: ServerFactory, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    # Its own server: no grace at all, so the reuse below is outside the window however fast it comes.
    no_grace = await anyio.to_thread.run_sync(lambda: servers.start(env={"VOUCHSIM_REFRESH_GRACE": "0"}))
    try:
        async with (
            httpx.AsyncClient(base_url=no_grace.base_url, timeout=HTTP_TIMEOUT) as device_http,
            Browser(no_grace.base_url, tmp_path) as browser,
        ):
            companion = await Companion.enrol(tmp_path / "companion", device_http)
            done = await authorize(http, no_grace.base_url, browser, companion)
            first = await tokens_for(http, no_grace.base_url, done)
            rotated = await refresh(http, no_grace.base_url, done.client, first["refresh_token"])
            assert rotated.status_code == 200, rotated.text
            second = rotated.json()
            assert second["refresh_token"] != first["refresh_token"]
            assert (await mcp_initialize(http, no_grace.mcp_url, second["access_token"])).status_code == 200

            reuse = await refresh(http, no_grace.base_url, done.client, first["refresh_token"])
            assert_oauth_error(reuse, "invalid_grant")
            # The whole grant is gone: the successor pair too.
            assert_rejected_token(await mcp_initialize(http, no_grace.mcp_url, second["access_token"]))
            assert_oauth_error(
                await refresh(http, no_grace.base_url, done.client, second["refresh_token"]), "invalid_grant"
            )
    finally:
        await anyio.to_thread.run_sync(no_grace.stop)
    assert no_grace.tracebacks() is None, no_grace.tracebacks()


# --- the resource server -------------------------------------------------------------------------------


@pytest.mark.requirement("OAUTH-TOKEN-REVOCATION", "OAUTH-CHALLENGE")
@pytest.mark.parametrize("encoding", ["form", "json"])
async def test_a_revoked_access_token_is_refused_at_mcp(
    live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, companion: Companion, encoding: str
) -> None:
    done = await authorize(http, live_server.base_url, browser, companion)
    tokens = await tokens_for(http, live_server.base_url, done)
    assert (await mcp_initialize(http, live_server.mcp_url, tokens["access_token"])).status_code == 200

    body = {"token": tokens["access_token"], "client_id": done.client["client_id"]}
    revoke_url = f"{live_server.base_url}/oauth/revoke"
    revoked = await (http.post(revoke_url, data=body) if encoding == "form" else http.post(revoke_url, json=body))
    assert revoked.status_code == 200, revoked.text

    refused = await mcp_initialize(http, live_server.mcp_url, tokens["access_token"])
    assert_rejected_token(refused)
    assert www_authenticate(refused)["resource_metadata"] == (
        f"{live_server.base_url}/.well-known/oauth-protected-resource/mcp"
    )


@pytest.mark.requirement("OAUTH-RESOURCE-AUDIENCE", "OAUTH-RESOURCE-INDICATOR")
async def test_a_token_shown_to_another_resource_is_refused(
    live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, companion: Companion
) -> None:
    done = await authorize(http, live_server.base_url, browser, companion)
    tokens = await tokens_for(http, live_server.base_url, done)
    # Issued for http://127.0.0.1:<port>/mcp; the same socket named localhost is another resource.
    assert (await mcp_initialize(http, live_server.mcp_url, tokens["access_token"])).status_code == 200
    elsewhere = await mcp_initialize(
        http, live_server.mcp_url, tokens["access_token"], host=f"localhost:{live_server.port}"
    )
    assert_rejected_token(elsewhere)
    assert www_authenticate(elsewhere)["resource_metadata"].startswith(f"http://localhost:{live_server.port}/")


@pytest.mark.requirement("PAIRING-UNPAIR-REVOKES", "PAIRING-QR-APPROVE")
async def test_unpairing_on_the_companion_cuts_the_tokens_off(
    live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, companion: Companion
) -> None:
    done = await authorize(http, live_server.base_url, browser, companion)
    tokens = await tokens_for(http, live_server.base_url, done)
    assert (await mcp_initialize(http, live_server.mcp_url, tokens["access_token"])).status_code == 200
    [connection] = await companion.api.connections()
    assert connection.client_id == done.client["client_id"]

    unpaired = await run_companion("unpair", connection.connection_id, "--state", companion.state_dir)
    assert unpaired.returncode == 0, unpaired.stderr

    assert_rejected_token(await mcp_initialize(http, live_server.mcp_url, tokens["access_token"]))
    assert_oauth_error(await refresh(http, live_server.base_url, done.client, tokens["refresh_token"]), "invalid_grant")
    [after] = await companion.api.connections()
    assert after.revoked_at is not None
