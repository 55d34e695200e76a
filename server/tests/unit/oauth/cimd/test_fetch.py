"""The SSRF-safe fetcher against a real https server on loopback (its CA from trustme, its host allowed through
the allow-hosts setting), and the refusals that happen before any connection."""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Sequence

import pytest

from server.tests.cimd_support import TEST_HOST, DocumentServer, document
from vouchsim.server.oauth.cimd import errors
from vouchsim.server.oauth.cimd.addresses import IPAddress
from vouchsim.server.oauth.cimd.fetch import CaFileError, DocumentFetcher, FetchLimits, tls_context
from vouchsim.server.oauth.cimd.urls import parse_client_id_url

pytestmark = pytest.mark.anyio

LIMITS = FetchLimits(connect_timeout=2, read_timeout=0.3, total_timeout=5, max_bytes=5 * 1024)
LOOPBACK = ipaddress.ip_address("127.0.0.1")


class Resolver:
    """DNS as a test wants it: names to addresses, and a record of every lookup."""

    def __init__(self, table: dict[str, Sequence[str]]) -> None:
        self.table = table
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int) -> list[IPAddress]:
        self.lookups.append(host)
        if host not in self.table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [ipaddress.ip_address(address) for address in self.table[host]]


def fetcher(
    server: DocumentServer, *, allow: Sequence[str] | None = None, resolver: Resolver | None = None, **options: object
) -> DocumentFetcher:
    return DocumentFetcher(
        ssl_context=tls_context(str(server.ca_file)),
        allow_hosts=[server.host_key] if allow is None else allow,
        resolver=resolver or Resolver({}),
        limits=LIMITS,
        **options,  # type: ignore[arg-type]
    )


async def test_a_document_is_fetched_with_plain_json_headers(document_server: DocumentServer) -> None:
    url = document_server.url("/client.json")
    document_server.serve("/client.json", document(url), headers={"Cache-Control": "max-age=600"})
    fetched = await fetcher(document_server).fetch(parse_client_id_url(url))
    assert fetched.url == url
    assert b'"client_name": "Example MCP Client"' in fetched.body
    assert fetched.header("cache-control") == ["max-age=600"]
    ((path, headers),) = document_server.requests
    assert path == "/client.json"
    assert headers["host"] == document_server.host_key
    assert headers["accept"] == "application/json"
    assert headers["accept-encoding"] == "identity"
    assert "cookie" not in headers and "authorization" not in headers


async def test_a_structured_json_media_type_with_parameters_is_accepted(document_server: DocumentServer) -> None:
    url = document_server.url("/c")
    document_server.serve("/c", document(url), content_type="application/cimd+json; charset=utf-8")
    assert (await fetcher(document_server).fetch(parse_client_id_url(url))).body


async def test_a_host_allowed_without_a_port_is_allowed_on_every_port(document_server: DocumentServer) -> None:
    url = document_server.url("/c")
    document_server.serve("/c", document(url))
    assert (await fetcher(document_server, allow=["127.0.0.1"]).fetch(parse_client_id_url(url))).body


async def test_a_redirect_is_not_followed(document_server: DocumentServer) -> None:
    url = document_server.url("/old")
    document_server.serve("/new", document(url))
    document_server.serve("/old", status=302, headers={"Location": document_server.url("/new")})
    with pytest.raises(errors.RedirectRefused) as refused:
        await fetcher(document_server).fetch(parse_client_id_url(url))
    assert "answered 302 towards https://127.0.0.1" in refused.value.description
    assert document_server.fetches("/new") == 0


@pytest.mark.parametrize("status", [404, 500, 204, 201])
async def test_anything_but_200_is_an_error(document_server: DocumentServer, status: int) -> None:
    url = document_server.url("/c")
    document_server.serve("/c", document(url), status=status)
    with pytest.raises(errors.UnexpectedStatus) as refused:
        await fetcher(document_server).fetch(parse_client_id_url(url))
    assert f"answered {status}, not 200 OK" in refused.value.description


async def test_a_missing_document_is_a_404(document_server: DocumentServer) -> None:
    with pytest.raises(errors.UnexpectedStatus, match="404"):
        await fetcher(document_server).fetch(parse_client_id_url(document_server.url("/nothing-here")))


@pytest.mark.parametrize("content_type", ["text/html", "text/plain", "application/jsonp", "application/xml", None])
async def test_a_document_not_served_as_json_is_refused(document_server: DocumentServer, content_type: str) -> None:
    url = document_server.url("/c")
    document_server.serve("/c", document(url), content_type=content_type)
    with pytest.raises(errors.WrongContentType, match="must be application/json"):
        await fetcher(document_server).fetch(parse_client_id_url(url))


async def test_a_compressed_document_is_refused(document_server: DocumentServer) -> None:
    url = document_server.url("/c")
    document_server.serve("/c", document(url), headers={"Content-Encoding": "gzip"})
    with pytest.raises(errors.WrongContentType, match="compressed"):
        await fetcher(document_server).fetch(parse_client_id_url(url))


async def test_a_document_announced_too_large_is_refused_before_reading(document_server: DocumentServer) -> None:
    url = document_server.url("/c")
    document_server.serve("/c", b"{" + b" " * 6000 + b"}")
    with pytest.raises(errors.DocumentTooLarge, match="larger than 5120 bytes"):
        await fetcher(document_server).fetch(parse_client_id_url(url))


