"""Client identifier URLs (draft-ietf-oauth-client-id-metadata-document-02 §3): accepted as written, never
normalised; each rule broken is named."""

from __future__ import annotations

import pytest

from vouchsim.server.oauth.cimd.errors import InvalidClientIdUrl
from vouchsim.server.oauth.cimd.urls import MAX_LENGTH, looks_like_url, parse_client_id_url


@pytest.mark.parametrize(
    ("url", "host", "port", "authority", "target"),
    [
        ("https://app.example.com/oauth/client.json", "app.example.com", 443, "app.example.com", "/oauth/client.json"),
        ("https://app.example.com:8443/c", "app.example.com", 8443, "app.example.com:8443", "/c"),
        ("https://app.example.com:443/c", "app.example.com", 443, "app.example.com:443", "/c"),
        ("https://app.example.com/c?v=2", "app.example.com", 443, "app.example.com", "/c?v=2"),  # SHOULD NOT only
        ("https://127.0.0.1:9443/client.json", "127.0.0.1", 9443, "127.0.0.1:9443", "/client.json"),
        ("https://[::1]:9443/client.json", "::1", 9443, "[::1]:9443", "/client.json"),
        ("https://App.Example.com/Client", "App.Example.com", 443, "App.Example.com", "/Client"),  # kept as written
        ("https://xn--bcher-kva.example/c%20d", "xn--bcher-kva.example", 443, "xn--bcher-kva.example", "/c%20d"),
    ],
)
def test_valid_urls_are_split_as_written(url: str, host: str, port: int, authority: str, target: str) -> None:
    parsed = parse_client_id_url(url)
    assert (parsed.url, parsed.host, parsed.port, parsed.authority, parsed.target) == (
        url,
        host,
        port,
        authority,
        target,
    )


def test_host_key_names_host_and_port_in_lower_case() -> None:
    assert parse_client_id_url("https://App.Example.com/c").host_key == "app.example.com:443"
    assert parse_client_id_url("https://[::1]:9443/c").host_key == "[::1]:9443"
    assert parse_client_id_url("https://[::1]:9443/c").is_ip_literal
    assert not parse_client_id_url("https://a.example/c").is_ip_literal


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://app.example.com/client.json", "https://"),
        ("HTTPS://app.example.com/client.json", "https://"),
        ("https://app.example.com", "path"),
        ("https://app.example.com/", "not / alone"),
        ("https://app.example.com?x=1", "path"),
        ("https://user:pw@app.example.com/c", "user information"),
        ("https://user@app.example.com/c", "user information"),
        ("https://app.example.com/c#frag", "fragment"),
        ("https://app.example.com/c#", "fragment"),
        ("https://app.example.com/a/./c", ". or .."),
        ("https://app.example.com/a/../c", ". or .."),
        ("https://app.example.com/a/%2e%2E/c", ". or .."),
        ("https://app.example.com/..", ". or .."),
        ("https://app.example.com:/c", "port is empty"),
        ("https://app.example.com:0/c", "between 1 and 65535"),
        ("https://app.example.com:65536/c", "between 1 and 65535"),
        ("https://app.example.com:44a/c", "between 1 and 65535"),
        ("https:///c", "no host"),
        ("https://-bad.example/c", "DNS name"),
        ("https://bad_host.example/c", "DNS name"),
        ("https://999.1.1.1/c", "IPv4"),
        ("https://[::1/c", "not closed"),
        ("https://[zz::1]/c", "IPv6"),
        ("https://[::1]x/c", "malformed"),
        ("https://app.example.com/c d", "characters"),
        ("https://app.example.com/caf\u00e9", "characters"),
        ("https://app.example.com/c%zz", "characters"),
        ("https://app.example.com/c\nx", "characters"),
        ("https://app.example.com/c\\d", "characters"),
        ("https://app.example.com/" + "a" * MAX_LENGTH, "longer than 512"),
    ],
)
def test_each_rule_broken_is_named(url: str, why: str) -> None:
    with pytest.raises(InvalidClientIdUrl) as refused:
        parse_client_id_url(url)
    assert why in refused.value.description
    assert refused.value.code == "invalid_client"


def test_descriptions_are_safe_for_error_description() -> None:
    with pytest.raises(InvalidClientIdUrl) as refused:
        parse_client_id_url('https://app.example.com/"quoted"\u2028')
    assert all(0x20 <= ord(c) <= 0x7E and c not in '"\\' for c in refused.value.description)


@pytest.mark.parametrize(
    ("client_id", "is_url"),
    [
        ("https://app.example.com/c", True),
        ("http://app.example.com/c", True),
        ("HTTPS://app.example.com/c", True),
        ("vsc_3q2xk0d8", False),
        ("acme-agent", False),
        ("urn:example:client", False),
    ],
)
def test_which_client_ids_are_meant_as_urls(client_id: str, is_url: bool) -> None:
    assert looks_like_url(client_id) is is_url
