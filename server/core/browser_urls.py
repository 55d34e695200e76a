"""http(s) URLs read the way a browser reads them (the WHATWG URL Standard), or refused.

The server decides things from a URL's host (where a code may go, what the page and the device say it "returns to");
the browser then goes wherever *its* parser says. `urllib.parse` follows RFC 3986 and disagrees with browsers on
exactly the inputs an attacker would pick: `http://evil.example\\@127.0.0.1/` is `127.0.0.1` to `urlsplit` and
`evil.example` to every browser (issue 9, finding 1). Rather than re-implement the WHATWG parser, `parse` accepts
only the subset of URLs on which the two agree, and refuses everything else with a reason:

- no control, format (bidi, zero-width), unassigned or whitespace characters anywhere; no `\\` (WHATWG reads it as
  `/`) and no `@` (userinfo, or what a browser would take for it);
- a lower-case `http` or `https` scheme followed by exactly `//` and a host;
- the host: a bracketed IPv6 address (no zone), a dotted-quad IPv4 address with no leading zeros, or a domain name
  of letters, digits, `-` and `_` labels (a trailing dot kept, as browsers keep it). Non-ASCII names are converted
  with IDNA (UTS #46, non-transitional, as WHATWG does) and judged by their punycode (`xn--`) form. Anything a
  browser would read as an IPv4 address in another form (`2130706433`, `0x7f.1`, `127.1`, `0177.0.0.1`) is
  refused, as is percent-encoding in the host;
- a port of 1 to 65535 without leading zeros; the scheme's default port counts as no port, as for browsers.

A redirect URI may also use an app's own scheme (`parse_app_url`, RFC 8252 §7.1): Cursor registers
`cursor://anysphere.cursor-mcp/oauth/callback`, VS Code `vscode://…`, and a mobile app `com.example.app:/callback`.
The operating system hands such a URL to the app that claimed the scheme; no browser fetches it. The same characters
are refused, the scheme is lower case and none that browsers give a meaning of their own (`javascript`, `data`,
`file`, …), and its authority, if any, is a plain lower-case name. The page and the device show the scheme with it
(`cursor://anysphere.cursor-mcp`): a name after an app's scheme is the app's choice, not a host.

e2e/test_redirect_uri_parsing.py checks, with generated URLs, that the host judged here is the host Node's
`new URL()` sees for every URL this module accepts.
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from dataclasses import dataclass

import idna

DEFAULT_PORTS = {"http": 80, "https": 443}
# Schemes that browsers give a meaning of their own (WHATWG's special and local schemes, script, and their
# wrappers): never an app's private-use scheme.
NOT_PRIVATE_USE = frozenset(
    {"http", "https", "ws", "wss", "ftp", "file", "about", "blob", "data", "javascript", "vbscript"}
    | {"filesystem", "view-source", "jar"}
)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
_LABEL = re.compile(r"^[a-z0-9_-]{1,63}$")
_DOTTED_QUAD = re.compile(r"^(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})\.(0|[1-9][0-9]{0,2})$")
_NUMBER_LABEL = re.compile(r"^([0-9]+|0x[0-9a-f]*)$")  # WHATWG "ends in a number": the host is parsed as IPv4
_PORT = re.compile(r"^[1-9][0-9]{0,4}$")
_APP_AUTHORITY = re.compile(r"^[a-z0-9._-]*$")


class UnsafeUrl(ValueError):
    """A URL this server will not judge, because a browser could read it differently (the message says why)."""


@dataclass(frozen=True)
class BrowserUrl:
    """A URL `parse` accepted. `host` is what a browser's `URL.hostname` is: lower case, ASCII (punycode for
    international names), IPv6 in brackets in its shortest form."""

    scheme: str
    host: str
    port: int | None  # None when absent or the scheme's default
    path: str  # as written, "" when absent
    query: str | None  # as written, without "?"; None when absent
    fragment: str | None

    @property
    def is_ip_literal(self) -> bool:
        return self.host.startswith("[") or bool(_DOTTED_QUAD.match(self.host))

    def without_port(self) -> str:
        """The URL re-serialised without its port: what must be equal for two loopback redirect URIs to match."""
        query = "" if self.query is None else "?" + self.query
        fragment = "" if self.fragment is None else "#" + self.fragment
        return f"{self.scheme}://{self.host}{self.path or '/'}{query}{fragment}"


@dataclass(frozen=True)
class AppUrl:
    """A URL with an app's private-use scheme (RFC 8252 §7.1) that `parse_app_url` accepted. `authority` is what
    follows `//` ("" when nothing does): a name the app chose, not a host anyone goes to."""

    scheme: str
    authority: str
    fragment: str | None

    @property
    def shown(self) -> str:
        """What people are shown: the scheme always, so that `evilapp://bank.example/cb` never reads as a trip to
        bank.example (`cursor://anysphere.cursor-mcp`, or `com.example.app:` without an authority)."""
        return f"{self.scheme}://{self.authority}" if self.authority else f"{self.scheme}:"


def _character_problem(url: str) -> str | None:
    for char in url:
        if char == "\\":
            return "must not contain a backslash (browsers read it as a slash)"
        if char == "@":
            return "must not contain '@' (user information, or what a browser would take for it)"
        # Cc control (NUL, CR, LF, tab, DEL, C1), Cf format (bidi overrides, zero-width, soft hyphen), Cs, Co, Cn;
        # Z* separators (spaces of every width, line and paragraph separators).
        category = unicodedata.category(char)
        if category[0] in "CZ" or char.isspace():
            return "must not contain control, formatting or whitespace characters"
    return None


def _ipv6(text: str) -> str:
    if not text or not all(char in "0123456789abcdefABCDEF:." for char in text):  # no zone (`%eth0`): WHATWG has none
        raise UnsafeUrl("has a host that is not a valid IPv6 address")
    try:
        address = ipaddress.IPv6Address(text)
    except ValueError:
        raise UnsafeUrl("has a host that is not a valid IPv6 address") from None
    return "[" + _serialise_ipv6(int(address)) + "]"


def _serialise_ipv6(value: int) -> str:
    """WHATWG URL §3.6 (IPv6 serializer): the first longest run of two or more zero pieces becomes `::`."""
    pieces = [(value >> (112 - 16 * i)) & 0xFFFF for i in range(8)]
    best_start, best_length, start = -1, 1, -1
    for i, piece in enumerate([*pieces, 1]):
        if piece == 0 and start < 0:
            start = i
        elif piece != 0 and start >= 0:
            if i - start > best_length:
                best_start, best_length = start, i - start
            start = -1
    if best_start < 0:
        return ":".join(f"{piece:x}" for piece in pieces)
    head = ":".join(f"{piece:x}" for piece in pieces[:best_start])
    tail = ":".join(f"{piece:x}" for piece in pieces[best_start + best_length :])
    return f"{head}::{tail}"


def _domain(text: str) -> str:
    if "%" in text:
        raise UnsafeUrl("must not percent-encode its host")
    if "[" in text or "]" in text:
        raise UnsafeUrl("has a host with brackets that is not an IPv6 address")
    if text.isascii():
        host = text.lower()
    else:
        try:  # UTS #46 non-transitional processing, then IDNA2008 validity: what WHATWG's domain-to-ASCII does
            host = idna.encode(text, uts46=True, transitional=False).decode("ascii")
        except (idna.IDNAError, UnicodeError, ValueError):
            raise UnsafeUrl("has an international host name that is not valid IDNA") from None
    labels = host.split(".")
    if labels[-1] == "" and len(labels) > 1:
        labels = labels[:-1]  # one trailing dot: a fully qualified name, kept as browsers keep it
    if _NUMBER_LABEL.match(labels[-1]):
        if not _DOTTED_QUAD.match(host) or any(int(part) > 255 for part in host.split(".")):
            raise UnsafeUrl("has an IPv4 host that is not written as four decimal numbers (like 127.0.0.1)")
        return host
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise UnsafeUrl("has a host name that is not letters, digits, '-' and '_' in dot-separated labels")
    for label in labels:
        if label.startswith("xn--"):
            try:
                if idna.encode(idna.decode(label)).decode("ascii") != label:
                    raise UnsafeUrl("has a punycode (xn--) label that is not in its canonical form")
            except (idna.IDNAError, UnicodeError):
                raise UnsafeUrl("has a punycode (xn--) label that is not valid IDNA") from None
    return host


def _scheme_and_rest(url: str) -> tuple[str, str]:
    """The lower-case scheme and what follows its colon, once the characters are known to be safe."""
    if problem := _character_problem(url):
        raise UnsafeUrl(problem)
    match = _SCHEME.match(url)
    if match is None:
        raise UnsafeUrl("is not an absolute URL")
    scheme = match.group(1)
    if scheme != scheme.lower():
        raise UnsafeUrl("must have a lower-case scheme")
    return scheme, url[match.end() :]


def parse(url: str) -> BrowserUrl:
    """The URL as a browser reads it; raises `UnsafeUrl` when it is outside the subset described above."""
    scheme, rest = _scheme_and_rest(url)
    if scheme not in DEFAULT_PORTS:
        raise UnsafeUrl("must use http or https")
    if not rest.startswith("//") or rest[2:3] in ("", "/", "?", "#"):
        raise UnsafeUrl("must have '//' and a host after the scheme")
    rest = rest[2:]
    end = min((i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest))
    authority, rest = rest[:end], rest[end:]
    port_text: str | None
    if authority.startswith("["):
        close = authority.find("]")
        if close < 0:
            raise UnsafeUrl("has an unterminated IPv6 address")
        host, after = _ipv6(authority[1:close]), authority[close + 1 :]
        if after and not after.startswith(":"):
            raise UnsafeUrl("has text after its IPv6 address")
        port_text = after[1:] if after else None
    else:
        host_text, colon, port_text_or_empty = authority.partition(":")
        host, port_text = _domain(host_text), (port_text_or_empty if colon else None)
    port: int | None = None
    if port_text is not None:
        if not _PORT.match(port_text) or int(port_text) > 65535:
            raise UnsafeUrl("has a port that is not a number from 1 to 65535 (without leading zeros)")
        port = int(port_text)
        if port == DEFAULT_PORTS[scheme]:
            port = None
    fragment: str | None = None
    if "#" in rest:
        rest, fragment = rest.split("#", 1)
    query: str | None = None
    if "?" in rest:
        rest, query = rest.split("?", 1)
    return BrowserUrl(scheme=scheme, host=host, port=port, path=rest, query=query, fragment=fragment)


def parse_app_url(url: str) -> AppUrl:
    """A URL with an app's private-use scheme; raises `UnsafeUrl` when it is not one this server accepts."""
    scheme, rest = _scheme_and_rest(url)
    if scheme in NOT_PRIVATE_USE:
        raise UnsafeUrl("must use http, https or an app's own scheme")
    rest, hash_sign, fragment = rest.partition("#")
    if not rest.split("?")[0].strip("/"):
        raise UnsafeUrl("must have more than its scheme")
    authority = rest[2:].split("/")[0].split("?")[0] if rest.startswith("//") else ""
    if not _APP_AUTHORITY.match(authority):
        raise UnsafeUrl("must have a plain lower-case name after an app's scheme and '//'")
    return AppUrl(scheme=scheme, authority=authority, fragment=fragment if hash_sign else None)


