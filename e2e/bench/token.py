"""The token endpoint figures of `python -m e2e.bench`: authorization code exchanges and refresh-token rotations
per second on a live server, as a ratio to the hello-world of the same run.

Codes come from the real flow: the first authorization pairs (the companion's core claims and approves the QR's
pairing, in this process), the following ones are consented to in the same browser session, one code each. The
exchanges are each sent once; the refreshes rotate: every connection sends the refresh token of its previous answer.
Authlib runs on the event loop's thread, in a greenlet (`server/oauth/bridge.py`); the server's CPU on any other
thread meanwhile (work that left the loop, with its thread hops, as Authlib's grants in a worker thread once did) is
measured and reported beside the total.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx

from e2e.bench.loader import Job, Result
from e2e.bench.servers import BenchServer, ServerCpu, load
from e2e.harness import HTTP_TIMEOUT, Companion, Pkce, authorization_url, exchange_code, query_of, register_client
from vouchsim.companion.core.authorization import AuthorizationPage

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@dataclass
class TokenFigures:
    exchange: Result
    exchange_server_cpu: ServerCpu
    refresh: Result
    refresh_server_cpu: ServerCpu

    def as_dict(self) -> dict[str, float]:
        exchanges, refreshes = max(self.exchange.requests, 1), max(self.refresh.requests, 1)
        return {
            "exchange_per_s": self.exchange.per_second,
            "exchanges": self.exchange.requests,
            "exchange_server_cpu_ms": 1000 * self.exchange_server_cpu.total / exchanges,
            "exchange_off_loop_cpu_ms": 1000 * self.exchange_server_cpu.off_loop / exchanges,
            "exchange_loader_share": self.exchange.cpu_share,
            "refresh_per_s": self.refresh.per_second,
            "refreshes": self.refresh.requests,
            "refresh_server_cpu_ms": 1000 * self.refresh_server_cpu.total / refreshes,
            "refresh_off_loop_cpu_ms": 1000 * self.refresh_server_cpu.off_loop / refreshes,
            "refresh_loader_share": self.refresh.cpu_share,
        }


async def _codes(server: BenchServer, companion: Companion, client: dict[str, Any], count: int) -> list[str]:
    """`count` authorization codes of `client`, as exchange request bodies (each with its own PKCE verifier)."""
    bodies = []
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT, follow_redirects=False) as browser:
        page = AuthorizationPage(companion.api, http=browser)
        for _ in range(count):
            pkce = Pkce.new()
            location = await page.complete(authorization_url(server.base_url, client, pkce))
            form = {
                "grant_type": "authorization_code",
                "code": query_of(location)["code"],
                "redirect_uri": client["redirect_uris"][0],
                "code_verifier": pkce.verifier,
                "client_id": client["client_id"],
                "resource": f"{server.base_url}/mcp",
            }
            bodies.append(urlencode(form))
    return bodies


async def prepare(server: BenchServer, companion: Companion, codes: int, chains: int) -> tuple[Job, Job]:
    """The exchange job (`codes` fresh codes) and the refresh job (`chains` refresh tokens to rotate)."""
    async with httpx.AsyncClient(timeout=HTTP_TIMEOUT) as http:
        client = await register_client(http, server.base_url, client_name="Vouchsim token benchmark")
        bodies = await _codes(server, companion, client, codes + chains)
        tokens = []
        for body in bodies[codes:]:
            form = dict(pair.split("=", 1) for pair in body.split("&"))
            answer = await exchange_code(
                http, server.base_url, client, form["code"], httpx.QueryParams(body)["code_verifier"]
            )
            if answer.status_code != 200 or "refresh_token" not in answer.json():
                raise RuntimeError(f"no refresh token: {answer.status_code} {answer.text[:300]}")
            tokens.append(answer.json()["refresh_token"])
    refresh_body = urlencode({"grant_type": "refresh_token", "client_id": client["client_id"]})
    exchange = Job("127.0.0.1", server.port, "/oauth/token", FORM, chains, 600.0, kind="once", bodies=bodies[:codes])
    refresh = Job(
        "127.0.0.1",
        server.port,
        "/oauth/token",
        FORM,
        chains,
        0.0,
        kind="chain",
        body=refresh_body + "&refresh_token=__TOKEN__",
        tokens=tokens,
    )
    return exchange, refresh


def measure(server: BenchServer, exchange: Job, refresh: Job, duration: float) -> TokenFigures:
    assert server.process is not None
    refresh.duration = duration
    exchanged, exchange_cpu = load(exchange, server.process.pid)
    refreshed, refresh_cpu = load(refresh, server.process.pid)
    for what, result in (("code exchange", exchanged), ("refresh", refreshed)):
        if result.not_ok or result.errors:
            raise RuntimeError(f"{what}: {result.not_ok} answers not 200 ({result.first_failure}) {result.errors}")
    return TokenFigures(exchanged, exchange_cpu, refreshed, refresh_cpu)
