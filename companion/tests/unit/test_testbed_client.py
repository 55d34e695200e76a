"""TestbedClient and `vouchsim testbed …` against a MockTransport: request shapes, typed results, errors, follow.
(Against a live server: e2e/test_testbed.py.)"""

from __future__ import annotations

import io
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from vouchsim.companion.core.errors import ServerUnreachableError, UnexpectedResponseError
from vouchsim.companion.core.testbed import (
    FaultNotFoundError,
    TestbedClient,
    TestbedDisabledError,
    TestbedRequestError,
    TestbedUnauthorizedError,
)
from vouchsim.companion.testbed_cli import main

pytestmark = pytest.mark.anyio

TOKEN = "tb-token"
SERVER = "http://vouch.test"


def entry(entry_id: int, **overrides: Any) -> dict[str, Any]:
    return {
        "id": entry_id,
        "at": "2026-11-25T12:00:00.5Z",
        "kind": "token",
        "method": "POST",
        "path": "/oauth/token",
        "status": 200,
        "duration_ms": 4.2,
        "client_id": "vsc_1",
        "summary": {"grant_type": "refresh_token", "refresh_token": "***"},
        "fault": None,
        **overrides,
    }


FAULT = {
    "id": "flt_1",
    "match": {"kind": "token"},
    "action": {"status": 503, "retry_after": 2},
    "times": 2,
    "remaining": 2,
    "fired": 0,
    "created_at": "2026-11-25T12:00:00Z",
}
CLOCK = {"now": "2026-11-25T13:00:00Z", "offset_seconds": 3600.0}


class FakeTestbed:
    """The /testbed/ endpoints as the server answers them, recording what was asked."""

    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        self.requests: list[httpx.Request] = []
        self.entries = [entry(1), entry(2, kind="mcp", fault="flt_1", status=None)]
        self.faults: dict[str, dict[str, Any]] = {}

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.enabled:
            return httpx.Response(404, json={"error": "not_found", "error_description": "Not Found"})
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"error": "unauthorized", "error_description": "no"})
        route = (request.method, request.url.path)
        headers = {"Vouchsim-Testbed-Instance": "abcd1234"}
        if route == ("GET", "/testbed/journal"):
            since = int(request.url.params.get("since", "0"))
            return httpx.Response(200, json={"entries": [e for e in self.entries if e["id"] > since]}, headers=headers)
        if route == ("POST", "/testbed/faults"):
            body = json.loads(request.content)
            if not body["action"]:
                return httpx.Response(400, json={"error": "invalid_request", "error_description": "bad action"})
            self.faults["flt_1"] = {**FAULT, **body, "id": "flt_1"}
            return httpx.Response(201, json=self.faults["flt_1"])
        if route == ("GET", "/testbed/faults"):
            return httpx.Response(200, json={"faults": list(self.faults.values())})
        if request.method == "DELETE" and request.url.path.startswith("/testbed/faults/"):
            found = self.faults.pop(request.url.path.rsplit("/", 1)[1], None)
            return httpx.Response(204) if found else httpx.Response(404, json={"error": "not_found"})
        if route in (("GET", "/testbed/clock"), ("POST", "/testbed/clock"), ("DELETE", "/testbed/clock")):
            return httpx.Response(200, json=CLOCK)
        if route in (("POST", "/testbed/reset"), ("DELETE", "/testbed/journal"), ("DELETE", "/testbed/faults")):
            return httpx.Response(204)
        return httpx.Response(500, text="boom")


@pytest.fixture
def fake() -> FakeTestbed:
    return FakeTestbed()


@pytest.fixture
async def testbed(fake: FakeTestbed) -> AsyncIterator[TestbedClient]:
    async with TestbedClient.connect(SERVER, TOKEN, transport=httpx.MockTransport(fake.handle)) as client:
        yield client


async def test_the_journal_is_read_with_its_filters(testbed: TestbedClient, fake: FakeTestbed) -> None:
    entries = await testbed.journal(client_id="vsc_1", kind=["token", "mcp"], since=0, limit=5, wait=1)
    assert [e.id for e in entries] == [1, 2] and entries[1].status is None and entries[1].fault == "flt_1"
    params = dict(fake.requests[-1].url.params)
    assert params == {"client_id": "vsc_1", "kind": "token,mcp", "since": "0", "limit": "5", "wait": "1"}
    assert fake.requests[-1].headers["authorization"] == f"Bearer {TOKEN}"
    page = await testbed.journal_page()
    assert page.instance == "abcd1234"


async def test_follow_pages_forward_from_the_last_entry(testbed: TestbedClient, fake: FakeTestbed) -> None:
    seen = []
    async for found in testbed.follow(wait=0.01):
        seen.append(found.id)
        if found.id == 2:
            fake.entries.append(entry(3))
        if found.id == 3:
            break
    assert seen == [1, 2, 3]
    assert [r.url.params.get("since") for r in fake.requests] == [None, "2"]


async def test_a_fault_is_armed_for_a_block_and_removed_after(testbed: TestbedClient, fake: FakeTestbed) -> None:
    async with testbed.fault(match={"kind": "token"}, action={"status": 503}, times=None) as armed:
        assert armed.id == "flt_1" and [f.id for f in await testbed.faults()] == ["flt_1"]
        sent = json.loads(fake.requests[0].content)
        assert sent == {"match": {"kind": "token"}, "action": {"status": 503}, "times": None}
    assert fake.faults == {}
    with pytest.raises(FaultNotFoundError):
        await testbed.remove_fault("flt_1")
    async with testbed.fault(action={"drop": True}):
        fake.faults.clear()  # removed meanwhile (a reset): leaving the block is still fine
    with pytest.raises(TestbedRequestError, match="bad action"):
        await testbed.add_fault(action={})


