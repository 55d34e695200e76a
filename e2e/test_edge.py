"""The server's edge over real HTTP (issue 9, findings 6 and 7): a burst of registrations from one address meets
the default rate limit while a whole normal flow does not, and a server on loopback with no issuer answers a
DNS-rebinding `Host` with 421 instead of naming the attacker's host in its metadata.

The server runs with its default settings, as `vouchsim serve` starts it; the person's side is the headless
browser and the companion's CLI.
"""

from __future__ import annotations

from typing import Any

import anyio
import httpx
import pytest

from e2e.harness import (
    Browser,
    Companion,
    LiveServer,
    Pkce,
    ServerFactory,
    authorization_url,
    exchange_code,
    mcp_initialize,
    query_of,
    register_client,
)

pytestmark = [pytest.mark.e2e, pytest.mark.anyio]

BURST = 300
AT_ONCE = 30  # registrations in flight together


@pytest.mark.requirement("EDGE-RATE-LIMIT")
async def test_a_normal_flow_passes_and_a_burst_of_registrations_meets_429(
    live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, companion: Companion
) -> None:
    base = live_server.base_url
    statuses: list[int] = []
    http.event_hooks["response"].append(_keep_status(statuses))
    client = await register_client(http, base)
    pkce = Pkce.new()
    location = await browser.authorize(authorization_url(base, client, pkce), companion)
    tokens = await exchange_code(http, base, client, query_of(location)["code"], pkce.verifier)
    assert tokens.status_code == 200, tokens.text
    for _ in range(20):
        answer = await mcp_initialize(http, live_server.mcp_url, tokens.json()["access_token"])
        assert answer.status_code == 200, answer.text
    assert 429 not in statuses

    answers: list[httpx.Response] = []
    body = {
        "client_name": "burst",
        "redirect_uris": ["http://127.0.0.1:9/callback"],
        "token_endpoint_auth_method": "none",
    }

    async def one() -> None:
        answers.append(await http.post(f"{base}/oauth/register", json=body))

    limiter = anyio.CapacityLimiter(AT_ONCE)

    async def limited() -> None:
        async with limiter:
            await one()

    async with anyio.create_task_group() as group:
        for _ in range(BURST):
            group.start_soon(limited)
    refused = [answer for answer in answers if answer.status_code == 429]
    assert {answer.status_code for answer in answers} == {201, 429}
    assert len(refused) >= BURST // 10, len(refused)
    for answer in refused:
        assert int(answer.headers["retry-after"]) >= 1
        error: dict[str, Any] = answer.json()
        assert error["error"] == "too_many_requests" and error["error_description"]
    # Only registrations are spent: the person's other flows go on.
    assert (await http.get(f"{base}/.well-known/oauth-authorization-server")).status_code == 200
    assert (await mcp_initialize(http, live_server.mcp_url, tokens.json()["access_token"])).status_code == 200


@pytest.mark.requirement("EDGE-HOST-GUARD")
async def test_a_rebinding_host_gets_421_and_the_setting_widens_it(
    live_server: LiveServer, servers: ServerFactory, http: httpx.AsyncClient
) -> None:
    port = live_server.port
    metadata = f"{live_server.base_url}/.well-known/oauth-protected-resource/mcp"
    evil = {"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}
    refused = await http.get(metadata, headers=evil)
    assert refused.status_code == 421, refused.text
    assert "resource" not in refused.json()
    assert "VOUCHSIM_ALLOWED_HOSTS" in refused.json()["error_description"]
    mcp = await http.post(live_server.mcp_url, json={"jsonrpc": "2.0", "id": 1, "method": "ping"}, headers=evil)
    assert mcp.status_code == 421 and mcp.json()["error"]["code"] == -32600
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"app.localhost:{port}"):
        served = await http.get(metadata, headers={"Host": host})
        assert served.status_code == 200 and served.json()["resource"] == f"http://{host}/mcp"

    widened = await anyio.to_thread.run_sync(lambda: servers.start({"VOUCHSIM_ALLOWED_HOSTS": "vouch.test"}))
    answer = await http.get(
        f"{widened.base_url}/.well-known/oauth-protected-resource/mcp", headers={"Host": f"vouch.test:{widened.port}"}
    )
    assert answer.status_code == 200 and answer.json()["resource"] == f"http://vouch.test:{widened.port}/mcp"
    other = await http.get(f"{widened.base_url}/healthz", headers={"Host": "evil.example"})
    assert other.status_code == 421


def _keep_status(statuses: list[int]) -> Any:
    async def keep(response: httpx.Response) -> None:
        statuses.append(response.status_code)

    return keep
