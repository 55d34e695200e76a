"""The server judges a redirect URI's host as a browser does (issue 9, finding 1): a property test against Node.

Hypothesis builds tricky URLs (backslashes, `@`, percent-encoding, tabs and newlines, IPv6, IPv4 in odd forms,
trailing dots, upper case, Unicode look-alikes, an app's own scheme). For every URL the server accepts
(`registration_problem` is None, or `matches` a registered loopback URI), the host, port and scheme that Node's
`new URL()` sees must be the ones the server judged; for an app's scheme (`cursor://…`), the scheme and the name
the page and the device show. One Node process (e2e/node/whatwg_url.mjs) answers the whole run over a pipe.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from e2e.node_clients import node_executable
from vouchsim.server.core import browser_urls
from vouchsim.server.oauth import redirects

pytestmark = [pytest.mark.e2e, pytest.mark.requirement("OAUTH-REDIRECT-BROWSER-HOST")]

SCRIPT = Path(__file__).resolve().parent / "node" / "whatwg_url.mjs"
REGISTERED = ["http://127.0.0.1:33418/callback", "http://localhost/cb", "http://[::1]/cb"]
EXAMPLES = 2000


class WhatwgParser:
    """Node's `new URL()`, one JSON line in and one out."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            [node_executable(), str(SCRIPT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )

    def parse(self, url: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps(url) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        assert line, f"{SCRIPT.name} stopped answering (exit code {self.process.poll()})"
        answer: dict[str, Any] = json.loads(line)
        return answer

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()


@pytest.fixture(scope="module")
def whatwg() -> Iterator[WhatwgParser]:
    parser = WhatwgParser()
    try:
        yield parser
    finally:
        parser.close()


# -- tricky URLs ---------------------------------------------------------------------------------------------
ODD = ["\\", "@", "%", "#", "?", "/", ":", ".", "[", "]", "\t", "\n", "\r", "\x00", " ", "\x7f", "\x1f", "\u00a0"]
UNICODE = [
    "\u0435",  # Cyrillic ie
    "\u0430",  # Cyrillic a
    "\uff45",  # fullwidth e
    "\uff11",  # fullwidth 1
    "\u00df",  # ß (transitional and non-transitional IDNA differ)
    "\u00e9",
    "\u0130",  # İ
    "\u00ad",  # soft hyphen (mapped away by IDNA)
    "\u200b",  # zero-width space
    "\u200d",  # zero-width joiner
    "\u202e",  # right-to-left override
    "\u3002",  # ideographic full stop
    "\uff0e",  # fullwidth full stop
    "\u2024",  # one dot leader
    "\u2488",  # ⒈ (maps to "1.")
]


def _often(common: list[str], rare: list[str]) -> st.SearchStrategy[str]:
    """Mostly well-formed parts, so that many URLs are accepted and checked; the rare ones carry the tricks."""
    return st.one_of(st.sampled_from(common), st.sampled_from(common), st.sampled_from(common), st.sampled_from(rare))


letter = _often(list("abcdefghijklmnopqrstuvwxyz0123456789-"), [*"LOCALHSTEXMP_", *UNICODE, "%2e", "%41", "xn--"])
label = st.lists(letter, min_size=1, max_size=8).map("".join)
domain = (
    st.lists(label, min_size=1, max_size=4)
    .map(".".join)
    .flatmap(lambda name: _often([name], [name + ".", name.upper(), name + "..", "." + name]))
)
named = st.sampled_from(
    [
        "127.0.0.1",
        "localhost",
        "[::1]",
        "LOCALHOST",
        "LocalHost.",
        "127.0.0.1.",
        "127.1",
        "127.0.1",
        "2130706433",
        "0x7f.1",
        "0x7f000001",
        "0177.0.0.1",
        "017700000001",
        "0x7F.0.0.0x1",
        "127.0.0.01",
        "1.2.3.4.5",
        "256.0.0.1",
        "evil.example",
        "evil.example.",
        "EVIL.example",
        "xn--vil-qdd.example",
        "xn--zz.example",
        "xn--bcher-kva.example",
        "\u0435vil.example",
        "ev\u00adil.example",
        "fa\u00df.example",
        "\uff11\uff12\uff17.0.0.1",
        "127\u30020\u30020\u30021",
        "\uff4c\uff4f\uff43\uff41\uff4c\uff48\uff4f\uff53\uff54",
        "a_b.example",
        "a..b",
        "-a-.example",
        "evil.example.0x7f",
        "evil.example.123",
        "evil.example.0x",
    ]
)


# The strategies the composite ones below draw from, built once: Hypothesis checks a strategy it has not seen, and
# strategies built inside a draw were checked in every draw (a sixth of this test's CPU, py-spy).
IPV4_PARTS = st.lists(st.integers(0, 300), min_size=4, max_size=4) | st.lists(st.integers(0, 300), max_size=5)
IPV4_STYLE = _often(["{:d}"], ["0{:o}", "0x{:x}", "0X{:X}", "0{:d}"])
IPV4_END = _often([""], [".", ".."])
IPV6_PIECES = st.lists(
    st.sampled_from([0, 0, 0, 1, 0xFFFF, 0x7F00, 0xDB8]) | st.integers(0, 0xFFFF), min_size=8, max_size=8
)
IPV6_STYLE = st.sampled_from(["{:x}", "{:X}", "{:04x}"])
IPV6_SHORT = st.sampled_from(["::1", "::ffff:127.0.0.1", "::127.0.0.1", "0:0::1", "::1%25eth0", "::1:", "1::2::3"])
ODD_CHARACTER = st.sampled_from(ODD + UNICODE)
SOME_ODD = st.sampled_from([0, 0, 0, 0, 1, 2])
FEW_ODD = st.sampled_from([0, 0, 0, 1])


@st.composite
def ipv4(draw: st.DrawFn) -> str:
    parts = draw(IPV4_PARTS)
    host = ".".join(draw(IPV4_STYLE).format(part) for part in parts)
    return host + draw(IPV4_END)


@st.composite
def ipv6(draw: st.DrawFn) -> str:
    pieces = draw(IPV6_PIECES)
    text = ":".join(draw(IPV6_STYLE).format(piece) for piece in pieces)
    if draw(st.booleans()):
        text = text.replace(":0:0:", "::", 1)
    if draw(st.booleans()):
        text = draw(IPV6_SHORT)
    return f"[{text}]"


def _with_odd_characters(draw: st.DrawFn, url: str, count: st.SearchStrategy[int]) -> str:
    for _ in range(draw(count)):
        at = draw(st.integers(0, len(url)))
        url = url[:at] + draw(ODD_CHARACTER) + url[at:]
    return url


host = st.one_of(named, domain, ipv4(), ipv6())
scheme = _often(
    ["http", "https"],
    ["HTTP", "Https", "ftp", "javascript", " http", "ht\ttp", "cursor", "com.example.app", "Cursor", "data", "ws"],
)
separator = _often(["://"], [":/", ":///", ":\\\\", ":/\\", ":\\/", ": //"])
userinfo = _often([""], ["evil.example@", "evil.example\\@", "user:pw@", "@", "%40", "a%5c@"])
port = _often(["", ":3000", ":33418", ":8443"], [":", ":0", ":80", ":443", ":03000", ":65535", ":65536", ":1a"])
path = _often(
    ["", "/", "/callback", "/cb", "/cb?x=1"],
    ["/@evil.example", "/a\\b", "/%2e%2e/", "/c b", "/c\tb", "/c\nb", "#f", "?q", "/caf\u00e9"],
)


@st.composite
def tricky_url(draw: st.DrawFn) -> str:
    url = draw(scheme) + draw(separator) + draw(userinfo) + draw(host) + draw(port) + draw(path)
    return _with_odd_characters(draw, url, SOME_ODD)  # and sometimes an odd character anywhere


APP_SCHEME = _often(["cursor", "vscode", "com.example.app"], ["Cursor", "javascript", "data", "file", "blob", "x"])
APP_SEPARATOR = _often(["://", ":/"], [":", ":///", ":\\\\", "://@"])
APP_NAME = _often(["anysphere.cursor-mcp", "vscode.github-authentication", ""], ["Upper", "a:1", "[::1]", "%61"])


@st.composite
def app_url(draw: st.DrawFn) -> str:
    """An app's own scheme (Cursor's `cursor://anysphere.cursor-mcp/oauth/callback`), and schemes that are no app's."""
    url = draw(APP_SCHEME) + draw(APP_SEPARATOR) + draw(APP_NAME) + draw(path)
    return _with_odd_characters(draw, url, FEW_ODD)


NEAR_LOOPBACK = _often(
    ["127.0.0.1", "localhost", "[::1]"],
    ["LOCALHOST", "[0:0::1]", "[::ffff:127.0.0.1]", "127.1", "2130706433", "localhost.", "127.0.0.1.", "evil.example"],
)
LOOPBACK_PATH = _often(["/callback", "/cb"], ["/callback/", "/cb?x"])


@st.composite
def loopback_url(draw: st.DrawFn) -> str:
    """Close to a registered loopback URI, so that `matches` is exercised as much as registration."""
    url = "http://" + draw(userinfo) + draw(NEAR_LOOPBACK) + draw(port) + draw(LOOPBACK_PATH)
    return _with_odd_characters(draw, url, FEW_ODD)


# -- the properties ------------------------------------------------------------------------------------------
def _judged(url: str) -> browser_urls.BrowserUrl | browser_urls.AppUrl:
    return browser_urls.parse_redirect_target(url)


def _assert_browser_agrees(whatwg: WhatwgParser, url: str) -> None:
    judged = _judged(url)
    seen = whatwg.parse(url)
    assert seen["ok"], f"the server accepted {url!r}, which a browser cannot parse at all ({seen['error']})"
    if isinstance(judged, browser_urls.AppUrl):  # handed to an app: its scheme, and its name as people see it
        assert seen["protocol"] == judged.scheme + ":", url
        assert seen["hostname"] == judged.authority, f"{url!r}: {seen} against {judged}"
        assert redirects.display_host(url) == judged.shown
        return
    assert seen["hostname"] == judged.host, f"{url!r}: the browser goes to {seen['hostname']!r}, not {judged.host!r}"
    assert seen["protocol"] == judged.scheme + ":", url
    assert seen["port"] == ("" if judged.port is None else str(judged.port)), url
    assert redirects.display_host(url) == seen["hostname"]  # what the page and the device show


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(url=st.one_of(tricky_url(), loopback_url(), app_url()))
@example(url="http://evil.example\\@127.0.0.1:33418/callback")  # the attack
@example(url="http://evil.example@127.0.0.1:33418/callback")
@example(url="https://\u0435vil.example/cb")
@example(url="http://[::ffff:127.0.0.1]:3000/cb")
@example(url="cursor://anysphere.cursor-mcp/oauth/callback")  # Cursor's
@example(url="com.example.app:/oauth2redirect")  # RFC 8252 §7.1's form
def test_every_accepted_redirect_uri_has_the_host_a_browser_sees(whatwg: WhatwgParser, url: str) -> None:
    if redirects.registration_problem(url) is None:
        _assert_browser_agrees(whatwg, url)
    if redirects.matches(REGISTERED, url):
        seen = whatwg.parse(url)
        assert seen["ok"] and seen["protocol"] == "http:", url
        assert seen["hostname"] in {"127.0.0.1", "localhost", "[::1]"}, f"{url!r} matched but goes to {seen}"
        assert redirects.registration_problem(url) is None


def test_the_comparison_can_fail(whatwg: WhatwgParser) -> None:
    """The parser beside the server's: what urlsplit judged 127.0.0.1 is evil.example to a browser, and refused."""
    attack = "http://evil.example\\@127.0.0.1:33418/callback"
    assert whatwg.parse(attack)["hostname"] == "evil.example"
    assert redirects.registration_problem(attack) is not None
    assert not redirects.matches(REGISTERED, attack)
    assert whatwg.parse("http://0x7f.1:3000/cb")["hostname"] == "127.0.0.1"  # odd IPv4 forms are refused, not read
    assert redirects.registration_problem("http://0x7f.1:3000/cb") is not None
