"""Hypothesis against `/mcp`: JSON-RPC bodies of every shape, in both eras, with a real access token.

Bodies are arbitrary JSON values (huge numbers, floats JSON cannot spell, unicode of every plane), JSON-RPC messages
with `jsonrpc`, `id`, `method` and `params` of the wrong types, batches, and raw bytes. Each is sent as a 2025 client
(inside a live session, or without one) or as a 2026-07-28 client (`_meta` in the body, routing headers that agree
with it or not), with headers a client may get wrong. Every answer must be below 500, and every refusal a JSON-RPC
error object (docs/mcp.md). `VOUCHSIM_FUZZ_CASES` sets the number of cases. Each request goes to every backend
(fuzz/conftest.py), in its own session there.
"""

from __future__ import annotations

import base64
import json
from collections import Counter
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from server.tests.fuzz.conftest import Parties
from server.tests.fuzz.support import CASES, EDGE_GUARD_MERGED, MAX_DEPTH, fuzz_settings, nested, seeded, summary
from server.tests.http.test_mcp_routes import Agent

MODERN = "2026-07-28"
VERSIONS = ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05", MODERN, "2026-07-29", "", "latest"]
METHODS = [
    "initialize", "ping", "tools/list", "tools/call", "server/discover", "tasks/get", "tasks/update", "tasks/cancel",
    "notifications/initialized", "notifications/cancelled", "logging/setLevel", "resources/list", "rpc.discover",
]  # fmt: skip
TOOLS = ["identity_get", "delegation_request", "delegation_status", "delegation_revoke", "nope"]

text = st.text(alphabet=st.characters(codec=None if EDGE_GUARD_MERGED else "utf-8", exclude_characters="\x00"))
texts = st.one_of(text, st.text()) if EDGE_GUARD_MERGED else text
numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63 - 2, max_value=2**64 + 2),
    st.integers(min_value=10**300, max_value=10**400),
    st.floats(allow_nan=True, allow_infinity=True),
)
scalars = st.one_of(st.none(), st.booleans(), numbers, texts)
values = st.recursive(
    scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4), max_leaves=8
)
# Every strategy the messages draw from, built once: Hypothesis checks a strategy it has not seen (emptiness,
# recursion), and strategies built in each draw were checked in each draw, a third of the run's generation (py-spy).
# The same strategies, so the same cases for a seed.
JSONRPC = st.just("2.0")
ID, WRONG_ID = st.integers(-(2**53), 2**53) | text, numbers | values
METHOD, WRONG_STRING = st.sampled_from(METHODS), texts | values
TOOL = st.sampled_from(TOOLS)
ARGUMENTS = st.dictionaries(
    st.sampled_from(["delegationId", "audienceId", "purpose", "scopes", "waitForApproval", "x"]) | texts,
    values,
    max_size=3,
)
VERSION, WRONG_VERSION = st.sampled_from(VERSIONS), st.sampled_from(VERSIONS) | values
MODERN_VERSION = st.just(MODERN)
EMPTY = st.just({})
CLIENT_INFO = st.just({"name": "fuzz", "version": "0"})
LEVEL = st.sampled_from(["debug", "info", "error"])
CAPABILITIES = st.sampled_from([{}, {"extensions": {"io.modelcontextprotocol/tasks": {}}}])
PROGRESS_TOKEN = st.integers(0, 10) | texts
NONE_OR_VALUE = st.none() | values


def either(draw: st.DrawFn, sane: bool, right: st.SearchStrategy[Any], wrong: st.SearchStrategy[Any]) -> Any:
    """A member as a careful client writes it (always, in a sane message), else now and then a wrong one."""
    if sane or draw(st.integers(0, 2)):
        return draw(right)
    return draw(wrong)


def envelope(draw: st.DrawFn, sane: bool) -> Any:
    """A 2026-07-28 `_meta`: right, or wrong in one of its parts."""
    meta: dict[str, Any] = {
        "io.modelcontextprotocol/protocolVersion": either(draw, sane, MODERN_VERSION, WRONG_VERSION),
        "io.modelcontextprotocol/clientCapabilities": either(draw, sane, CAPABILITIES, values),
    }
    if draw(st.booleans()):
        meta["io.modelcontextprotocol/clientInfo"] = either(draw, sane, CLIENT_INFO, values)
    if draw(st.integers(0, 3)) == 0:
        meta["progressToken"] = either(draw, sane, PROGRESS_TOKEN, values)
    return meta if sane or draw(st.integers(0, 9)) else draw(values)


