"""client_id URL → validated metadata, end to end against the real https document server: the failures the
authorization page and the token endpoint will show, the cache (hit, expiry, no-store, bounds), invalid documents
never cached, one fetch for concurrent requests, and the per-host rate limit."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from server.tests.cimd_support import DocumentServer, document
from vouchsim.server.core.clock import FrozenClock
from vouchsim.server.oauth.cimd import errors, metadata_resolver
from vouchsim.server.oauth.cimd.cache import HostRateLimiter
from vouchsim.server.oauth.cimd.fetch import DocumentFetcher, FetchLimits, tls_context
from vouchsim.server.oauth.cimd.resolver import MetadataResolver
from vouchsim.server.settings import Settings

pytestmark = pytest.mark.anyio

PATH = "/oauth/client-metadata.json"


def resolver(server: DocumentServer, clock: FrozenClock, **options: Any) -> MetadataResolver:
    fetcher = DocumentFetcher(
        ssl_context=tls_context(str(server.ca_file)),
        allow_hosts=[server.host_key],
        limits=FetchLimits(read_timeout=0.3, total_timeout=5),
    )
    return MetadataResolver(fetcher, clock, **options)


async def test_a_valid_document_is_resolved_then_served_from_the_cache_until_it_expires(
    document_server: DocumentServer, clock: FrozenClock
) -> None:
    url = document_server.url(PATH)
    document_server.serve(PATH, document(url), headers={"Cache-Control": "max-age=600"})
    documents = resolver(document_server, clock)
    first = await documents.resolve(url)
    assert first.metadata.client_name == "Example MCP Client"
    assert (first.fetched_at, (first.expires_at - first.fetched_at).total_seconds()) == (clock.now(), 600)
    clock.advance(599)
    assert await documents.resolve(url) == first  # a cache hit
    assert document_server.fetches(PATH) == 1
    clock.advance(1)
    document_server.serve(PATH, document(url, client_name="Renamed"), headers={"Cache-Control": "max-age=600"})
    assert (await documents.resolve(url)).metadata.client_name == "Renamed"
    assert document_server.fetches(PATH) == 2


@pytest.mark.parametrize(
    ("cache_control", "reused_for"), [("max-age=0", 300), ("max-age=31536000", 86400), (None, 300)]
)
async def test_the_lifetime_is_kept_within_bounds(
    document_server: DocumentServer, clock: FrozenClock, cache_control: str | None, reused_for: int
) -> None:
    url = document_server.url(PATH)
    headers = {"Cache-Control": cache_control} if cache_control else {}
    document_server.serve(PATH, document(url), headers=headers)
    resolved = await resolver(document_server, clock).resolve(url)
    assert (resolved.expires_at - resolved.fetched_at).total_seconds() == reused_for


async def test_a_no_store_document_is_fetched_every_time(document_server: DocumentServer, clock: FrozenClock) -> None:
    url = document_server.url(PATH)
    document_server.serve(PATH, document(url), headers={"Cache-Control": "no-store"})
    documents = resolver(document_server, clock)
    for _ in range(3):
        resolved = await documents.resolve(url)
        assert resolved.expires_at == resolved.fetched_at
    assert document_server.fetches(PATH) == 3


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        ({"status": 404}, errors.UnexpectedStatus),
        ({"status": 301, "headers": {"Location": "https://elsewhere.example/c"}}, errors.RedirectRefused),
        ({"body": "<html>hello</html>"}, errors.NotJson),
        ({"content_type": "text/html"}, errors.WrongContentType),
        ({"body": b" " * 6000}, errors.DocumentTooLarge),
        ({"hold": True}, errors.FetchTimedOut),
        ({"body": {"client_id": "https://someone-else.example/c", "client_name": "x"}}, errors.ClientIdMismatch),
        ({"change": {"client_secret": "hunter2hunter2"}}, errors.SecretPresent),
        ({"change": {"token_endpoint_auth_method": "client_secret_basic"}}, errors.SharedSecretAuthMethod),
        ({"change": {"redirect_uris": ["http://evil.example/cb"]}}, errors.InvalidRedirectUri),
        ({"change": {"client_name": None}}, errors.InvalidDocument),
    ],
)
async def test_a_bad_document_is_an_invalid_client_error_and_is_not_cached(
    document_server: DocumentServer, clock: FrozenClock, answer: dict[str, Any], error: type[errors.CimdError]
) -> None:
    url = document_server.url(PATH)
    change = answer.pop("change", {})
    body = answer.pop("body", document(url, **change))
    document_server.serve(PATH, body, headers={"Cache-Control": "max-age=3600", **answer.pop("headers", {})}, **answer)
    documents = resolver(document_server, clock)
    with pytest.raises(error) as refused:
        await documents.resolve(url)
    assert refused.value.code == "invalid_client"
    # Fixed at the source: the next request fetches again (nothing bad was cached).
    document_server.serve(PATH, document(url), headers={"Cache-Control": "max-age=3600"})
    assert (await documents.resolve(url)).client_id == url


async def test_a_stale_document_that_cannot_be_refetched_is_not_used(
    document_server: DocumentServer, clock: FrozenClock
) -> None:
    url = document_server.url(PATH)
    document_server.serve(PATH, document(url), headers={"Cache-Control": "max-age=300"})
    documents = resolver(document_server, clock)
    await documents.resolve(url)
    clock.advance(301)
    document_server.serve(PATH, status=503)
    with pytest.raises(errors.UnexpectedStatus):
        await documents.resolve(url)


async def test_an_invalid_client_id_url_is_refused_before_any_fetch(
    document_server: DocumentServer, clock: FrozenClock
) -> None:
    with pytest.raises(errors.InvalidClientIdUrl):
        await resolver(document_server, clock).resolve(document_server.url("/a/../c#x"))
    assert document_server.requests == []


async def test_concurrent_requests_share_one_fetch(document_server: DocumentServer, clock: FrozenClock) -> None:
    url = document_server.url(PATH)
    document_server.serve(PATH, document(url), headers={"Cache-Control": "max-age=600"})
    documents = resolver(document_server, clock)
    results: list[object] = []

    async def resolve() -> None:
        results.append(await documents.resolve(url))

    async with anyio.create_task_group() as group:
        for _ in range(5):
            group.start_soon(resolve)
    assert len(results) == 5 and all(result == results[0] for result in results)
    assert document_server.fetches(PATH) == 1
    assert documents._locks == {}  # no lock left behind


async def test_one_host_is_fetched_at_most_so_often(document_server: DocumentServer, clock: FrozenClock) -> None:
    documents = resolver(document_server, clock, limiter=HostRateLimiter(clock, limit=3, window=60))
    urls = [document_server.url(f"/client-{n}.json") for n in range(4)]
    for url in urls:
        document_server.serve(url.removeprefix(f"https://{document_server.host_key}"), document(url))
    for url in urls[:3]:
        await documents.resolve(url)
    with pytest.raises(errors.HostRateLimited):
        await documents.resolve(urls[3])
    assert len(document_server.requests) == 3
    clock.advance(60)
    assert (await documents.resolve(urls[3])).client_id == urls[3]


async def test_the_resolver_is_built_from_the_settings(document_server: DocumentServer, clock: FrozenClock) -> None:
    url = document_server.url(PATH)
    document_server.serve(PATH, document(url))
    settings = Settings(
        cimd_allow_hosts=f"localhost,{document_server.host_key}", cimd_ca_file=str(document_server.ca_file)
    )
    assert (await metadata_resolver(settings, clock).resolve(url)).client_id == url
    with pytest.raises(errors.AddressRefused):  # the same server, not allowed
        await metadata_resolver(Settings(cimd_ca_file=str(document_server.ca_file)), clock).resolve(
            document_server.url(PATH).replace(f":{document_server.port}", "")
        )
