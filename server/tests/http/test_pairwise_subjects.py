"""Finding 2 of issue 9: no internal user id leaves the server. What an OAuth client learns of the user, at
introspection as through `identity_get`, is the pairwise subject for that client (docs/mcp.md, docs/security.md
"Pairwise subjects")."""

from __future__ import annotations

from typing import Any

from server.tests.http.test_mcp_routes import Agent
from server.tests.support import Flow, authorize_params, csrf_of, exchange, pkce, redirect_query, register


def tokens_for(flow: Flow, info: dict[str, Any]) -> dict[str, Any]:
    """A confidential client's tokens (`client_secret_post`): pairing the first time, session consent after."""
    verifier, challenge = pkce()
    start = flow.start(authorize_params(info, challenge))
    assert start.status_code == 303, start.text
    location = start.headers["location"]
    if location.endswith("/consent"):
        page = flow.client.get(location)
        done = flow.client.post(location, data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    else:
        done = flow.submit(location, flow.scan_and_approve(location))
    code = redirect_query(done.headers["location"])["code"]
    response = exchange(flow.client, info, code, verifier, client_secret=info["client_secret"])
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def introspect(flow: Flow, info: dict[str, Any], token: str) -> dict[str, Any]:
    credentials = {"client_id": info["client_id"], "client_secret": info["client_secret"]}
    response = flow.client.post("/oauth/introspect", data={"token": token, **credentials})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_two_clients_of_one_person_get_their_own_subject_at_introspection(flow: Flow) -> None:
    user_id = flow.device.call(flow.client, "GET", "/device/me").json()["user_id"]
    seen: dict[str, str] = {}
    for name in ("First Agent", "Second Agent"):
        info = register(flow.client, client_name=name, token_endpoint_auth_method="client_secret_post")
        tokens = tokens_for(flow, info)
        agent = Agent(flow.client, tokens["access_token"])
        assert agent.initialize().status_code == 200
        subject = agent.result("identity_get")["structuredContent"]["subject"]
        for token in (tokens["access_token"], tokens["refresh_token"]):
            answer = introspect(flow, info, token)
            assert answer["active"] is True and answer["client_id"] == info["client_id"]
            assert answer["sub"] == subject  # what identity_get tells this client, nothing else
            assert user_id not in str(answer)
        seen[name] = subject
    assert seen["First Agent"] != seen["Second Agent"]  # the two clients cannot link the person
    assert user_id not in seen.values()