@st.composite
def messages(draw: st.DrawFn, modern: bool) -> Any:
    """A JSON-RPC message: a sane one (half of them), or one whose members are now and then of the wrong type,
    absent, or extra."""
    sane = draw(st.booleans())
    message: dict[str, Any] = {}
    if sane or draw(st.integers(0, 9)):
        message["jsonrpc"] = either(draw, sane, JSONRPC, values)
    if sane or draw(st.integers(0, 3)):
        message["id"] = either(draw, sane, ID, WRONG_ID)
    method = either(draw, sane, METHOD, WRONG_STRING)
    if sane or draw(st.integers(0, 9)):
        message["method"] = method
    params: Any = {}
    if method == "tools/call":
        params["name"] = either(draw, sane, TOOL, WRONG_STRING)
        params["arguments"] = either(draw, sane, ARGUMENTS, values)
    if method == "initialize":
        params["protocolVersion"] = either(draw, sane, VERSION, values)
        params["capabilities"] = either(draw, sane, EMPTY, values)
        params["clientInfo"] = either(draw, sane, CLIENT_INFO, values)
    if method == "logging/setLevel":
        params["level"] = either(draw, sane, LEVEL, values)
    if str(method).startswith("tasks/"):
        params["taskId"] = either(draw, sane, text, values)
    if modern or draw(st.integers(0, 9)) == 0:
        params["_meta"] = envelope(draw, sane)
    if not sane and draw(st.integers(0, 4)) == 0:
        params = draw(NONE_OR_VALUE)
    if params or draw(st.booleans()):
        message["params"] = params
    if not sane and draw(st.integers(0, 9)) == 0:
        message["result" if draw(st.booleans()) else "error"] = draw(values)
    if not sane and draw(st.integers(0, 9)) == 0:
        message[draw(texts)] = draw(values)
    return message


def dumps(value: Any) -> bytes:
    """JSON as a client might write it: NaN and Infinity included (not JSON: a parse error), unicode unescaped."""
    return json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8", "surrogatepass")


DEPTH = st.sampled_from([MAX_DEPTH]) | st.integers(1, MAX_DEPTH)
MESSAGES = {modern: messages(modern=modern) for modern in (False, True)}
BATCHES = {modern: st.lists(MESSAGES[modern], max_size=4) for modern in (False, True)}


@st.composite
def raw_bodies(draw: st.DrawFn) -> bytes:
    """Bodies no JSON encoder writes: truncated, deeply nested, lone surrogates, bytes."""
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return nested(draw(DEPTH), object_=draw(st.booleans()))
    if kind == 1:
        whole = dumps(draw(MESSAGES[False]))
        return whole[: draw(st.integers(0, max(0, len(whole) - 1)))]
    if kind == 2:
        return b'{"jsonrpc":"2.0","id":1,"method":"\\ud800","params":{"name":"\\udfff"}}'
    data = draw(st.binary(max_size=64))
    if not EDGE_GUARD_MERGED:
        data = data.decode("utf-8", "replace").encode()
    return data


RAW_BODIES = raw_bodies()
ERA = st.sampled_from(["2025 session", "2025 no session", MODERN])
SHAPE = st.sampled_from(["message", "message", "message", "batch", "value", "raw"])
CONTENT_TYPE = st.sampled_from(["application/json", "application/json; charset=utf-8", "text/plain"])
ACCEPT = st.sampled_from(
    ["application/json, text/event-stream", "application/json", "text/event-stream", "*/*", "text/html"]
)
PRINTABLE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E))
LEGACY_HEADER_VERSION = st.sampled_from(["2025-11-25", "2025-11-25", "2025-06-18"])
MODERN_HEADER_VERSION = st.sampled_from([MODERN, MODERN, MODERN, "2025-11-25", "2026-07-29"])
VERB = st.sampled_from(["POST"] * 12 + ["GET", "DELETE"])


