"""The `vouchsim` pytest plugin, as another project would use it: the README's example test, run by a
separate pytest (pytester) against a real server. And the `authorize-url` command against a live server."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, quote, urlsplit

import httpx
import pytest

from companion.tests.cli_support import TtyInput
from vouchsim.companion.cli import main
from vouchsim.companion.testing import TrustedDevice, VouchsimServer

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).with_name("example_test_vouchsim.py")
README = Path(__file__).resolve().parents[3] / "README.md"
FIXTURES = (
    *("vouchsim_server", "vouchsim_device", "vouchsim_authorize"),
    *("vouchsim_client", "vouchsim_token", "vouchsim_testbed"),
)
# The pytest plugins of this repository's own suite, which a project using Vouchsim does not have: left out of the
# inner runs, where loading them took 1.4 s of the 2.4 s of CPU each pytest spent starting.
OUR_SUITES_PLUGINS = ("schemathesis", "hypothesispytest", "faker", "syrupy", "textual-snapshot")
WITHOUT_THEM = tuple(arg for name in OUR_SUITES_PLUGINS for arg in ("-p", f"no:{name}"))
INI = f"[pytest]\nfilterwarnings = error\naddopts = -p no:cacheprovider --strict-markers {' '.join(WITHOUT_THEM)}\n"


def test_the_readme_shows_the_example_that_is_tested() -> None:
    body = EXAMPLE.read_text("utf-8").split('"""', 2)[2].strip()
    assert body in README.read_text("utf-8")


def test_the_example_passes_against_a_real_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_example=EXAMPLE.read_text("utf-8"))
    pytester.makeini(INI)
    result = pytester.runpytest_subprocess("-q", timeout=90)
    result.assert_outcomes(passed=2)


