"""The SSRF-safe fetch of a Client ID Metadata Document (draft-ietf-oauth-client-id-metadata-document-02 §5, §8.6,
§8.7; MCP 2026-07-28 security considerations, "Authorization Server Abuse Protection").

One GET per call, and only this:
- the host name is resolved here, once, and every address it resolves to is vetted (`addresses.refusal`): one
  special-use address among them refuses the fetch (a name that resolves to a public and a private address is a
  rebinding attempt, not a choice);
- the connection goes to a vetted address itself (a network backend that ignores the name httpcore hands it), so
  no second lookup can be answered differently; the Host header, TLS SNI and the certificate check keep the name;
- port 443 only, unless the host is in `VOUCHSIM_CIMD_ALLOW_HOSTS`, which also waives the address vetting (a
  testbed serving its document on loopback);
- HTTP/1.1 over TLS, no cookies, no credentials, `Accept: application/json`, `Accept-Encoding: identity`;
- no redirect is followed (§5: MUST NOT);
- short connect and read timeouts and one deadline for the whole fetch (DNS included);
- at most `max_bytes` are read (§8.7 recommends 5 KB): a larger Content-Length is refused before reading, and a
  body without one is cut off while streaming.
What counts as success (200, application/json or application/*+json) is checked here; what the JSON says is
`document.py`'s business.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import anyio
import certifi
import httpcore

from vouchsim.server.oauth.cimd import errors
from vouchsim.server.oauth.cimd.addresses import IPAddress, refusal
from vouchsim.server.oauth.cimd.urls import DEFAULT_PORT, ClientIdUrl

log = logging.getLogger("vouchsim.cimd")

USER_AGENT = "Vouchsim (client ID metadata document fetcher)"
_JSON_MEDIA_TYPE = re.compile(r"^application/(?:json|[a-z0-9!#$&^_.-]+\+json)$")

Resolver = Callable[[str, int], Awaitable[Sequence[IPAddress]]]


async def system_resolver(host: str, port: int) -> list[IPAddress]:
    """The host's addresses from the system resolver, in its order, without repeats."""
    infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    found: dict[IPAddress, None] = {}
    for _family, _type, _proto, _name, sockaddr in infos:
        found[ipaddress.ip_address(sockaddr[0])] = None
    return list(found)


@dataclass(frozen=True)
class FetchLimits:
    connect_timeout: float = 2.0  # seconds, per connection attempt (TCP and TLS)
    read_timeout: float = 5.0  # seconds without a byte from the server
    total_timeout: float = 8.0  # seconds for the whole fetch, DNS included
    max_bytes: int = 5 * 1024  # draft §8.7: "The recommended maximum size to read is 5 kilobytes."


@dataclass(frozen=True)
class FetchedDocument:
    """A 200 response with a JSON media type and a body within the size cap."""

    url: str
    body: bytes
    headers: tuple[tuple[str, str], ...]  # names in lower case, in the order received

    def header(self, name: str) -> list[str]:
        return [value for key, value in self.headers if key == name]


class CaFileError(ValueError):
    """`VOUCHSIM_CIMD_CA_FILE` cannot be read as a PEM bundle of CA certificates."""


def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """The public CAs (certifi's bundle, as httpcore and httpx trust them, without SSL_CERT_FILE or SSL_CERT_DIR),
    plus the CAs in `ca_file` when set (a test server's own CA). Not through httpx, which this server needs for
    nothing else: importing it (and the rich and pygments of its command line) costs ~8 MiB of resident memory."""
    if not ca_file:
        return _public_tls_context()
    context = ssl.create_default_context(cafile=certifi.where())
    try:
        context.load_verify_locations(cafile=ca_file)
    except (OSError, ssl.SSLError) as error:
        reason = getattr(error, "strerror", None) or error
        raise CaFileError(f"cannot load the CA file {ca_file} (VOUCHSIM_CIMD_CA_FILE): {reason}") from None
    return context


