"""This machine's addresses: the ones a ticket may offer other machines, best first, and all of
them, by which a ticket naming this very machine is recognised."""

from __future__ import annotations

import ipaddress

import ifaddr

from ringdrop.ticket import Address

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def machine_ips() -> tuple[str, ...]:
    """Every address of this machine's interfaces, loopback included (IPv6 without zones)."""
    found: dict[str, None] = {}
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                found[str(ipaddress.ip_address(text.partition("%")[0]))] = None
            except ValueError:
                continue
    return tuple(found)


def local_addresses(port: int) -> tuple[Address, ...]:
    """The addresses another machine could reach this one at: global and private ones, IPv4
    before IPv6. Never loopback (on another machine it is that machine), link-local (it needs
    a zone, which a ticket cannot carry), multicast, unspecified or reserved."""
    found: list[IPAddress] = []
    for text in machine_ips():
        address = ipaddress.ip_address(text)
        if (
            address.is_loopback
            or address.is_link_local
            or address.is_multicast
            or address.is_unspecified
            or address.is_reserved
        ):
            continue
        found.append(address)
    found.sort(key=lambda a: a.version)
    return tuple(Address(a, port) for a in found)