async def test_clock_and_reset(testbed: TestbedClient, fake: FakeTestbed) -> None:
    moved = await testbed.advance(3600)
    assert moved.offset_seconds == 3600 and json.loads(fake.requests[-1].content) == {"advance_seconds": 3600}
    assert (await testbed.reset_clock()).now.year == 2026
    await testbed.reset()
    assert (fake.requests[-1].method, fake.requests[-1].url.path) == ("POST", "/testbed/reset")


async def test_errors_are_typed() -> None:
    off = FakeTestbed(enabled=False)
    async with TestbedClient.connect(SERVER, TOKEN, transport=httpx.MockTransport(off.handle)) as client:
        with pytest.raises(TestbedDisabledError):
            await client.clock()
        with pytest.raises(TestbedDisabledError):
            await client.remove_fault("flt_1")  # not "no such fault": there are no controls at all
    async with TestbedClient.connect(SERVER, "wrong", transport=httpx.MockTransport(FakeTestbed().handle)) as client:
        with pytest.raises(TestbedUnauthorizedError):
            await client.journal()

    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    async with TestbedClient.connect(SERVER, TOKEN, transport=httpx.MockTransport(refuse)) as client:
        with pytest.raises(ServerUnreachableError):
            await client.clock()

    def garbage(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="<html>")

    async with TestbedClient.connect(SERVER, TOKEN, transport=httpx.MockTransport(garbage)) as client:
        with pytest.raises(UnexpectedResponseError):
            await client.clock()
    with pytest.raises(TestbedUnauthorizedError):
        TestbedClient(httpx.AsyncClient(base_url=SERVER), "")


# -- the CLI ---------------------------------------------------------------------------------------------------


def run(fake: FakeTestbed, *argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(
        list(argv),
        http_transport=httpx.MockTransport(fake.handle),
        environ={"VOUCHSIM_TESTBED_TOKEN": TOKEN, "VOUCHSIM_SERVER_URL": SERVER} if env is None else env,
        stdout=out,
        stderr=err,
    )
    return code, out.getvalue(), err.getvalue()


def test_cli_journal_prints_one_line_per_entry_or_the_document(fake: FakeTestbed) -> None:
    code, out, _ = run(fake, "journal", "--client", "vsc_1", "--kind", "token")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert "token" in lines[0] and "POST /oauth/token" in lines[0] and "client=vsc_1" in lines[0]
    assert "grant_type=refresh_token" in lines[0] and "dropped" in lines[1] and "[fault flt_1]" in lines[1]
    assert dict(fake.requests[-1].url.params) == {"client_id": "vsc_1", "kind": "token"}
    code, out, _ = run(fake, "journal", "--json")
    assert code == 0 and [e["id"] for e in json.loads(out)["entries"]] == [1, 2]
    code, out, _ = run(fake, "journal", "--clear")
    assert (code, fake.requests[-1].method) == (0, "DELETE")


def test_cli_faults(fake: FakeTestbed) -> None:
    code, out, _ = run(
        fake, "fault", "add", "--kind", "token", "--grant-type", "refresh_token", "--status", "400",
        "--error", "invalid_grant", "--times", "2",
    )  # fmt: skip
    assert (code, out.strip()) == (0, "flt_1")
    assert json.loads(fake.requests[-1].content) == {
        "match": {"kind": "token", "grant_type": "refresh_token"},
        "action": {"status": 400, "error": "invalid_grant"},
        "times": 2,
    }
    run(fake, "fault", "add", "--kind", "mcp", "--drop", "--forever")
    assert json.loads(fake.requests[-1].content) == {"match": {"kind": "mcp"}, "action": {"drop": True}, "times": None}
    code, out, _ = run(fake, "fault", "list")
    assert code == 0 and out.startswith("flt_1  kind=mcp")
    assert (run(fake, "fault", "rm", "flt_1")[0], fake.faults) == (0, {})
    code, _, err = run(fake, "fault", "rm", "flt_1")
    assert code == 1 and "no fault flt_1" in err
    assert run(fake, "fault", "rm", "--all")[0] == 0


def test_cli_clock_reset_and_usage(fake: FakeTestbed) -> None:
    code, out, _ = run(fake, "clock", "advance", "3600")
    assert code == 0 and "+3600 s from real time" in out
    assert json.loads(fake.requests[-1].content) == {"advance_seconds": 3600.0}
    assert run(fake, "clock", "reset")[0] == 0 and fake.requests[-1].method == "DELETE"
    assert run(fake, "clock")[0] == 0 and fake.requests[-1].method == "GET"
    assert run(fake, "reset")[0] == 0 and fake.requests[-1].url.path == "/testbed/reset"
    code, _, err = run(fake, "clock", env={})
    assert code == 2 and "VOUCHSIM_TESTBED_TOKEN" in err
    code, _, err = run(fake, "journal", "--server", SERVER, "--testbed-token", "wrong", env={})
    assert code == 1 and "refused the testbed token" in err
    assert run(fake, "nonsense")[0] == 2
