"""Redirect URIs: one parser for registration and matching, reading hosts as a browser does (issue 9, finding 1).

e2e/test_redirect_uri_parsing.py checks the parser against Node's WHATWG parser with generated URLs; these are
the named attacks and the contract, one by one.
"""

from __future__ import annotations

import pytest

from vouchsim.server.core import browser_urls
from vouchsim.server.oauth import redirects

REGISTERED = ["http://127.0.0.1:3000/callback"]


@pytest.mark.parametrize(
    "uri",
    [
        "https://agent.example.com/cb",
        "http://127.0.0.1:3000/cb",
        "http://localhost/cb",
        "http://[::1]:8080/x?y=1",
        "https://agent.example.com:8443/cb?x=1&y=%20",
        "https://xn--vil-qdd.example/cb",
        "https://\u0435vil.example/cb",  # Cyrillic ie: registrable, but shown as punycode (test_idn_hosts_...)
        # an app's own scheme (RFC 8252 §7.1): Cursor's, VS Code's, a reverse-domain one as the RFC recommends
        "cursor://anysphere.cursor-mcp/oauth/callback",
        "vscode://vscode.github-authentication/did-authenticate?windowId=1",
        "com.example.app:/oauth2redirect",
    ],
)
def test_registrable(uri: str) -> None:
    assert redirects.registration_problem(uri) is None


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("http://agent.example.com/cb", "https"),
        ("https://agent.example.com/cb#x", "fragment"),
        ("cb", "absolute"),
        ("https://user:pw@agent.example.com/cb", "'@'"),
        ("ftp://agent.example.com/cb", "https"),
        ("http://127.0.0.1:99999/cb", "port"),
        ("http://127.0.0.1:0/cb", "port"),
        ("http://127.0.0.1:080/cb", "port"),
        ("http://127.0.0.1.evil.test/cb", "https"),
        # finding 1: what urlsplit and a browser read differently
        ("http://evil.example\\@127.0.0.1:3000/callback", "backslash"),
        ("http://evil.example@127.0.0.1:3000/callback", "'@'"),
        ("http:\\\\evil.example/cb", "backslash"),
        ("http:/evil.example/cb", "'//'"),
        ("http:///evil.example/cb", "'//'"),
        ("http://127.0.0.1\t.evil.example/cb", "whitespace"),
        # finding 4: CR/LF, NUL and control characters; an upper-case scheme
        ("http://127.0.0.1/cb\r\nSet-Cookie: x=1", "control"),
        ("http://127.0.0.1/cb\x00", "control"),
        ("https://a.example/c\x7fb", "control"),
        ("https://a.example/\u202ebc", "control"),
        ("https://a.example/ cb", "whitespace"),
        ("HTTP://127.0.0.1/cb", "lower-case scheme"),
        ("Https://a.example/cb", "lower-case scheme"),
        # IPv4 in forms a browser reads as 127.0.0.1, and hosts it reads differently
        ("http://2130706433/cb", "IPv4"),
        ("http://0x7f.1/cb", "IPv4"),
        ("http://127.1/cb", "IPv4"),
        ("http://0177.0.0.1/cb", "IPv4"),
        ("http://127.0.0.1./cb", "IPv4"),
        ("http://evil.example.0x7f/cb", "IPv4"),
        ("http://%31%32%37.0.0.1/cb", "percent"),
        ("https://ex%61mple.com/cb", "percent"),
        ("http://[::1%25eth0]/cb", "IPv6"),
        ("http://[::1]x/cb", "IPv6"),
        ("https://a..example/cb", "labels"),
        ("https://xn--zz.example/cb", "punycode"),
        ("https://a.example/" + "x" * 2000, "longer"),
        # schemes browsers give a meaning of their own are no app's
        ("javascript:alert(document.cookie)", "an app's own scheme"),
        ("data:text/html,<script>alert(1)</script>", "an app's own scheme"),
        ("file:///etc/passwd", "an app's own scheme"),
        ("blob:https://a.example/0d7c", "an app's own scheme"),
        ("view-source:https://a.example/cb", "an app's own scheme"),
        ("wss://a.example/cb", "an app's own scheme"),
        # an app's scheme keeps the rules on characters, case and fragments, and names a plain app
        ("Cursor://anysphere.cursor-mcp/oauth/callback", "lower-case scheme"),
        ("cursor://Anysphere.cursor-mcp/oauth/callback", "plain lower-case name"),
        ("cursor://anysphere.cursor-mcp:443/oauth/callback", "plain lower-case name"),
        ("cursor://evil.example\\@anysphere.cursor-mcp/cb", "backslash"),
        ("cursor://evil.example@anysphere.cursor-mcp/cb", "'@'"),
        ("cursor://anysphere.cursor-mcp/cb\r\nX: y", "control"),
        ("cursor://anysphere.cursor-mcp/cb#x", "fragment"),
        ("cursor:", "more than its scheme"),
        ("cursor://", "more than its scheme"),
    ],
)
def test_not_registrable(uri: str, reason: str) -> None:
    problem = redirects.registration_problem(uri)
    assert problem is not None and reason in problem, problem


