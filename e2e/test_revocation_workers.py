"""Revocation across instances, proven (docs/security.md "Revocation across instances"): with `--workers 2` on
PostgreSQL, a token revoked, a connection unpaired or a device revoked through one worker is refused by the other
within 100 ms.

Each worker keeps what `/mcp` validated in an in-process cache (a bearer token is trusted for up to 30 s without a
database read). So each test first warms that cache on *both* workers, then revokes through one and polls the
other: were the other worker's cache deaf to the LISTEN/NOTIFY announcement, it would go on accepting the token for
the rest of the cache's lifetime, far past the deadline. Requests are pinned to a worker by keeping one HTTP/1.1
connection per client (the testbed names the worker that answered in `Vouchsim-Testbed-Instance`). The measured
delays are printed (`pytest -s`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AsyncExitStack, aclosing, asynccontextmanager

import anyio
import httpx
import pytest

from e2e.harness import Browser, Companion, LiveServer, ServerFactory
from e2e.test_oauth_negative_flows import authorize, tokens_for
from e2e.test_workers import worker_processes
from vouchsim.companion.core.client import DeviceApiClient
from vouchsim.companion.core.errors import DeviceRevokedError
from vouchsim.companion.core.keystore import Keystore

pytestmark = [pytest.mark.e2e, pytest.mark.anyio, pytest.mark.postgres]  # on PostgreSQL too (e2e/conftest.py)

WORKERS = 2
TESTBED_TOKEN = "e2e-testbed-token-of-the-revocations"
INSTANCE = "vouchsim-testbed-instance"
WITHIN = 0.100  # seconds: the promise
LOOK_FOR = 2.0  # seconds: how long the other worker is watched, so a miss is measured rather than just failed
PIN_ATTEMPTS = 200


@pytest.fixture(scope="module")
def live_server(servers: ServerFactory) -> LiveServer:
    if servers.databases.backend != "postgres":
        pytest.skip("more than one worker needs PostgreSQL")
    testbed = {"VOUCHSIM_TESTBED": "1", "VOUCHSIM_TESTBED_TOKEN": TESTBED_TOKEN}  # names the worker that answered
    return servers.start({"VOUCHSIM_WORKERS": str(WORKERS), **testbed})


@asynccontextmanager
async def pinned(server: LiveServer, per_worker: int = 1) -> AsyncIterator[list[list[httpx.AsyncClient]]]:
    """`per_worker` clients on each worker, each holding one kept-alive connection (so every request it sends goes
    to the worker that answered its first one): `[[clients of one worker], [clients of the other]]`."""
    async with AsyncExitStack() as stack:
        found: dict[str, list[httpx.AsyncClient]] = {}
        for _ in range(PIN_ATTEMPTS):
            http = httpx.AsyncClient(
                base_url=server.base_url,
                limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                timeout=10,
            )
            worker = await instance_of(http)
            if len(found.setdefault(worker, [])) >= per_worker:
                await http.aclose()
                continue
            stack.push_async_callback(http.aclose)
            found[worker].append(http)
            if len(found) == WORKERS and all(len(clients) == per_worker for clients in found.values()):
                yield list(found.values())
                return
        pytest.fail(f"{PIN_ATTEMPTS} new connections did not reach {per_worker} per worker: {sorted(found)}")


async def instance_of(http: httpx.AsyncClient) -> str:
    response = await http.get("/testbed/clock", headers={"Authorization": f"Bearer {TESTBED_TOKEN}"})
    assert response.status_code == 200, response.text
    return response.headers[INSTANCE]


async def mcp_status(http: httpx.AsyncClient, access_token: str) -> int:
    """GET /mcp: 405 (no server stream is offered) once the token passes, 401 when it is refused. Served from the
    worker's cache while the token is cached there: no database read."""
    return (await http.get("/mcp", headers={"Authorization": f"Bearer {access_token}"})).status_code


async def refused_after(refused: Callable[[], Awaitable[bool]], what: str, since: float | None = None) -> float:
    """Seconds from `since` (the revocation's answer; default now) until `refused()` first says so, polled back to
    back; printed, and held to WITHIN."""
    start = anyio.current_time() if since is None else since
    while not await refused():
        if anyio.current_time() - start > LOOK_FOR:
            pytest.fail(f"{what}: the other worker still accepted it after {LOOK_FOR:g} s")
    delay = anyio.current_time() - start
    print(f"\n{what}: refused by the other worker after {delay * 1000:.1f} ms")
    assert delay < WITHIN, f"{what}: refused by the other worker only after {delay * 1000:.1f} ms"
    return delay


