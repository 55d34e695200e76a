"""`run_authlib` and `bridge`: Authlib's synchronous code in a greenlet, waiting for the async store on the loop."""

from __future__ import annotations

import asyncio
import contextvars
import threading

import pytest

from vouchsim.server.oauth.bridge import bridge, run_authlib

pytestmark = pytest.mark.anyio

REQUEST = contextvars.ContextVar[str]("REQUEST")


class StoreError(Exception):
    pass


async def test_authlibs_code_waits_for_the_store_on_the_loops_own_thread() -> None:
    loop_thread = threading.get_ident()
    seen: list[tuple[str, int]] = []

    async def lookup(key: str) -> str:
        await asyncio.sleep(0)  # a real suspension: the loop runs other work meanwhile
        seen.append(("store", threading.get_ident()))
        return key.upper()

    def work() -> list[str]:
        seen.append(("authlib", threading.get_ident()))
        return [bridge(lookup, "client"), bridge(lookup, "code")]

    assert await run_authlib(work) == ["CLIENT", "CODE"]
    assert seen == [("authlib", loop_thread), ("store", loop_thread), ("store", loop_thread)]


async def test_a_store_error_is_raised_where_authlib_called_the_store() -> None:
    async def failing() -> None:
        raise StoreError("no such code")

    def work() -> str:
        try:
            bridge(failing)
        except StoreError as error:
            return f"caught: {error}"
        return "not raised"

    assert await run_authlib(work) == "caught: no such code"

    def uncaught() -> None:
        bridge(failing)

    with pytest.raises(StoreError):
        await run_authlib(uncaught)


async def test_two_requests_interleave_on_one_loop_and_keep_their_own_context() -> None:
    both_waiting = asyncio.Event()
    arrived = 0

    async def rendezvous() -> str:
        nonlocal arrived
        arrived += 1
        if arrived == 2:
            both_waiting.set()
        await both_waiting.wait()  # each request's greenlet is suspended here while the other runs
        return REQUEST.get()

    async def request(name: str) -> str:
        REQUEST.set(name)
        return await run_authlib(lambda: f"{REQUEST.get()} saw {bridge(rendezvous)}")

    assert await asyncio.gather(request("first"), request("second")) == ["first saw first", "second saw second"]


def test_bridge_outside_run_authlib_is_a_programming_error() -> None:
    async def store() -> None:
        pass

    coroutine = store()
    with pytest.raises(RuntimeError, match="inside run_authlib"):
        bridge(lambda: coroutine)
    coroutine.close()