def test_exact_match_and_loopback_port_freedom() -> None:
    registered = ["https://a.example/cb", "http://127.0.0.1:3000/callback", "http://localhost/cb"]
    assert redirects.matches(registered, "https://a.example/cb")
    assert not redirects.matches(registered, "https://a.example/cb/")
    assert not redirects.matches(registered, "https://a.example:444/cb")
    assert not redirects.matches(registered, "https://A.example/cb")  # not loopback: exact string match only
    assert redirects.matches(registered, "http://127.0.0.1:51234/callback")
    assert redirects.matches(registered, "http://127.0.0.1/callback")
    assert redirects.matches(registered, "http://localhost:8123/cb")
    assert redirects.matches(registered, "http://LOCALHOST:8123/cb")  # the host as a browser reads it
    assert not redirects.matches(registered, "http://127.0.0.1:51234/other")
    assert not redirects.matches(registered, "http://localhost:8123/callback")  # host must match too
    assert not redirects.matches(registered, "http://127.0.0.1:51234/callback?x=1")
    assert redirects.matches(["http://[::1]/cb"], "http://[0:0::1]:4000/cb")


@pytest.mark.parametrize(
    "attack",
    [
        "http://evil.example\\@127.0.0.1:3000/callback",  # the exact attack: a browser goes to evil.example
        "http://evil.example\\@127.0.0.1:51234/callback",
        "http://evil.example@127.0.0.1:3000/callback",  # userinfo, refused at registration and so at authorize
        "http://evil.example@127.0.0.1:51234/callback",
        "http://127.0.0.1:51234\\@evil.example/callback",
        "http://2130706433:51234/callback",
        "http://127.1:51234/callback",
        "http://0x7f.0.0.1:51234/callback",
        "http://127.0.0.1.:51234/callback",
        "HTTP://127.0.0.1:51234/callback",
        "http://127.0.0.1:51234/callback\r\n",
        "http://127.0.0.1:51234/callback\x00",
        "\thttp://127.0.0.1:51234/callback",
        "http://127.0.0.1:51234/call\tback",
    ],
)
def test_the_named_attacks_never_match(attack: str) -> None:
    assert not redirects.matches(REGISTERED, attack)
    assert redirects.request_problem(attack) is not None


def test_an_apps_scheme_matches_exactly_and_names_the_app() -> None:
    cursor = "cursor://anysphere.cursor-mcp/oauth/callback"
    assert redirects.matches([cursor], cursor)
    assert not redirects.matches([cursor], cursor + "/")
    assert not redirects.matches([cursor], "cursor://anysphere.cursor-mcp/oauth/callback?x=1")
    assert not redirects.is_loopback(cursor)
    # the scheme is always shown: a name after an app's scheme is the app's choice, not a host anyone goes to
    assert redirects.display_host(cursor) == "cursor://anysphere.cursor-mcp"
    assert redirects.display_host("evilapp://bank.example/cb") == "evilapp://bank.example"
    assert redirects.display_host("com.example.app:/oauth2redirect") == "com.example.app:"


def test_a_stored_uri_that_is_now_refused_matches_nothing() -> None:
    """A redirect URI registered before this parser (with userinfo, say) cannot be used, even exactly."""
    legacy = "http://evil.example@127.0.0.1:3000/callback"
    assert not redirects.matches([legacy], legacy)


def test_loopback_is_judged_by_the_browser_host() -> None:
    assert redirects.is_loopback("http://127.0.0.1:3000/cb")
    assert redirects.is_loopback("http://[::1]/cb")
    assert redirects.is_loopback("http://LocalHost/cb")
    assert not redirects.is_loopback("http://evil.example\\@127.0.0.1/cb")
    assert not redirects.is_loopback("http://evil.example@127.0.0.1/cb")
    assert not redirects.is_loopback("https://127.0.0.1/cb")  # RFC 8252 §7.3 is about http
    assert not redirects.is_loopback("http://localhost.evil.example/cb")


@pytest.mark.parametrize(
    ("uri", "shown"),
    [
        ("https://\u0435vil.example/cb", "xn--vil-qdd.example"),  # Cyrillic ie cannot pass as "evil"
        ("https://b\u00fccher.example/cb", "xn--bcher-kva.example"),
        ("https://Agent.Example.com/cb", "agent.example.com"),
        ("http://127.0.0.1:3000/cb", "127.0.0.1"),
        ("http://[0:0:0:0:0:0:0:1]:3000/cb", "[::1]"),
    ],
)
def test_idn_hosts_are_shown_punycoded(uri: str, shown: str) -> None:
    assert redirects.display_host(uri) == shown


def test_ipv6_is_serialised_as_browsers_do() -> None:
    assert browser_urls.parse("http://[2001:DB8:0:0:1:0:0:1]/").host == "[2001:db8::1:0:0:1]"
    assert browser_urls.parse("http://[::ffff:127.0.0.1]/").host == "[::ffff:7f00:1]"
    assert browser_urls.parse("http://[1:2:3:4:5:6:7:8]/").host == "[1:2:3:4:5:6:7:8]"
    assert browser_urls.parse("http://[1:0:3:4:5:6:7:8]/").host == "[1:0:3:4:5:6:7:8]"


def test_default_port_counts_as_none() -> None:
    assert browser_urls.parse("https://a.example:443/cb").port is None
    assert browser_urls.parse("http://a.example:80/cb").port is None
    assert browser_urls.parse("https://a.example:80/cb").port == 80
