"""server.edge without HTTP: token buckets on a fake clock, which requests count against which limit, the host
rule, the input checks, and the settings that drive them."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from vouchsim.server.app import bad_input
from vouchsim.server.edge.asgi import EdgeHeaders, client_address
from vouchsim.server.edge.hosts import guard_is_on, host_allowed
from vouchsim.server.edge.inputs import MAX_DEPTH, BadInput, check_body, check_json, check_request_line
from vouchsim.server.edge.layer import Edge
from vouchsim.server.edge.limits import RateLimits, TokenBucket
from vouchsim.server.mcp import jsonrpc
from vouchsim.server.mcp.errors import ParseError
from vouchsim.server.settings import Settings, settings_from


class FakeTime:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- token buckets --------------------------------------------------------------------------------------------
def test_a_bucket_lets_a_burst_through_then_refills_evenly() -> None:
    time = FakeTime()
    bucket = TokenBucket(3, 60, now=time)
    assert [bucket.take("ip") for _ in range(3)] == [None, None, None]
    assert bucket.take("ip") == pytest.approx(20.0)
    assert bucket.take("other") is None  # one bucket per key
    time.now += 20
    assert bucket.take("ip") is None
    assert bucket.take("ip") == pytest.approx(20.0)
    time.now += 3600  # never more than the burst
    assert [bucket.take("ip") for _ in range(4)][-1] is not None


def test_a_bucket_keeps_a_bounded_number_of_keys() -> None:
    bucket = TokenBucket(1, 60, now=FakeTime(), max_keys=2)
    for key in ("a", "b", "c"):
        bucket.take(key)
    assert bucket.take("a") is None  # forgotten: a full bucket again
    assert bucket.take("c") is not None


def test_300_registrations_in_a_burst_meet_the_default_limit() -> None:
    time = FakeTime()
    limits = RateLimits(Settings(), now=time)
    assert limits.registrations is not None
    refused = 0
    for _ in range(300):
        time.now += 0.01  # 300 in three seconds
        refused += limits.registrations.take("127.0.0.1") is not None
    assert refused >= 80


def test_a_suite_of_a_few_hundred_flows_does_not() -> None:
    """350 flows, one every 80 ms (a fast headless flow): registration, authorization page, code, /mcp calls."""
    time = FakeTime()
    limits = RateLimits(Settings(), now=time)
    for _ in range(350):
        time.now += 0.08
        for method, path in [
            ("POST", "/oauth/register"),
            ("GET", "/oauth/authorize"),
            ("POST", "/oauth/authorize/pairing/p1"),
        ]:
            limit, _what = limits.limit_for(method, path)
            assert limit is not None and limit.take("127.0.0.1") is None
        assert limits.mcp is not None
        assert all(limits.mcp.take("one token for the suite") is None for _ in range(10))


@pytest.mark.parametrize(
    ("method", "path", "which"),
    [
        ("POST", "/oauth/register", "registrations"),
        ("GET", "/oauth/authorize", "pairings"),
        ("POST", "/oauth/authorize/requests/req_1/pair", "pairings"),
        ("POST", "/oauth/authorize/pairing/pr_1", "pairing_codes"),
        ("POST", "/mcp", "mcp"),
        ("DELETE", "/mcp", "mcp"),
        ("OPTIONS", "/mcp", None),
        ("GET", "/oauth/authorize/pairing/pr_1", None),
        ("GET", "/oauth/authorize/pairing/pr_1/status", None),
        ("POST", "/oauth/token", None),
        ("POST", "/device/enrol", None),
    ],
)
def test_what_counts_against_which_limit(method: str, path: str, which: str | None) -> None:
    limits = RateLimits(Settings())
    limit, _what = limits.limit_for(method, path)
    assert limit is (getattr(limits, which) if which else None)


def test_a_limit_of_zero_is_off() -> None:
    limits = RateLimits(Settings(rate_limit_registrations=0))
    assert limits.limit_for("POST", "/oauth/register") == (None, "client registrations from your address")


def test_the_key_is_the_socket_peer_unless_told_to_trust_the_proxy() -> None:
    scope = {"client": ("10.0.0.5", 1234), "headers": [(b"x-forwarded-for", b"1.2.3.4, 192.0.2.7")]}
    assert client_address(Settings(), scope) == "10.0.0.5"
    assert client_address(Settings(rate_limit_forwarded_for=True), scope) == "192.0.2.7"


# -- hosts ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8741", True),
        ("localhost", True),
        ("LOCALHOST:1", True),
        ("x.localhost:1", True),
        ("[::1]:8741", True),
        (None, True),
        ("evil.example:8741", False),
        ("localhost.evil.example", False),
        ("127.0.0.1@evil.example", False),
        ("[::1", False),
        ("::1", False),
        ("", False),
    ],
)
def test_which_hosts_the_guard_lets_through(host: str | None, allowed: bool) -> None:
    assert host_allowed(host, ()) is allowed


def test_when_the_guard_is_on() -> None:
    assert guard_is_on(Settings())
    assert guard_is_on(Settings(host="::1"))
    assert not guard_is_on(Settings(issuer="https://vouch.example"))
    assert not guard_is_on(Settings(host="0.0.0.0"))
    assert guard_is_on(Settings(host="0.0.0.0", allowed_hosts="vouch.example"))
    assert not guard_is_on(Settings(allowed_hosts="*"))


@pytest.mark.parametrize("value", ["http://vouch.test", "vouch.test:0", "vouch.test:x", "a/b"])
def test_allowed_hosts_must_be_hosts(value: str) -> None:
    with pytest.raises(ValueError, match="allowed_hosts"):
        Settings(allowed_hosts=value)


def test_rate_limit_settings_are_read_from_the_environment() -> None:
    settings = settings_from({"VOUCHSIM_RATE_LIMIT_REGISTRATIONS": "7", "VOUCHSIM_RATE_LIMIT_FORWARDED_FOR": "1"})
    assert settings.rate_limit_registrations == 7 and settings.rate_limit_forwarded_for
    with pytest.raises(ValueError, match="rate_limit_mcp"):
        Settings(rate_limit_mcp=-1)
    with pytest.raises(ValueError, match="rate_limit_window"):
        Settings(rate_limit_window=0)


# -- inputs ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1)),
        ("text/plain", b"[" * 5000),  # unbalanced, but still too deep to hand on: judged whatever the type
        ("application/json", b'{"a": "\\u0000"}'),
        ("application/json", b'{"\\u0000": 1}'),
        ("application/json", b'{"a": "\\ud800", "b": NaN}'),  # what only Python's json module reads
        ("application/json", b'{"a": "\x00"}'),
        ("application/x-www-form-urlencoded", b"a=%00"),
        ("application/x-www-form-urlencoded", b"%00=a"),
        ("application/x-www-form-urlencoded", b"a=%C3%28"),
        ("multipart/form-data; boundary=x", b"--x\r\n\x00"),
        ("", b"\xff"),
    ],
)
def test_bad_bodies_are_refused(content_type: str, body: bytes) -> None:
    with pytest.raises(BadInput):
        check_body(content_type, body)


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b"[" * MAX_DEPTH + b"]" * MAX_DEPTH),
        ("application/json", b'{"a": "\\\\u0000", "emoji": "\\ud83d\\ude00"}'),  # an escaped backslash; a pair
        ("application/json", b"{not json"),  # the handler's to answer
        ("application/x-www-form-urlencoded", b"a=%C3%A9&b=%2500"),
        ("text/plain", b"just text"),
    ],
)
def test_good_bodies_pass(content_type: str, body: bytes) -> None:
    check_body(content_type, body)


def test_the_request_line_and_credentials_headers_are_checked() -> None:
    check_request_line({"path": "/mcp", "query_string": b"a=1", "headers": [(b"authorization", b"Bearer t")]})
    for scope in (
        {"path": "/a\x00"},
        {"path": "/", "query_string": b"a=%00"},
        {"path": "/", "query_string": b"a=%FF"},
        {"path": "/", "headers": [(b"authorization", b"Bearer t\x00")]},
        {"path": "/", "headers": [(b"authorization", b"Basic YSUwMDpi")]},  # a%00:b
        {"path": "/", "headers": [(b"cookie", b"s=%00")]},
    ):
        with pytest.raises(BadInput):
            check_request_line(scope)
        with pytest.raises(BadInput):  # the edge's one pass over the headers marks them for the full check
            check_request_line(scope, EdgeHeaders(scope))


def test_the_header_pass_reads_first_values_and_marks_only_what_needs_a_look() -> None:
    scope = {"headers": [(b"Host", b"a"), (b"host", b"b"), (b"authorization", b"Bearer t"), (b"cookie", b"s=1")]}
    headers = EdgeHeaders(scope)
    assert (headers.get(b"host"), headers.get(b"origin"), headers.suspect) == ("a", None, False)
    assert EdgeHeaders({"headers": [(b"authorization", b" basic YTpi")]}).suspect


@pytest.mark.parametrize(
    "body",
    [
        b'{"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "x", "arguments": {"a": [1, {}]}}}',
        b"[" * (MAX_DEPTH - 1) + b"]" * (MAX_DEPTH - 1),
        b'{"a": "[[[[{{{{", "b": NaN}',
        b'{"unterminated": ',
    ],
)
def test_bodies_the_quick_look_passes_pass_the_full_walk_too(body: bytes) -> None:
    check_body("application/json", body)  # no escape, fewer brackets than the limit: the quick look
    check_json(body)  # what the full walk says of the same body


def test_the_edge_hands_the_same_body_on() -> None:
    seen: list[Any] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(await receive())
        seen.append(await receive())

    messages = [
        {"type": "http.request", "body": b'{"a":', "more_body": True},
        {"type": "http.request", "body": b"1}", "more_body": False},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Any:
        return messages.pop(0)

    async def send(message: Any) -> None:
        raise AssertionError(message)

    scope = {"type": "http", "method": "POST", "path": "/x", "headers": [(b"content-type", b"application/json")]}
    settings = Settings()
    asyncio.run(Edge(app, settings, RateLimits(settings))(scope, receive, send))
    assert seen == [{"type": "http.request", "body": b'{"a":1}', "more_body": False}, {"type": "http.disconnect"}]


def test_jsonrpc_reads_unreadable_bodies_as_parse_errors() -> None:
    for body in (b"\xff", b'"\xc3("', b"[" * 50_000 + b"]" * 50_000):
        with pytest.raises(ParseError):
            jsonrpc.parse(body)


def test_the_last_resort_handler_knows_bad_input_from_a_bug() -> None:
    from sqlalchemy.exc import DataError, DBAPIError, StatementError

    assert bad_input(RecursionError())
    assert bad_input(UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"))
    assert bad_input(DataError("INSERT", {}, Exception("invalid byte sequence for encoding UTF8: 0x00")))
    assert bad_input(StatementError("x", "INSERT", {}, UnicodeEncodeError("utf-8", "\ud800", 0, 1, "surrogate")))

    class PgError(Exception):
        def __init__(self, sqlstate: str) -> None:
            super().__init__("invalid byte sequence for encoding UTF8: 0x00")
            self.sqlstate = sqlstate

    assert bad_input(DBAPIError("INSERT", {}, PgError("22021")))
    assert not bad_input(DBAPIError("INSERT", {}, PgError("40001")))  # a serialization failure is ours
    assert not bad_input(KeyError("a bug"))
    assert not bad_input(StatementError("x", "INSERT", {}, KeyError("a bug")))
