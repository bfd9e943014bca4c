"""The direct addresses a ticket offers: this machine's interface addresses, best first."""

from __future__ import annotations

import ipaddress

import ifaddr

from ringdrop.ticket import Address

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def local_addresses(port: int, *, include_loopback: bool = True) -> tuple[Address, ...]:
    """Global and private addresses first (IPv4 before IPv6), then loopback, which serves a
    receiver on the same machine; link-local addresses need a zone and are left out."""
    found: list[IPAddress] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            text = ip.ip if isinstance(ip.ip, str) else ip.ip[0]
            try:
                address = ipaddress.ip_address(text)
            except ValueError:
                continue
            if address.is_link_local or address.is_multicast or address.is_unspecified:
                continue
            if address.is_loopback and not include_loopback:
                continue
            if address not in found:
                found.append(address)
    found.sort(key=lambda a: (a.is_loopback, a.version))
    return tuple(Address(a, port) for a in found)
