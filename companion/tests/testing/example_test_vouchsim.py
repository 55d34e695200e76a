"""The README's example (section "Vouchsim in your CI"), run by test_pytest_plugin.py through pytester."""

import httpx
import pytest

from vouchsim.companion.testing import OAuthError

MCP = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "my-sdk", "version": "0"}},
}


def test_my_client_gets_through_the_real_flow(vouchsim_server, vouchsim_client, vouchsim_authorize):
    # The authorization URL (PKCE S256, state, resource), the person pairing with the trusted device, the code back.
    request = vouchsim_client.authorization_request(scope="identity")
    tokens = vouchsim_client.exchange(vouchsim_authorize(request.url), request)
    answer = httpx.post(vouchsim_server.mcp_url, headers={**tokens.authorization, **MCP}, json=INITIALIZE)
    assert answer.status_code == 200, answer.text


@pytest.mark.vouchsim_reset  # a clean server: no client, device or token of another test
def test_expiry_and_a_refused_refresh(vouchsim_server, vouchsim_client, vouchsim_token, vouchsim_testbed):
    vouchsim_testbed.advance(3601)  # the access token's hour is over, without waiting for it
    answer = httpx.post(vouchsim_server.mcp_url, headers={**vouchsim_token.authorization, **MCP}, json=INITIALIZE)
    assert answer.status_code == 401 and 'error="invalid_token"' in answer.headers["WWW-Authenticate"]

    refused = {"status": 400, "error": "invalid_grant"}
    with (
        vouchsim_testbed.fault(refused, kind="token", grant_type="refresh_token") as fault,
        pytest.raises(OAuthError) as error,
    ):
        vouchsim_client.refresh(vouchsim_token)
    assert error.value.error == "invalid_grant"
    fresh = vouchsim_client.refresh(vouchsim_token)  # the fault is gone, and the server never saw the first try
    answer = httpx.post(vouchsim_server.mcp_url, headers={**fresh.authorization, **MCP}, json=INITIALIZE)
    assert answer.status_code == 200, answer.text

    # What the client sent, as the server saw it (no secret in it): the code exchange, then the two refreshes.
    tokens = vouchsim_testbed.journal(client_id=vouchsim_client.client_id, kind="token")
    assert [(e.summary["grant_type"], e.status, e.fault) for e in tokens] == [
        ("authorization_code", 200, None),
        ("refresh_token", 400, fault.id),
        ("refresh_token", 200, None),
    ]
