"""The README's example (section "Vouchsim in your CI"), run by test_pytest_plugin.py through pytester."""

import base64
import hashlib
import secrets
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx


def test_my_client_gets_through_the_real_flow(vouchsim_server, vouchsim_authorize):
    base = vouchsim_server.base_url
    with httpx.Client(timeout=30) as http:
        # 1. Register a public client (RFC 7591).
        redirect_uri = "http://127.0.0.1:8765/callback"
        client = http.post(
            f"{base}/oauth/register",
            json={
                "client_name": "my SDK under test",
                "redirect_uris": [redirect_uri],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code"],
                "response_types": ["code"],
            },
        ).json()

        # 2. Build the authorization URL with PKCE (S256).
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        state = secrets.token_urlsafe(16)
        url = f"{base}/oauth/authorize?" + urlencode(
            {
                "response_type": "code",
                "client_id": client["client_id"],
                "redirect_uri": redirect_uri,
                "scope": "identity",
                "state": state,
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "resource": vouchsim_server.mcp_url,
            }
        )

        # 3. The person: pairing page -> QR -> trusted device -> code -> redirect back to the client.
        redirect = vouchsim_authorize(url)
        params = {k: v[0] for k, v in parse_qs(urlsplit(redirect).query).items()}
        assert redirect.startswith(redirect_uri) and params["state"] == state

        # 4. Exchange the code, then call the MCP server with the token.
        token = http.post(
            f"{base}/oauth/token",
            data={
                "grant_type": "authorization_code",
                "code": params["code"],
                "redirect_uri": redirect_uri,
                "code_verifier": verifier,
                "client_id": client["client_id"],
                "resource": vouchsim_server.mcp_url,
            },
        ).json()["access_token"]
        answer = http.post(
            vouchsim_server.mcp_url,
            headers={
                "Authorization": f"Bearer {token}",
                "Accept": "application/json, text/event-stream",
                "MCP-Protocol-Version": "2025-06-18",
            },
            json={
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {
                    "protocolVersion": "2025-06-18",
                    "capabilities": {},
                    "clientInfo": {"name": "my-sdk", "version": "0"},
                },
            },
        )
        assert answer.status_code == 200, answer.text