async def warm(workers: list[list[httpx.AsyncClient]], access_token: str) -> None:
    for clients in workers:
        for _ in range(2):  # the first reads the database and fills the cache; the second is served from it
            assert await mcp_status(clients[0], access_token) == 405


@pytest.mark.requirement("REVOCATION-ACROSS-WORKERS", "OAUTH-TOKEN-REVOCATION", "SERVE-WORKERS")
async def test_a_token_revoked_through_one_worker_is_refused_by_the_other(
    live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, companion: Companion
) -> None:
    assert len(worker_processes(live_server)) == WORKERS
    done = await authorize(http, live_server.base_url, browser, companion)
    access = (await tokens_for(http, live_server.base_url, done))["access_token"]
    async with pinned(live_server) as ([here], [there]):
        await warm([[here], [there]], access)
        revoked = await here.post("/oauth/revoke", data={"token": access, "client_id": done.client["client_id"]})
        assert revoked.status_code == 200, revoked.text
        assert await mcp_status(here, access) == 401  # the worker that revoked it, at once

        async def other_refuses() -> bool:
            return await mcp_status(there, access) == 401

        await refused_after(other_refuses, "a revoked access token")
        assert await instance_of(here) != await instance_of(there)  # still pinned: two workers were measured


@pytest.mark.requirement("REVOCATION-ACROSS-WORKERS", "PAIRING-UNPAIR-REVOKES", "SERVE-WORKERS")
async def test_a_connection_unpaired_through_one_worker_is_refused_by_the_other(
    live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, companion: Companion
) -> None:
    done = await authorize(http, live_server.base_url, browser, companion)
    access = (await tokens_for(http, live_server.base_url, done))["access_token"]
    async with pinned(live_server) as ([here], [there]):
        device = DeviceApiClient(here, Keystore(companion.state_dir))
        [connection] = await device.connections()
        await warm([[here], [there]], access)
        await device.revoke_connection(connection.connection_id)

        async def other_refuses() -> bool:
            return await mcp_status(there, access) == 401

        await refused_after(other_refuses, "a token of an unpaired connection")
        assert await instance_of(here) != await instance_of(there)


@pytest.mark.requirement("REVOCATION-ACROSS-WORKERS", "DEVICE-LOST-PHONE", "SERVE-WORKERS")
async def test_a_device_revoked_through_one_worker_is_refused_by_the_other(
    live_server: LiveServer, http: httpx.AsyncClient, browser: Browser, companion: Companion
) -> None:
    done = await authorize(http, live_server.base_url, browser, companion)
    access = (await tokens_for(http, live_server.base_url, done))["access_token"]
    async with pinned(live_server, per_worker=2) as ([here, _], [there, watching]):
        keys = Keystore(companion.state_dir)
        on_other = DeviceApiClient(there, keys)
        assert (await on_other.me()).device_id == keys.load_identity().device_id
        await warm([[here], [there]], access)

        # The device's event stream, open on the other worker.
        opened, ended = anyio.Event(), anyio.Event()
        ending: list[BaseException] = []

        async def follow() -> None:
            try:
                async with aclosing(DeviceApiClient(watching, keys).stream_delegations(on_open=opened.set)) as feed:
                    async for _ in feed:
                        pass
            except DeviceRevokedError as error:
                ending.append(error)
            ended.set()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(follow)
            with anyio.fail_after(10):
                await opened.wait()
            # Forgotten through this worker, cutting the connections it paired (their tokens with them).
            forgotten = await DeviceApiClient(here, keys).forget(cut_connections=True)
            revoked_at = anyio.current_time()
            assert len(forgotten.connections_cut) == 1

            async def token_refused() -> bool:
                return await mcp_status(there, access) == 401

            async def stream_ended() -> bool:
                await anyio.sleep(0.001)
                return ended.is_set()

            await refused_after(stream_ended, "the revoked device's event stream", revoked_at)
            await refused_after(token_refused, "a token of a connection the revoked device paired", revoked_at)
        assert ending and isinstance(ending[0], DeviceRevokedError)  # ended by the server's device_revoked event
        with pytest.raises(DeviceRevokedError):
            await on_other.me()  # its key: refused by the other worker too
