"""Client identifier URLs (draft-ietf-oauth-client-id-metadata-document-02 §3): which client_ids are URLs, and
which of those this server will fetch.

A client identifier URL MUST use https, MUST NOT carry userinfo, MUST have a path, MUST NOT have `.`/`..` path
segments or a fragment, MAY carry a port, and SHOULD NOT carry a query. It is compared by simple string comparison
(RFC 3986 §6.2.1): nothing here normalises it; a URL that would need normalising is refused, not rewritten.

Policy where the draft leaves room (docs/cimd.md): a query is accepted (SHOULD NOT is the client's duty); a path
of `/` alone is refused (NOT RECOMMENDED by the draft, refused by the MCP SDKs too); the URL is ASCII, at most
`MAX_LENGTH` characters (the width of `oauth_clients.client_id`), with percent-escapes well formed.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from urllib.parse import unquote

from vouchsim.server.oauth.cimd.errors import InvalidClientIdUrl

MAX_LENGTH = 512  # oauth_clients.client_id is String(512)
DEFAULT_PORT = 443

# RFC 3986 §2: unreserved, reserved and '%' (checked for two hex digits below). Anything else (spaces, controls,
# non-ASCII, quotes, '<', '\\') would need percent-encoding, i.e. normalising, so it is refused.
_URI_CHARACTERS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
_DNS_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_PORT = re.compile(r"^[0-9]{1,5}$")


@dataclass(frozen=True)
class ClientIdUrl:
    """A client_id that passed the draft §3 rules, split the way the fetcher needs it."""

    url: str
    host: str  # as written, without brackets for IPv6: what DNS resolves and TLS verifies (SNI)
    port: int  # the port to connect to (443 unless written)
    authority: str  # host[:port] exactly as written: the Host header
    target: str  # path and query: the request target

    @property
    def host_key(self) -> str:
        """`host:port` in lower case, as `VOUCHSIM_CIMD_ALLOW_HOSTS` entries and the rate limit name it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host.lower()}:{self.port}"

    @property
    def is_ip_literal(self) -> bool:
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True


def looks_like_url(client_id: str) -> bool:
    """Whether `client_id` is meant as a URL (and so must pass `parse_client_id_url` or be refused).

    Ids this server issues (`vsc_…`) never contain "://"; pre-registered ids may be URLs too (draft §7.2).
    """
    return "://" in client_id[:16]


def _host_problem(host: str) -> str | None:
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return "its IPv6 host is not a valid IPv6 address"
        return None
    if not host:
        return "it has no host"
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return "its host is not a valid IPv4 address"
        return None
    if len(host) > 253 or not all(_DNS_LABEL.match(label) for label in host.split(".")):
        return "its host is not a valid DNS name"
    return None


def parse_client_id_url(client_id: str) -> ClientIdUrl:
    """The draft §3 checks, in order; raises `InvalidClientIdUrl` naming the first rule broken."""

    def refuse(why: str) -> InvalidClientIdUrl:
        return InvalidClientIdUrl(
            f"The client_id {client_id[:MAX_LENGTH]} is not a valid client identifier URL: {why}."
        )

    if len(client_id) > MAX_LENGTH:
        raise InvalidClientIdUrl(f"The client_id URL is longer than {MAX_LENGTH} characters.")
    if not _URI_CHARACTERS.match(client_id) or _PERCENT.search(client_id):
        raise refuse("it has characters a URL cannot carry unencoded (ASCII, RFC 3986 section 2)")
    if not client_id.startswith("https://"):
        raise refuse("it must start with https:// (draft section 3)")
    if "#" in client_id:
        raise refuse("it must not contain a fragment (draft section 3)")
    rest = client_id[len("https://") :]
    authority, slash, path_and_query = rest.partition("/")
    if "?" in authority:
        raise refuse("it must have a path (draft section 3)")
    if "@" in authority:
        raise refuse("it must not contain user information (draft section 3)")
    host, port_text = authority, ""
    if authority.startswith("["):
        closing = authority.find("]")
        if closing < 0:
            raise refuse("its IPv6 host is not closed by ']'")
        host, port_text = authority[: closing + 1], authority[closing + 1 :]
        if port_text and not port_text.startswith(":"):
            raise refuse("its authority is malformed")
        port_text = port_text[1:]
        if port_text == "" and authority.endswith(":"):
            raise refuse("its port is empty")
    elif ":" in authority:
        host, _, port_text = authority.partition(":")
        if port_text == "":
            raise refuse("its port is empty")
    if problem := _host_problem(host):
        raise refuse(problem)
    if port_text and (not _PORT.match(port_text) or not 0 < int(port_text) < 65536):
        raise refuse("its port is not a number between 1 and 65535")
    path = slash + path_and_query.partition("?")[0]
    if path in ("", "/"):
        raise refuse("it must have a path naming the document, not / alone (draft section 3)")
    if any(unquote(segment) in (".", "..") for segment in path.split("/")):
        raise refuse("it must not contain . or .. path segments (draft section 3)")
    return ClientIdUrl(
        url=client_id,
        host=host[1:-1] if host.startswith("[") else host,
        port=int(port_text) if port_text else DEFAULT_PORT,
        authority=authority,
        target=slash + path_and_query,
    )