async def test_a_streamed_document_is_cut_off_at_the_cap(document_server: DocumentServer) -> None:
    url = document_server.url("/c")
    document_server.serve("/c", b" " * 1024, chunks=200)  # 200 KiB, chunked, no Content-Length
    with pytest.raises(errors.DocumentTooLarge):
        await fetcher(document_server).fetch(parse_client_id_url(url))
    document_server.serve("/c", b" " * 1024, chunks=5)  # exactly the cap is fine
    assert len((await fetcher(document_server).fetch(parse_client_id_url(url))).body) == 5 * 1024


async def test_a_server_that_does_not_answer_times_out(document_server: DocumentServer) -> None:
    url = document_server.url("/slow")
    document_server.serve("/slow", document(url), hold=True)
    with pytest.raises(errors.FetchTimedOut, match="did not arrive"):
        await fetcher(document_server).fetch(parse_client_id_url(url))


async def test_a_closed_port_is_unreachable(document_server: DocumentServer) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(errors.FetchFailed, match="could not be fetched"):
        await fetcher(document_server, allow=[f"127.0.0.1:{port}"]).fetch(
            parse_client_id_url(f"https://127.0.0.1:{port}/c")
        )


async def test_the_certificate_must_be_trusted(document_server: DocumentServer) -> None:
    url = document_server.url("/c")
    document_server.serve("/c", document(url))
    untrusting = DocumentFetcher(ssl_context=tls_context(), allow_hosts=[document_server.host_key], limits=LIMITS)
    with pytest.raises(errors.FetchFailed, match="CERTIFICATE_VERIFY_FAILED"):
        await untrusting.fetch(parse_client_id_url(url))


def test_an_unusable_ca_file_is_one_clear_error() -> None:
    with pytest.raises(CaFileError, match=r"cannot load the CA file /nonexistent\.pem"):
        tls_context("/nonexistent.pem")


# -- addresses: the host is resolved here, every address vetted, the connection made to a vetted one -------------


async def test_a_private_address_host_is_refused_without_the_allow_setting(document_server: DocumentServer) -> None:
    for url in ("https://127.0.0.1/c", "https://10.0.0.7/c", "https://[::1]/c", "https://[::ffff:127.0.0.1]/c"):
        with pytest.raises(errors.AddressRefused, match="VOUCHSIM_CIMD_ALLOW_HOSTS"):
            await fetcher(document_server, allow=[]).fetch(parse_client_id_url(url))
    assert document_server.requests == []


async def test_the_loopback_test_server_is_refused_without_the_allow_setting(document_server: DocumentServer) -> None:
    url = document_server.url("/c")
    document_server.serve("/c", document(url))
    lenient_port = fetcher(document_server, allow=[], allowed_ports={document_server.port})
    with pytest.raises(errors.AddressRefused, match="loopback"):
        await lenient_port.fetch(parse_client_id_url(url))
    assert document_server.requests == []


async def test_only_port_443_unless_the_host_is_allowed(document_server: DocumentServer) -> None:
    with pytest.raises(errors.PortRefused, match="port 8443"):
        await fetcher(document_server, allow=[]).fetch(parse_client_id_url("https://app.example.com:8443/c"))


async def test_a_name_resolving_to_a_private_address_is_refused(document_server: DocumentServer) -> None:
    """DNS rebinding: a public-looking name whose record points inside."""
    url = document_server.url("/c", host=TEST_HOST)
    document_server.serve("/c", document(url))
    for addresses in (["127.0.0.1"], ["169.254.169.254"], ["93.184.215.14", "10.0.0.1"]):
        resolver = Resolver({TEST_HOST: addresses})
        strict = fetcher(document_server, allow=[], resolver=resolver, allowed_ports={document_server.port})
        with pytest.raises(errors.AddressRefused):
            await strict.fetch(parse_client_id_url(url))
        assert resolver.lookups == [TEST_HOST]
    assert document_server.requests == []


async def test_the_connection_goes_to_the_vetted_address_and_tls_checks_the_name(
    document_server: DocumentServer,
) -> None:
    """`cimd.test` exists only in the test's resolver: reaching the server proves the fetcher connected to the
    address it resolved (once), and the certificate for the name was checked, with the name in the Host header."""
    url = document_server.url("/c", host=TEST_HOST)
    document_server.serve("/c", document(url))
    resolver = Resolver({TEST_HOST: ["127.0.0.1"]})
    allowed = fetcher(document_server, allow=[f"{TEST_HOST}:{document_server.port}"], resolver=resolver)
    assert (await allowed.fetch(parse_client_id_url(url))).body
    assert resolver.lookups == [TEST_HOST]
    assert document_server.requests[0][1]["host"] == f"{TEST_HOST}:{document_server.port}"

    # The same address under a name the certificate does not carry: refused by TLS, whatever the address.
    other = document_server.url("/c", host="other.test")
    impostor = fetcher(
        document_server, allow=[f"other.test:{document_server.port}"], resolver=Resolver({"other.test": ["127.0.0.1"]})
    )
    with pytest.raises(errors.FetchFailed, match="CERTIFICATE_VERIFY_FAILED"):
        await impostor.fetch(parse_client_id_url(other))


async def test_a_name_that_does_not_resolve(document_server: DocumentServer) -> None:
    with pytest.raises(errors.FetchFailed, match="cannot be resolved"):
        await fetcher(document_server, allow=[]).fetch(parse_client_id_url("https://nowhere.test/c"))