def test_the_plugin_starts_nothing_unless_asked(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain():\n    assert True\n")
    result = pytester.runpytest_subprocess("-q", "--strict-markers", "-W", "error", "--fixtures", *WITHOUT_THEM)
    for name in FIXTURES:
        result.stdout.fnmatch_lines([f"{name}*"])
    result = pytester.runpytest_subprocess("-q", "--markers", *WITHOUT_THEM)
    result.stdout.fnmatch_lines(["@pytest.mark.vouchsim_reset: *"])
    result = pytester.runpytest_subprocess("--help", *WITHOUT_THEM)
    result.stdout.fnmatch_lines(["*--vouchsim-reset*"])
    result = pytester.runpytest_subprocess("-q", "--strict-markers", "-W", "error", *WITHOUT_THEM)
    result.assert_outcomes(passed=1)


def test_loading_the_plugin_imports_none_of_the_kit() -> None:
    """pytest loads the plugin in every run of a project that installed Vouchsim: the kit (httpx, the device, the
    authorization page's parser) is imported when a fixture or a name asks for it, not before."""
    probe = (
        "import sys, vouchsim.testing, vouchsim.companion.testing as kit\n"
        "print(sorted(m for m in sys.modules if m == 'httpx' or m.startswith('vouchsim.companion.')))\n"
        "assert kit.__all__ == sorted(kit._HOMES) and all(getattr(kit, name) for name in kit.__all__)\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.split("\n")[0] == "['vouchsim.companion.testing', 'vouchsim.companion.testing.pytest_plugin']"


FIXTURE_TESTS = """
import httpx
import pytest
from urllib.parse import parse_qs, urlsplit

from vouchsim.companion.testing import OAuthError
from vouchsim.companion.testing.oauth import code_challenge

MCP = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}


def test_client_builds_pkce_urls_and_checks_the_redirect(vouchsim_server, vouchsim_client, vouchsim_authorize):
    request = vouchsim_client.authorization_request(scope="identity")
    query = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
    assert request.url.startswith(vouchsim_server.base_url + "/oauth/authorize?")
    assert query["client_id"] == vouchsim_client.client_id and query["code_challenge_method"] == "S256"
    assert query["code_challenge"] == code_challenge(request.code_verifier) and query["state"] == request.state
    assert query["resource"] == vouchsim_server.mcp_url
    assert vouchsim_client.authorization_request().state != request.state  # fresh each time
    redirect = vouchsim_authorize(request.url)
    forged = redirect.replace("state=", "state=x")
    with pytest.raises(OAuthError, match="state"):
        vouchsim_client.exchange(forged, request)
    tokens = vouchsim_client.exchange(redirect, request)
    assert tokens.scope == "identity" and tokens.refresh_token and tokens.expires_in == 3600
    assert "vsat_" not in repr(tokens)  # a failing assertion shows no token
    rotated = vouchsim_client.refresh(tokens)
    assert rotated.refresh_token != tokens.refresh_token
    vouchsim_client.revoke(rotated.access_token)
    answer = httpx.post(vouchsim_server.mcp_url, headers={**rotated.authorization, **MCP}, json=INITIALIZE)
    assert answer.status_code == 401
    with pytest.raises(OAuthError) as replay:  # the code was used
        vouchsim_client.exchange(redirect, request)
    assert replay.value.error == "invalid_grant" and replay.value.status == 400


def test_token_comes_through_pairing_and_calls_mcp(vouchsim_server, vouchsim_token, vouchsim_device):
    assert set(vouchsim_token.scope.split()) == {"identity", "delegation"}
    answer = httpx.post(vouchsim_server.mcp_url, headers={**vouchsim_token.authorization, **MCP}, json=INITIALIZE)
    assert answer.status_code == 200, answer.text


def test_testbed_journal_fault_clock(vouchsim_testbed, vouchsim_client):
    kinds = [e.kind for e in vouchsim_testbed.journal(client_id=vouchsim_client.client_id)]
    assert kinds == ["register"]
    with vouchsim_testbed.fault({"status": 503, "retry_after": 7}, kind="token") as fault:
        assert [f.id for f in vouchsim_testbed.faults()] == [fault.id]
        with pytest.raises(OAuthError) as refused:
            vouchsim_client.refresh("vsrt_unknown")
        assert refused.value.status == 503
    assert vouchsim_testbed.faults() == []  # removed on leaving
    [entry] = vouchsim_testbed.journal(client_id=vouchsim_client.client_id, kind="token")
    assert entry.fault == fault.id and entry.summary["refresh_token"] == "***"
    assert vouchsim_testbed.advance(120).offset_seconds == 120
    vouchsim_testbed.add_fault({"drop": True}, kind="mcp", times=None)  # left armed: removed after the test


def test_the_previous_test_left_nothing_armed(vouchsim_testbed):
    assert vouchsim_testbed.faults() == []
    assert vouchsim_testbed.clock().offset_seconds == 0
"""

RESET_TESTS = """
import httpx
import pytest

SEEN = {}


def test_first(vouchsim_client):
    SEEN["url"] = vouchsim_client.authorization_url()


@pytest.mark.vouchsim_reset
def test_marked(vouchsim_server):
    print("MARKED", httpx.get(SEEN["url"]).status_code)


def test_second(vouchsim_client):
    SEEN["url"] = vouchsim_client.authorization_url()


def test_unmarked(vouchsim_server):
    print("UNMARKED", httpx.get(SEEN["url"]).status_code)
"""

FAILING_TEST = """
from pathlib import Path


def test_fails_after_the_flow(vouchsim_token, vouchsim_client):
    Path("secrets.txt").write_text(vouchsim_token.access_token + "\\n" + vouchsim_token.refresh_token)
    assert vouchsim_token.access_token == "something else"


def test_fails_with_no_client_of_its_own(vouchsim_testbed, vouchsim_device):
    assert vouchsim_device.pending() == ["something"]
"""


def test_the_fixtures_against_a_real_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_fixtures=FIXTURE_TESTS)
    pytester.makeini(INI)
    result = pytester.runpytest_subprocess("-q", "-p", "no:randomly", timeout=120)
    result.assert_outcomes(passed=4)


def test_the_marker_and_the_option_reset_the_server(pytester: pytest.Pytester) -> None:
    """The first client's authorization request answers 303 (to the pairing page) while the client exists, 400
    once a reset has wiped it."""
    pytester.makepyfile(test_reset=RESET_TESTS)
    pytester.makeini(INI)
    plain = pytester.runpytest_subprocess("-q", "-s", timeout=120)
    plain.assert_outcomes(passed=4)
    plain.stdout.fnmatch_lines(["*MARKED 400*", "*UNMARKED 303*"])
    everywhere = pytester.runpytest_subprocess("-q", "-s", "--vouchsim-reset", timeout=120)
    everywhere.assert_outcomes(passed=4)
    everywhere.stdout.fnmatch_lines(["*MARKED 400*", "*UNMARKED 400*"])


def test_a_failure_reports_the_clients_journal_without_secrets(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_failing=FAILING_TEST)
    pytester.makeini(INI)
    result = pytester.runpytest_subprocess("-q", timeout=120)
    result.assert_outcomes(failed=2)
    output = result.stdout.str()
    section, without_client = output.split("vouchsim journal")[1:3]
    assert "every request during the test" in without_client, without_client
    assert re.search(r" device +POST /device/enrol +201", without_client), without_client
    assert "/oauth/" not in without_client  # only what happened during that test
    assert "client vsc_" in section, output
    for kind in ("register", "authorize", "pairing", "token"):
        assert f" {kind} " in section, (kind, section)
    assert "grant_type=authorization_code" in section, section
    for secret in (pytester.path / "secrets.txt").read_text().split():
        assert secret not in section
    first_only = FAILING_TEST.rsplit("\n\n\ndef", 1)[0]
    passing = pytester.makepyfile(test_failing=first_only.replace('== "something else"', '!= ""'))
    result = pytester.runpytest_subprocess("-q", str(passing), timeout=120)
    result.assert_outcomes(passed=1)
    assert "vouchsim journal" not in result.stdout.str()


# --- against one live server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def live() -> Iterator[VouchsimServer]:
    with VouchsimServer() as server:
        yield server


def _authorize_url(base: str, *, scope: str = "identity", verifier: str = "") -> tuple[str, str]:
    client = httpx.post(
        f"{base}/oauth/register",
        json={
            "client_name": "plugin test",
            "redirect_uris": ["http://127.0.0.1:9/callback"],
            "token_endpoint_auth_method": "none",
            "grant_types": ["authorization_code"],
            "response_types": ["code"],
        },
        timeout=30,
    ).json()
    query = (
        f"response_type=code&client_id={client['client_id']}&redirect_uri=http%3A%2F%2F127.0.0.1%3A9%2Fcallback"
        f"&scope={quote(scope)}&state=s1&code_challenge={_challenge(verifier or 'v' * 50)}&code_challenge_method=S256"
    )
    return f"{base}/oauth/authorize?{query}", client["client_id"]


def _challenge(verifier: str) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()


def test_authorize_url_command_enrols_completes_the_page_and_prints_the_redirect(
    live: VouchsimServer, tmp_path: Path
) -> None:
    url, _ = _authorize_url(live.base_url)
    out, err = io.StringIO(), io.StringIO()
    code = main(["authorize-url", url, "--state", str(tmp_path / "device")], environ={}, stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    redirect = out.getvalue().splitlines()[-1]
    assert redirect.startswith("http://127.0.0.1:9/callback?")
    params = parse_qs(urlsplit(redirect).query)
    assert params["state"] == ["s1"] and params["code"]


def test_authorize_url_command_fails_with_one_line(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "vouchsim.companion", "authorize-url", "not a url", "--state", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "authorization URL" in done.stderr


def test_the_device_decides_by_hand_and_automatically(live: VouchsimServer, tmp_path: Path) -> None:
    with TrustedDevice.enrol(tmp_path / "device", live.base_url) as device:
        assert device.pending() == []
        device.auto("approve-all")
        device.stop()
        assert device.decided == []
        # A second visit in the same browser: the consent page ("Authorize with this session").
        first, _ = _authorize_url(live.base_url)
        assert "code=" in device.authorize(first)
        second, _ = _authorize_url(live.base_url)
        assert "code=" in device.authorize(second)


def _token(base: str, device: TrustedDevice) -> str:
    verifier = "v" * 50
    url, client_id = _authorize_url(base, scope="identity delegation", verifier=verifier)
    code = parse_qs(urlsplit(device.authorize(url)).query)["code"][0]
    answer = httpx.post(
        f"{base}/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": "http://127.0.0.1:9/callback",
            "code_verifier": verifier,
            "client_id": client_id,
        },
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    token: str = answer.json()["access_token"]
    return token


def _rpc(http: httpx.Client, url: str, method: str, params: dict[str, object], ident: int | None = 1) -> httpx.Response:
    body: dict[str, object] = {"jsonrpc": "2.0", "method": method, "params": params}
    if ident is not None:
        body["id"] = ident
    return http.post(url, json=body)


def _request_delegation(base: str, token: str) -> str:
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": "2025-06-18",
    }
    with httpx.Client(headers=headers, timeout=30) as http:
        init = _rpc(
            http,
            f"{base}/mcp",
            "initialize",
            {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}},
        )
        assert init.status_code == 200, init.text
        if session := init.headers.get("mcp-session-id"):
            http.headers["Mcp-Session-Id"] = session
        _rpc(http, f"{base}/mcp", "notifications/initialized", {}, ident=None)
        arguments = {
            "audienceId": "aud_test_payments",
            "purpose": "Identify the user before preparing a payment approval.",
            "scopes": ["payments.identity"],
            "waitForApproval": False,
        }
        answer = _rpc(http, f"{base}/mcp", "tools/call", {"name": "delegation_request", "arguments": arguments}, 2)
        assert answer.status_code == 200, answer.text
        text = answer.text
        data = json.loads(text.split("data:", 1)[1] if text.startswith(("event:", "data:")) else text)
        delegation_id: str = data["result"]["structuredContent"]["delegationId"]
        return delegation_id


def test_the_device_approves_and_denies_by_hand_and_by_auto(live: VouchsimServer, tmp_path: Path) -> None:
    with TrustedDevice.enrol(tmp_path / "device", live.base_url) as device:
        token = _token(live.base_url, device)
        first = _request_delegation(live.base_url, token)
        assert [d.delegation_id for d in device.pending()] == [first]
        assert device.deny(first).status == "denied"
        log_before = len(live.log_lines())
        device.auto("approve-all")
        second = _request_delegation(live.base_url, token)
        deadline = time.monotonic() + 10
        while not device.decided and time.monotonic() < deadline:
            time.sleep(0.05)
        device.stop()
        assert device.decided == [(second, "approve")]
        # auto() follows the server's delegation stream (companion.core.follower), as `watch` does: no polling.
        requests = [line for line in live.log_lines()[log_before:] if '"GET /device/' in line]
        assert any("/device/delegations/stream" in line for line in requests), requests
        assert not any("/device/delegations?" in line for line in requests), requests
        assert device.pending() == []


def test_enrol_with_the_mcp_endpoint_names_the_base_url(live: VouchsimServer, tmp_path: Path) -> None:
    """`--server …/mcp` (the URL MCP clients are given) gets a sentence naming the base URL, not "Not Found"."""
    out, err = io.StringIO(), io.StringIO()
    code = main(["enrol", "--server", live.mcp_url, "--state", str(tmp_path)], environ={}, stdout=out, stderr=err)
    assert code == 1
    assert err.getvalue() == (
        f"vouchsim companion: {live.mcp_url} is the server's MCP endpoint (the URL MCP clients are given); the "
        f"companion talks to the server's base URL, {live.base_url}. Use --server {live.base_url}.\n"
    )


def _enrolled_state(live: VouchsimServer, tmp_path: Path) -> str:
    state = str(tmp_path / "device")
    err = io.StringIO()
    assert (
        main(["enrol", "--server", live.base_url, "--state", state], environ={}, stdout=io.StringIO(), stderr=err) == 0
    )
    return state


def test_scan_of_an_authorization_url_reads_the_pages_qr_and_types_the_code_itself(
    live: VouchsimServer, tmp_path: Path
) -> None:
    """The page's QR can only be fetched with the page's cookie, so `scan URL` is that browser: it claims, asks (or
    --approve), types the code on its own page and prints where the page sends the browser back to."""
    state = _enrolled_state(live, tmp_path)
    url, _ = _authorize_url(live.base_url)
    out, err = io.StringIO(), io.StringIO()
    code = main(["scan", url, "--approve", "--state", state], environ={}, stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("Pairing request pair_")
    assert "  client:   plugin test (" in lines[1]
    assert lines[-2] == (
        "Approved; the code was typed on the page. It sends the browser back to the client (open this URL to "
        "deliver it):"
    )
    params = parse_qs(urlsplit(lines[-1]).query)
    assert lines[-1].startswith("http://127.0.0.1:9/callback?") and params["code"] and params["state"] == ["s1"]


def test_scan_json_of_an_authorization_url_declined_on_a_terminal(live: VouchsimServer, tmp_path: Path) -> None:
    state = _enrolled_state(live, tmp_path)
    url, _ = _authorize_url(live.base_url)
    out, err = io.StringIO(), io.StringIO()
    code = main(["scan", url, "--json", "--state", state], environ={}, stdin=TtyInput("n\n"), stdout=out, stderr=err)
    assert code == 0, err.getvalue()
    document = json.loads(out.getvalue())
    assert document["outcome"] == "declined" and document["pairing_code"] is None
    assert document["pairing"]["client_name"] == "plugin test"
    assert parse_qs(urlsplit(document["redirect"]).query)["error"] == ["access_denied"]


def test_authorize_url_errors_are_one_sentence_each_with_a_hint_only_where_it_helps(
    live: VouchsimServer, tmp_path: Path
) -> None:
    state = _enrolled_state(live, tmp_path)
    for url, expected in (
        (  # a mistyped path: the hint says what URL to pass
            f"{live.base_url}/oauth/authorise?client_id=x",
            f"vouchsim companion: GET {live.base_url}/oauth/authorise answered 404. Pass the URL the OAuth client "
            "opens: the server's /oauth/authorize?… with its query.\n",
        ),
        (  # the page's own sentence, ended once, and no hint that would not help
            f"{live.base_url}/oauth/authorize?response_type=code&client_id=vsc_unknown",
            f"vouchsim companion: GET {live.base_url}/oauth/authorize answered 400: ",
        ),
        ("not a url", "vouchsim companion: Expected an http(s) authorization URL, got 'not a url'. Pass the URL"),
    ):
        err = io.StringIO()
        assert main(["authorize-url", url, "--state", state], environ={}, stdout=io.StringIO(), stderr=err) == 1
        line = err.getvalue()
        assert line.startswith(expected), line
        assert ".." not in line and line.count("\n") == 1
