"""Which addresses the metadata fetcher may connect to (draft-ietf-oauth-client-id-metadata-document-02 §8.6).

The draft: an authorization server MUST NOT fetch a document that resolves to a special-use address (RFC 6890).
This module names every such range with its source, so a refusal says which class of address it was:

- IPv4: the IANA IPv4 Special-Purpose Address Registry (RFC 6890 and its updates), plus multicast and the
  reserved 240/4 block, which that registry leaves to others.
- IPv6: only global unicast (2000::/3) is allowed, minus the special-purpose blocks inside it (documentation,
  6to4, Teredo and the other IETF protocol assignments). Everything outside 2000::/3 (loopback, unspecified,
  unique local, link-local, multicast, the reserved ::/8 …) is refused.
- Addresses that carry an IPv4 address (IPv4-mapped ::ffff:0:0/96, the NAT64 well-known prefix 64:ff9b::/96) are
  judged by the IPv4 address inside, so ::ffff:127.0.0.1 is loopback.

As a second net, an address Python's `ipaddress` does not call global is refused too, whatever the table says.
"""

from __future__ import annotations

import ipaddress
from typing import TypeAlias

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4: tuple[tuple[str, str], ...] = (
    ("0.0.0.0/8", "unspecified ('this network', RFC 791)"),
    ("10.0.0.0/8", "private (RFC 1918)"),
    ("100.64.0.0/10", "shared address space (carrier-grade NAT, RFC 6598)"),
    ("127.0.0.0/8", "loopback (RFC 1122)"),
    ("169.254.0.0/16", "link-local (RFC 3927; cloud metadata services live here)"),
    ("172.16.0.0/12", "private (RFC 1918)"),
    ("192.0.0.0/24", "IETF protocol assignments (RFC 6890)"),
    ("192.0.2.0/24", "documentation (TEST-NET-1, RFC 5737)"),
    ("192.31.196.0/24", "AS112 service (RFC 7535)"),
    ("192.52.193.0/24", "AMT (RFC 7450)"),
    ("192.88.99.0/24", "6to4 relay anycast (RFC 7526)"),
    ("192.168.0.0/16", "private (RFC 1918)"),
    ("192.175.48.0/24", "AS112 direct delegation (RFC 7534)"),
    ("198.18.0.0/15", "benchmarking (RFC 2544)"),
    ("198.51.100.0/24", "documentation (TEST-NET-2, RFC 5737)"),
    ("203.0.113.0/24", "documentation (TEST-NET-3, RFC 5737)"),
    ("224.0.0.0/4", "multicast (RFC 5771)"),
    ("240.0.0.0/4", "reserved (RFC 1112; includes the limited broadcast address)"),
)

_V6_GLOBAL_UNICAST = ipaddress.IPv6Network("2000::/3")
_V6_OUTSIDE: tuple[tuple[str, str], ...] = (
    ("::/128", "unspecified (RFC 4291)"),
    ("::1/128", "loopback (RFC 4291)"),
    ("64:ff9b:1::/48", "local-use NAT64 (RFC 8215)"),
    ("100::/64", "discard-only (RFC 6666)"),
    ("fc00::/7", "unique local, i.e. private (RFC 4193)"),
    ("fe80::/10", "link-local (RFC 4291)"),
    ("fec0::/10", "site-local (deprecated, RFC 3879)"),
    ("ff00::/8", "multicast (RFC 4291)"),
)
_V6_INSIDE: tuple[tuple[str, str], ...] = (
    ("2001::/32", "Teredo (RFC 4380)"),
    ("2001::/23", "IETF protocol assignments (RFC 2928)"),
    ("2001:db8::/32", "documentation (RFC 3849)"),
    ("2002::/16", "6to4 (RFC 3056)"),
    ("3fff::/20", "documentation (RFC 9637)"),
)
_V6_RESERVED = "reserved by the IETF (outside global unicast 2000::/3)"

_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")


def _table(rows: tuple[tuple[str, str], ...]) -> tuple[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str], ...]:
    return tuple((ipaddress.ip_network(network), why) for network, why in rows)


_V4_TABLE = _table(_V4)
_V6_OUTSIDE_TABLE = _table(_V6_OUTSIDE)
_V6_INSIDE_TABLE = _table(_V6_INSIDE)


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv4-mapped (::ffff:a.b.c.d) or NAT64 (64:ff9b::a.b.c.d) address stands for."""
    if isinstance(address, ipaddress.IPv4Address):
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def refusal(address: IPAddress) -> str | None:
    """Why the fetcher must not connect to `address` (its special-use class), or None for a public address."""
    inner = embedded_ipv4(address)
    if inner is not None:
        why = refusal(inner)
        return f"{why}, inside an IPv6 address" if why else None
    if isinstance(address, ipaddress.IPv4Address):
        for network, why in _V4_TABLE:
            if address in network:
                return why
    else:
        address = address if address.scope_id is None else ipaddress.IPv6Address(str(address).split("%")[0])
        if address not in _V6_GLOBAL_UNICAST:
            return next((why for network, why in _V6_OUTSIDE_TABLE if address in network), _V6_RESERVED)
        for network, why in _V6_INSIDE_TABLE:
            if address in network:
                return why
    if not address.is_global:
        return "special-use (not globally reachable)"
    return None