@st.composite
def requests_(draw: st.DrawFn, session_id: str) -> tuple[str, dict[str, str], bytes, str]:
    era = draw(ERA)
    modern = era == MODERN
    shape = draw(SHAPE)
    message: Any = None
    if shape == "message":
        message = draw(MESSAGES[modern])
        body = dumps(message)
    elif shape == "batch":
        body = dumps(draw(BATCHES[modern]))
    elif shape == "value":
        body = dumps(draw(values))
    else:
        body = draw(RAW_BODIES)
    headers = {"Content-Type": draw(CONTENT_TYPE)}
    headers["Accept"] = draw(ACCEPT)
    if era == "2025 session":
        headers["Mcp-Session-Id"] = session_id if draw(st.integers(0, 5)) else draw(PRINTABLE)
        headers["MCP-Protocol-Version"] = draw(LEGACY_HEADER_VERSION)
    elif modern:
        headers["MCP-Protocol-Version"] = draw(MODERN_HEADER_VERSION)
        method = message.get("method") if isinstance(message, dict) else None
        headers["Mcp-Method"] = (
            method
            if isinstance(method, str) and method.isascii() and method.isprintable() and draw(st.integers(0, 4))
            else "tools/list"
        )
        params = message.get("params") if isinstance(message, dict) else None
        name = params.get("name") if isinstance(params, dict) else None
        if isinstance(name, str) and draw(st.booleans()):
            headers["Mcp-Name"] = (
                name
                if name.isascii() and name.isprintable()
                else "=?base64?" + base64.b64encode(name.encode("utf-8", "surrogatepass")).decode() + "?="
            )
    verb = draw(VERB)
    return verb, headers, body, era


def test_mcp_answers_every_body_without_a_5xx(every_backend: list[Parties], capsys: pytest.CaptureFixture[str]) -> None:
    sessions = {}
    for parties in every_backend:
        agent = Agent(parties.client, parties.access_token)
        assert agent.initialize().status_code == 200
        assert agent.session_id is not None
        sessions[parties.backend] = agent.session_id
    first = sessions[every_backend[0].backend]  # the session the requests are generated with
    statuses = {parties.backend: Counter[str]() for parties in every_backend}
    failures: dict[str, str] = {}

    @fuzz_settings()
    @seeded
    @given(request=requests_(first), token=st.sampled_from(["good"] * 18 + ["none", "garbage"]))
    def run(request: tuple[str, dict[str, str], bytes, str], token: str) -> None:
        verb, generated, body, era = request
        for parties in every_backend:
            headers = dict(generated)
            if headers.get("Mcp-Session-Id") == first:
                headers["Mcp-Session-Id"] = sessions[parties.backend]
            if token == "good":
                headers["Authorization"] = f"Bearer {parties.access_token}"
            elif token == "garbage":
                headers["Authorization"] = "Bearer not-a-token"
            sent = body.replace(b"\\u0000", b"") if not EDGE_GUARD_MERGED and parties.backend == "postgres" else body
            response = parties.client.request(verb, "/mcp", content=sent, headers=headers)
            statuses[parties.backend][f"{era} {response.status_code}"] += 1
            problem = None
            if response.status_code >= 500:
                problem = "5xx"
            elif response.status_code >= 400:
                try:
                    error = response.json()["error"]
                    assert isinstance(error["code"], int) and isinstance(error["message"], str)
                except Exception:
                    problem = "a refusal that is not a JSON-RPC error"
            if problem:
                key = f"{parties.backend}: {era} {verb} -> {response.status_code}: {problem}"
                failures.setdefault(key, f"headers={headers}\nbody={sent[:500]!r}\nanswer={response.text[:500]}")

    run()
    with capsys.disabled():  # the counts show in a serial run (-n 0), not only with -s
        for backend, counts in statuses.items():
            print("\n" + summary(f"/mcp on {backend}", counts))
    for backend, counts in statuses.items():
        assert sum(counts.values()) >= min(CASES, 2000) * 0.9, backend
    assert not failures, "\n\n".join(f"{key}\n{detail}" for key, detail in failures.items())
