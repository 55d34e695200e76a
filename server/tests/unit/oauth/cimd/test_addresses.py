"""Special-use addresses are never connected to (draft-ietf-oauth-client-id-metadata-document-02 §8.6, RFC 6890):
every class, for IPv4 and IPv6, and IPv4 hidden inside IPv6."""

from __future__ import annotations

import ipaddress

import pytest

from vouchsim.server.oauth.cimd.addresses import embedded_ipv4, refusal


@pytest.mark.parametrize(
    ("address", "class_"),
    [
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("10.0.0.1", "private"),
        ("172.16.0.1", "private"),
        ("172.31.255.254", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "carrier-grade NAT"),
        ("100.127.255.254", "carrier-grade NAT"),
        ("127.0.0.1", "loopback"),
        ("127.255.255.254", "loopback"),
        ("169.254.169.254", "link-local"),
        ("192.0.0.8", "IETF protocol assignments"),
        ("192.0.2.10", "documentation"),
        ("198.51.100.7", "documentation"),
        ("203.0.113.200", "documentation"),
        ("198.18.0.1", "benchmarking"),
        ("192.88.99.1", "6to4 relay"),
        ("192.31.196.1", "AS112"),
        ("192.52.193.1", "AMT"),
        ("192.175.48.1", "AS112"),
        ("224.0.0.251", "multicast"),
        ("239.255.255.250", "multicast"),
        ("240.0.0.1", "reserved"),
        ("255.255.255.255", "reserved"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fe80::1%2", "link-local"),
        ("fc00::1", "unique local"),
        ("fd12:3456:789a::1", "unique local"),
        ("fec0::1", "site-local"),
        ("ff02::1", "multicast"),
        ("ff0e::1", "multicast"),
        ("100::1", "discard-only"),
        ("64:ff9b:1::1", "NAT64"),
        ("2001:db8::1", "documentation"),
        ("3fff::1", "documentation"),
        ("2001::1", "Teredo"),
        ("2001:2::1", "IETF protocol assignments"),
        ("2002:c000:0204::1", "6to4"),
        ("::2", "reserved"),
        ("::127.0.0.1", "reserved"),  # IPv4-compatible (deprecated)
        ("4000::1", "reserved"),
        ("::ffff:127.0.0.1", "loopback|inside an IPv6 address"),
        ("::ffff:10.1.2.3", "private|inside an IPv6 address"),
        ("::ffff:169.254.169.254", "link-local|inside an IPv6 address"),
        ("64:ff9b::7f00:1", "loopback|inside an IPv6 address"),
        ("64:ff9b::a9fe:a9fe", "link-local|inside an IPv6 address"),
    ],
)
def test_special_use_addresses_are_refused_with_their_class(address: str, class_: str) -> None:
    why = refusal(ipaddress.ip_address(address))
    assert why is not None and all(part in why for part in class_.split("|"))


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "93.184.215.14",
        "100.63.255.255",  # just below shared address space
        "100.128.0.0",  # just above
        "172.32.0.1",  # just above 172.16/12
        "2606:4700:4700::1111",
        "2a00:1450:4001:80b::200e",
        "::ffff:8.8.8.8",
        "64:ff9b::808:808",  # NAT64 for 8.8.8.8, as DNS64 hands out on IPv6-only networks
    ],
)
def test_public_addresses_are_allowed(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


def test_embedded_ipv4() -> None:
    assert embedded_ipv4(ipaddress.ip_address("::ffff:1.2.3.4")) == ipaddress.IPv4Address("1.2.3.4")
    assert embedded_ipv4(ipaddress.ip_address("64:ff9b::102:304")) == ipaddress.IPv4Address("1.2.3.4")
    assert embedded_ipv4(ipaddress.ip_address("2606:4700::1")) is None
    assert embedded_ipv4(ipaddress.ip_address("1.2.3.4")) is None
