"""How a receiver dials a ticket: which of its addresses, in what order, and no more than
`MAX_DIALLED` of them, whatever a hostile ticket names (issue 20 item 6). The plan is a pure
function; the spray test uses real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
from ipaddress import ip_address

import nacl.signing
import pytest

from ringdrop.errors import TransferError
from ringdrop.identity import Identity
from ringdrop.ticket import Address
from ringdrop.transport import connect
from ringdrop.transport._client import MAX_DIALLED, plan

RECEIVER = Identity(nacl.signing.SigningKey(b"receiver".ljust(32, b".")))
SHARER = Identity(nacl.signing.SigningKey(b"sharer".ljust(32, b".")))


def addresses(*texts: str) -> list[Address]:
    found = []
    for text in texts:
        host, _, port = text.rpartition(":")
        found.append(Address(ip_address(host.strip("[]")), int(port)))
    return found


def test_only_unicast_addresses_another_machine_could_mean_are_dialled() -> None:
    ticket = addresses(
        "224.0.0.251:5353",
        "255.255.255.255:9",
        "0.0.0.0:9",
        "[::]:9",
        "[fe80::1]:9",  # link-local: meaningless without the sharer's zone
        "240.0.0.1:9",
        "192.0.2.1:1000",
        "[2001:db8::1]:1000",
        "192.0.2.2:1000",
    )
    assert plan(ticket, machine_ips=[]) == [
        ("192.0.2.1", 1000),
        ("2001:db8::1", 1000),  # the families alternate (RFC 8305)
        ("192.0.2.2", 1000),
    ]


def test_an_address_of_this_machine_is_raced_on_loopback_first_and_as_itself() -> None:
    ticket = addresses("192.0.2.1:1000", "192.0.2.55:2000", "[2001:db8::55]:2000")
    assert plan(ticket, machine_ips=["192.0.2.55", "2001:db8::55"]) == [
        ("127.0.0.1", 2000),
        ("::1", 2000),
        ("192.0.2.1", 1000),
        ("2001:db8::55", 2000),
        ("192.0.2.55", 2000),
    ]


def test_a_ticket_naming_loopback_is_dialled_there_and_ipv6_only_where_there_is_ipv6() -> None:
    ticket = addresses("127.0.0.1:1000", "[::1]:1000", "[2001:db8::1]:1000")
    assert plan(ticket, machine_ips=[]) == [
        ("127.0.0.1", 1000),
        ("::1", 1000),
        ("2001:db8::1", 1000),
    ]
    assert plan(ticket, machine_ips=[], ipv6=False) == [("127.0.0.1", 1000)]


async def test_a_ticket_of_255_addresses_reaches_no_more_than_eight_of_them() -> None:
    silent = []
    for _ in range(255):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        silent.append(sock)
    try:
        ticket = [Address(ip_address("127.0.0.1"), s.getsockname()[1]) for s in silent]
        with pytest.raises(TransferError, match="no answer within"):
            await asyncio.wait_for(connect(RECEIVER, SHARER.peer_id, ticket, timeout=2.0), 30)
        reached = [sock for sock in silent if _received_any(sock)]
    finally:
        for sock in silent:
            sock.close()
    assert len(reached) == MAX_DIALLED
    assert reached == silent[:MAX_DIALLED]  # the ticket's first ones, in its order


def _received_any(sock: socket.socket) -> bool:
    try:
        sock.recv(65536)
    except BlockingIOError:
        return False
    return True