@functools.cache
def _public_tls_context() -> ssl.SSLContext:
    """Built once per process, on the first fetch: loading certifi's bundle costs about 33 ms of CPU, paid by every
    start (and every test's app) before, though most runs never fetch a document. Never changed once built."""
    return ssl.create_default_context(cafile=certifi.where())


def normalise_allow_hosts(entries: Iterable[str]) -> frozenset[str]:
    """`host` or `host:port` entries, host in lower case (IPv6 in brackets), as `ClientIdUrl.host_key` spells them."""
    return frozenset(entry.strip().lower() for entry in entries if entry.strip())


class _VettedNetwork(httpcore.AsyncNetworkBackend):
    """httpcore's network, except that a TCP connection for `host` goes to the addresses vetted for it."""

    def __init__(self, host: str, addresses: Sequence[IPAddress]) -> None:
        self._host = host
        self._addresses = addresses
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        if host != self._host:  # httpcore only ever connects to the request's origin; anything else is a bug
            raise httpcore.ConnectError(f"unexpected connection to {host}")
        failure: Exception | None = None
        for address in self._addresses:
            try:
                return await self._inner.connect_tcp(
                    str(address), port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as error:
                failure = error
        raise failure or httpcore.ConnectError("no address to connect to")

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 (httpcore's interface)
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are never used for metadata documents")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class DocumentFetcher:
    """Fetches metadata documents under the rules above. Stateless between calls: no pool, no cookies."""

    def __init__(
        self,
        *,
        ssl_context: ssl.SSLContext | None = None,
        allow_hosts: Collection[str] = (),
        resolver: Resolver = system_resolver,
        limits: FetchLimits = FetchLimits(),
        allowed_ports: Collection[int] = (DEFAULT_PORT,),
    ) -> None:
        self._ssl_context = ssl_context  # None: the public CAs, loaded on the first fetch
        self._allow_hosts = normalise_allow_hosts(allow_hosts)
        self._resolve = resolver
        self.limits = limits
        self._allowed_ports = frozenset(allowed_ports)

    def is_allowed_host(self, target: ClientIdUrl) -> bool:
        """Whether `VOUCHSIM_CIMD_ALLOW_HOSTS` names this host (with this port, or with none)."""
        bare = target.host_key.rsplit(":", 1)[0]
        return target.host_key in self._allow_hosts or bare in self._allow_hosts

    async def fetch(self, target: ClientIdUrl) -> FetchedDocument:
        allowed = self.is_allowed_host(target)
        if not allowed and not target.is_ip_literal:
            self._check_port(target)  # before any DNS lookup
        try:
            with anyio.fail_after(self.limits.total_timeout):
                # An address literal is vetted before its port: a loopback or private address is refused as such.
                addresses = await self._addresses(target, allowed)
                if not allowed:
                    self._check_port(target)
                return await self._get(target, addresses)
        except (TimeoutError, httpcore.TimeoutException):
            raise errors.FetchTimedOut(
                f"The metadata document at {target.url} did not arrive within the time allowed."
            ) from None
        except (httpcore.NetworkError, httpcore.ProtocolError) as error:
            log.info("CIMD fetch of %s failed: %r", target.url, error)
            reason = str(error)[:200] or "connection failed"
            raise errors.FetchFailed(f"The metadata document at {target.url} could not be fetched: {reason}.") from None

    def _check_port(self, target: ClientIdUrl) -> None:
        if target.port not in self._allowed_ports:
            ports = ", ".join(str(port) for port in sorted(self._allowed_ports))
            raise errors.PortRefused(
                f"The client_id {target.url} names port {target.port}; this server fetches metadata documents "
                f"from port {ports} only (a testbed can allow the host with VOUCHSIM_CIMD_ALLOW_HOSTS)."
            )

    async def _addresses(self, target: ClientIdUrl, allowed: bool) -> Sequence[IPAddress]:
        if target.is_ip_literal:
            addresses: Sequence[IPAddress] = [ipaddress.ip_address(target.host)]
        else:
            try:
                addresses = await self._resolve(target.host, target.port)
            except OSError as error:
                log.info("CIMD: cannot resolve %s: %s", target.host, error)
                raise errors.FetchFailed(f"The host of the client_id {target.url} cannot be resolved.") from None
            if not addresses:
                raise errors.FetchFailed(f"The host of the client_id {target.url} has no address.")
        if allowed:
            return addresses
        for address in addresses:
            if why := refusal(address):
                log.warning("CIMD: refused %s: %s resolves to %s, %s", target.url, target.host, address, why)
                raise errors.AddressRefused(
                    f"The host of the client_id {target.url} resolves to a {why} address, which this server does "
                    "not fetch from (draft section 8.6; a testbed can allow the host with VOUCHSIM_CIMD_ALLOW_HOSTS)."
                )
        return addresses

    async def _get(self, target: ClientIdUrl, addresses: Sequence[IPAddress]) -> FetchedDocument:
        limits = self.limits
        timeouts = {
            "connect": limits.connect_timeout,
            "read": limits.read_timeout,
            "write": limits.read_timeout,
            "pool": limits.connect_timeout,
        }
        headers = [
            ("Host", target.authority),
            ("Accept", "application/json"),
            ("Accept-Encoding", "identity"),
            ("User-Agent", USER_AGENT),
        ]
        url = httpcore.URL(scheme="https", host=target.host, port=target.port, target=target.target)
        network = _VettedNetwork(target.host, addresses)
        async with (
            httpcore.AsyncConnectionPool(
                ssl_context=self._ssl_context or tls_context(),
                max_connections=1,
                http1=True,
                http2=False,
                network_backend=network,
            ) as pool,
            pool.stream("GET", url, headers=headers, extensions={"timeout": timeouts}) as response,
        ):
            received = tuple(
                (name.decode("latin-1").lower(), value.decode("latin-1")) for name, value in response.headers
            )
            fetched = FetchedDocument(target.url, b"", received)
            _check_response(target, response.status, fetched, limits.max_bytes)
            body = bytearray()
            async for chunk in response.aiter_stream():
                body += chunk
                if len(body) > limits.max_bytes:
                    raise _too_large(target, limits.max_bytes)
        log.info("CIMD: fetched %s (%d bytes)", target.url, len(body))
        return FetchedDocument(target.url, bytes(body), received)


def _too_large(target: ClientIdUrl, max_bytes: int) -> errors.DocumentTooLarge:
    return errors.DocumentTooLarge(
        f"The metadata document at {target.url} is larger than {max_bytes} bytes, the most this server reads "
        "(draft section 8.7)."
    )


def _check_response(target: ClientIdUrl, status: int, fetched: FetchedDocument, max_bytes: int) -> None:
    if 300 <= status < 400:
        location = (fetched.header("location") or ["(no Location)"])[0][:200]
        raise errors.RedirectRefused(
            f"The metadata document at {target.url} answered {status} towards {location}; redirects are not "
            "followed (draft section 5): serve the document at the client_id URL itself."
        )
    if status != 200:
        raise errors.UnexpectedStatus(f"The metadata document at {target.url} answered {status}, not 200 OK.")
    types = fetched.header("content-type")
    media_type = types[0].split(";", 1)[0].strip().lower() if len(types) == 1 else ""
    if not _JSON_MEDIA_TYPE.match(media_type):
        shown = ", ".join(types)[:100] or "none"
        raise errors.WrongContentType(
            f"The metadata document at {target.url} is served as {shown}; it must be application/json "
            "(or application/*+json)."
        )
    encodings = [value.strip().lower() for value in fetched.header("content-encoding")]
    if any(encoding not in ("", "identity") for encoding in encodings):
        raise errors.WrongContentType(
            f"The metadata document at {target.url} is served compressed ({', '.join(encodings)[:60]}); this server "
            "asks for and reads only uncompressed documents."
        )
    lengths = fetched.header("content-length")
    if lengths and lengths[0].strip().isdigit() and int(lengths[0]) > max_bytes:
        raise _too_large(target, max_bytes)
