"""Redirect URIs: what may be registered (RFC 7591 §2, OAuth 2.1 §2.3.1) and how a request matches one.

One parser judges them all, at registration (dynamic, the clients file, Client ID Metadata Documents) and at the
authorization endpoint: `server.core.browser_urls`, which reads a URL as a browser does or refuses it. A redirect
URI with `\\`, `@`, whitespace, control or formatting characters, an upper-case scheme, a host in an unusual form
or a fragment is refused wherever it appears (docs/security.md, "Redirect URIs as browsers read them"). Besides
`https` (and `http` on loopback hosts), a native app's own scheme is accepted (RFC 8252 §7.1: Cursor registers
`cursor://anysphere.cursor-mcp/oauth/callback`), but none that browsers give a meaning (`javascript:`, `data:`, …).

Matching is exact string comparison, with one exception from RFC 8252 §7.3: for a loopback redirect URI (`http`
on `127.0.0.1`, `[::1]` or `localhost`) the port may differ, because native clients (Claude Code, the MCP SDKs,
mcp-remote) listen on whatever port is free. Two loopback URIs match when their re-serialised forms without the
port are equal: same scheme, same host as a browser reads it, same path and query, character for character.

Public API (used by registration, the clients file, CIMD, the authorization endpoint and the pages):
`registration_problem(uri)`, `request_problem(uri)`, `matches(registered, requested)`, `is_loopback(uri)`,
`display_host(uri)`.
"""

from __future__ import annotations

from vouchsim.server.core import browser_urls
from vouchsim.server.core.browser_urls import AppUrl, BrowserUrl, UnsafeUrl, is_loopback_http

MAX_LENGTH = 2000  # characters; the longest URL every browser handles (and far beyond any real redirect URI)
# Per client. Neither Hydra nor Keycloak documents a cap; 20 is Microsoft Entra's classic limit and Outline's, far
# above any MCP client's one or two (20,000 were accepted before: issue 9, finding 4).
MAX_PER_CLIENT = 20


def _quoted(uri: object) -> str:
    shown = uri if not isinstance(uri, str) or len(uri) <= 120 else uri[:117] + "..."
    return repr(shown)


def _parse(uri: str) -> BrowserUrl | AppUrl | str:
    """The parsed URI, or why it cannot be used as a redirect URI (a phrase to follow "the redirect URI")."""
    if not isinstance(uri, str):
        return "must be a string"
    if len(uri) > MAX_LENGTH:
        return f"is longer than {MAX_LENGTH} characters"
    try:
        parsed = browser_urls.parse_redirect_target(uri)
    except UnsafeUrl as unsafe:
        return str(unsafe)
    if parsed.fragment is not None:
        return "must not contain a fragment (RFC 6749 section 3.1.2)"
    return parsed


def is_loopback(uri: str) -> bool:
    """True for a usable `http` redirect URI on a loopback host (RFC 8252 §7.3)."""
    parsed = _parse(uri)
    return isinstance(parsed, BrowserUrl) and is_loopback_http(parsed)


def _problem(uri: str) -> str | None:
    parsed = _parse(uri)
    if isinstance(parsed, str):
        return parsed
    if isinstance(parsed, BrowserUrl) and parsed.scheme == "http" and not is_loopback_http(parsed):
        return "must use https (plain http is allowed only for loopback hosts)"
    return None


def registration_problem(uri: str) -> str | None:
    """Why `uri` cannot be registered, or None when it can."""
    problem = _problem(uri)
    return None if problem is None else f"redirect URI {_quoted(uri)} {problem}"


def request_problem(uri: str) -> str | None:
    """Why `uri` cannot be used in an authorization request, whatever is registered, or None. The client's input is
    not repeated: the answer is shown on a page and must be a safe OAuth error description (RFC 6749 §5.2)."""
    problem = _problem(uri)
    return None if problem is None else f"The redirect URI {problem}."


def matches(registered: list[str] | tuple[str, ...], requested: str) -> bool:
    """Whether the requested redirect URI is one of the registered ones (exact, or loopback with another port)."""
    asked = _parse(requested)
    if isinstance(asked, str) or _problem(requested) is not None:
        return False
    if requested in registered:
        return True
    if not isinstance(asked, BrowserUrl) or not is_loopback_http(asked):
        return False
    for uri in registered:
        known = _parse(uri)
        if isinstance(known, BrowserUrl) and is_loopback_http(known) and known.without_port() == asked.without_port():
            return True
    return False


def display_host(uri: str) -> str:
    """The host a browser would go to, as people should read it (international names in punycode); for an app's
    scheme, the scheme with the name after it (`cursor://anysphere.cursor-mcp`)."""
    return browser_urls.display_host(uri)