def parse_redirect_target(url: str) -> BrowserUrl | AppUrl:
    """A redirect URI read as `parse` reads http(s) URLs, or as `parse_app_url` reads any other scheme."""
    match = _SCHEME.match(url)
    if match is not None and match.group(1).lower() not in DEFAULT_PORTS:
        return parse_app_url(url)
    return parse(url)


def display_host(url: str) -> str:
    """The host a browser would go to, for people to read (punycode for international names, IPv6 in brackets, as
    `URL.hostname`); for an app's scheme, `AppUrl.shown`. For a URL neither accepts (possibly stored before issue 9),
    the authority if it is plain ASCII, else the scheme."""
    try:
        target = parse_redirect_target(url)
    except UnsafeUrl:
        pass
    else:
        return target.shown if isinstance(target, AppUrl) else target.host
    scheme = _SCHEME.match(url)
    if scheme is None:
        return "an address this server cannot read"
    name = scheme.group(1).lower()
    if name in DEFAULT_PORTS or _character_problem(url):
        return name
    authority = url[scheme.end() :].removeprefix("//").split("/")[0].split("?")[0].split("#")[0].lower()
    return authority if authority and re.fullmatch(r"[a-z0-9._-]+", authority) else name


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "[::1]", "localhost"})


def is_loopback_http(url: BrowserUrl) -> bool:
    """An `http` URL on a loopback host (RFC 8252 §7.3): the only place plain http is allowed for a redirect URI."""
    return url.scheme == "http" and url.host in LOOPBACK_HOSTS
