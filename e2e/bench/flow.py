"""The whole-flow figure of `python -m e2e.bench`, in one process (no sockets): the app under Litestar's async test
client, the companion's own core as the trusted device and as the headless person at the authorization page.

One flow: dynamic client registration → authorization request → pairing page → its QR rendered by the server and
decoded by the companion → device claim and approve → code typed in → code exchanged for a token → MCP `initialize`
→ `tools/call identity_get`. Each flow has a new client and a new browser (cookie jar), so every one pairs. The QR's
render (server) and decode (companion) are timed on their own as well.
"""

from __future__ import annotations

import logging
import statistics
import time
from pathlib import Path
from typing import Any

from litestar.testing import AsyncTestClient

from e2e.harness import Pkce, authorization_url, query_of
from vouchsim.companion.core.authorization import AuthorizationPage
from vouchsim.companion.core.client import DeviceApiClient
from vouchsim.companion.core.keystore import Keystore
from vouchsim.companion.core.qr import decode_qr_bytes
from vouchsim.server.app import create_app
from vouchsim.server.pairing.qr import pairing_uri, render_png
from vouchsim.server.settings import Settings

BASE_URL = "http://localhost"  # Authlib accepts plain http on localhost only
LEGACY = "2025-11-25"


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round((len(ordered) - 1) * p / 100))]


def qr_times(count: int) -> dict[str, float]:
    """The pairing QR rendered as the server does and decoded as the companion does: p50 of each, in ms."""
    text = pairing_uri("https://vouchsim.example.org", "x" * 43)
    renders, decodes = [], []
    for _ in range(count):
        started = time.perf_counter()
        png = render_png(text)
        rendered = time.perf_counter()
        if decode_qr_bytes(png) != text:
            raise RuntimeError("the QR did not decode to what was rendered")
        renders.append(rendered - started)
        decodes.append(time.perf_counter() - rendered)
    return {
        "qr_render_p50_ms": 1000 * statistics.median(renders),
        "qr_decode_p50_ms": 1000 * statistics.median(decodes),
    }


async def _one_flow(http: AsyncTestClient[Any], device: DeviceApiClient) -> None:
    http.cookies.clear()  # a new person's browser: the flow pairs again
    registration = {
        "client_name": "bench agent",
        "redirect_uris": ["http://127.0.0.1:9/callback"],
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "scope": "identity delegation",
    }
    response = await http.post("/oauth/register", json=registration)
    if response.status_code != 201:
        raise RuntimeError(f"registration answered {response.status_code}: {response.text}")
    client = response.json()
    pkce = Pkce.new()
    page = AuthorizationPage(device, http=http)
    location = await page.complete(authorization_url(BASE_URL, client, pkce))
    code = query_of(location)["code"]
    token_response = await http.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": client["redirect_uris"][0],
            "code_verifier": pkce.verifier,
            "client_id": client["client_id"],
            "resource": f"{BASE_URL}/mcp",
        },
    )
    if token_response.status_code != 200:
        raise RuntimeError(f"the token endpoint answered {token_response.status_code}: {token_response.text}")
    headers = {
        "Authorization": f"Bearer {token_response.json()['access_token']}",
        "Accept": "application/json, text/event-stream",
    }
    initialize = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": LEGACY, "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}},
    }
    response = await http.post("/mcp", json=initialize, headers=headers)
    headers = {**headers, "Mcp-Session-Id": response.headers["mcp-session-id"], "MCP-Protocol-Version": LEGACY}
    call = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "identity_get", "arguments": {}}}
    response = await http.post("/mcp", json=call, headers=headers)
    if "subject" not in response.json()["result"]["structuredContent"]:
        raise RuntimeError(f"identity_get answered {response.text[:300]}")


async def measure(database_url: str, work_dir: Path, count: int) -> dict[str, float]:
    """`count` whole flows (after one to warm up) against an app in this process; p50 and p90 in ms."""
    logging.getLogger("httpx").setLevel(logging.WARNING)  # no line per in-process request
    app = create_app(Settings(database_url=database_url, log_level="warning"))
    async with AsyncTestClient(app, base_url=BASE_URL) as http:
        http.follow_redirects = False
        device = DeviceApiClient(http, Keystore(work_dir / "flow-device"))
        await device.enrol("benchmark phone")
        await _one_flow(http, device)
        times = []
        for _ in range(count):
            started = time.perf_counter()
            await _one_flow(http, device)
            times.append(time.perf_counter() - started)
    return {"count": count, "p50_ms": 1000 * statistics.median(times), "p90_ms": 1000 * _percentile(times, 90)}
