"""Publishing and looking up records against a real iroh-dns-server 1.4.1 (tests/dns_server.py)
over HTTP and DNS, and against a hostile pkarr relay that answers with chosen bytes.

Everything listens on and sends to 127.0.0.1 only; waits are for conditions."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import nacl.signing
import pytest

from ringdrop.discovery import Published, Publisher, Record, Resolver, Services, Timestamps
from ringdrop.discovery.record import sign
from ringdrop.identity import Identity
from ringdrop.ticket import Address
from tests.dns_server import ORIGIN, IrohDnsServer, iroh_dns, require_dns_server

__all__ = ["iroh_dns"]

DEADLINE = 30.0
RELAY = "https://relay.example.net/"


def new_identity() -> Identity:
    return Identity(nacl.signing.SigningKey.generate())


def http_only(server: IrohDnsServer) -> Services:
    return Services(pkarr=(server.pkarr_url,))


def dns_only(server: IrohDnsServer) -> Services:
    return Services(dns_origin=ORIGIN, dns_server=("127.0.0.1", server.dns_port))


async def publish(
    server: IrohDnsServer, identity: Identity, record: Record, timestamps: Timestamps
) -> Published:
    result = await Publisher(identity, (server.pkarr_url,), timestamps).publish(record)
    assert result.ok, result.failures
    return result


@pytest.fixture
def stamps(tmp_path: Path) -> Timestamps:
    return Timestamps(tmp_path / "record-timestamp")


async def test_a_published_record_is_found_over_http(
    iroh_dns: IrohDnsServer, stamps: Timestamps
) -> None:
    me = new_identity()
    addresses = (Address(ipaddress.ip_address("192.0.2.7"), 4100),)
    await publish(iroh_dns, me, Record(me.peer_id, RELAY, addresses), stamps)
    found = await Resolver(http_only(iroh_dns)).lookup(me.peer_id)
    assert found.record is not None
    assert (found.record.relay, found.record.addresses) == (RELAY, addresses)
    assert found.record.timestamp > 0  # a signed record


async def test_a_published_record_is_found_over_dns(
    iroh_dns: IrohDnsServer, stamps: Timestamps
) -> None:
    me = new_identity()
    addresses = (Address(ipaddress.ip_address("2001:db8::7"), 4100),)
    await publish(iroh_dns, me, Record(me.peer_id, RELAY, addresses), stamps)
    found = await Resolver(dns_only(iroh_dns)).lookup(me.peer_id)
    assert found.record is not None
    assert (found.record.relay, found.record.addresses) == (RELAY, addresses)


async def test_a_signed_record_is_not_held_back_by_a_dns_server_that_never_answers(
    iroh_dns: IrohDnsServer, stamps: Timestamps
) -> None:
    me = new_identity()
    await publish(iroh_dns, me, Record(me.peer_id, RELAY), stamps)
    loop = asyncio.get_running_loop()
    # A DNS server that takes every query and never answers.
    transport, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    try:
        port = transport.get_extra_info("sockname")[1]
        services = Services((iroh_dns.pkarr_url,), ORIGIN, ("127.0.0.1", port))
        # A grace far past the test's deadline: only not waiting for the DNS answer passes.
        resolver = Resolver(services, grace=10 * DEADLINE, timeout=10 * DEADLINE)
        found = await asyncio.wait_for(resolver.lookup(me.peer_id), DEADLINE)
    finally:
        transport.close()
    assert found.record is not None
    assert found.record.relay == RELAY
    assert f"DNS {ORIGIN}: not waited for: a signed record was in" in found.problems


async def test_a_key_nobody_published_is_not_found_and_the_error_says_where_it_looked(
    iroh_dns: IrohDnsServer,
) -> None:
    nobody = new_identity().peer_id
    services = Services((iroh_dns.pkarr_url,), ORIGIN, ("127.0.0.1", iroh_dns.dns_port))
    found = await Resolver(services).lookup(nobody)
    assert found.record is None
    message = str(found.error(nobody))
    assert f"{iroh_dns.pkarr_url}: no record" in message
    assert f"DNS {ORIGIN}: no record" in message


async def test_the_newest_record_wins_and_an_older_one_is_then_ignored(
    tmp_path: Path, stamps: Timestamps
) -> None:
    binary = require_dns_server()
    me = new_identity()
    with (
        IrohDnsServer(binary, tmp_path / "a") as a,
        IrohDnsServer(binary, tmp_path / "b") as b,
    ):
        await publish(b, me, Record(me.peer_id, "https://old.example.net/"), stamps)
        await publish(a, me, Record(me.peer_id, "https://new.example.net/"), stamps)
        resolver = Resolver(Services((b.pkarr_url, a.pkarr_url)))
        found = await resolver.lookup(me.peer_id)
        assert found.record is not None
        assert found.record.relay == "https://new.example.net/"
        a.stop()  # only the older record is left to be found
        found = await resolver.lookup(me.peer_id)
    assert found.record is None
    assert any("older than one already seen" in p for p in found.problems)


async def test_timestamps_only_grow_across_restarts_and_a_clock_set_back(tmp_path: Path) -> None:
    path = tmp_path / "record-timestamp"
    future = 10 * 365 * 86400 * 1_000_000 + 1_800_000_000_000_000  # far ahead of any clock
    path.write_text(f"{future}\n")
    first = Timestamps(path).next()
    second = Timestamps(path).next()
    assert future < first < second


async def test_a_republished_record_replaces_the_old_one(
    iroh_dns: IrohDnsServer, stamps: Timestamps
) -> None:
    me = new_identity()
    await publish(iroh_dns, me, Record(me.peer_id, "https://first.example.net/"), stamps)
    await publish(iroh_dns, me, Record(me.peer_id, "https://second.example.net/"), stamps)
    found = await Resolver(http_only(iroh_dns)).lookup(me.peer_id)
    assert found.record is not None
    assert found.record.relay == "https://second.example.net/"


async def test_a_publisher_retries_until_the_service_is_back_then_publishes_changes(
    tmp_path: Path, stamps: Timestamps
) -> None:
    server = IrohDnsServer(require_dns_server(), tmp_path / "dns")  # not started yet
    me = new_identity()
    results: list[Published] = []
    publisher = Publisher(me, (server.pkarr_url,), stamps, on_result=results.append)
    running = asyncio.create_task(publisher.run())
    try:
        publisher.update(Record(me.peer_id, "https://first.example.net/"))
        await until(lambda: any(not r.ok for r in results), "a failed publication")
        assert "request failed" in results[0].failures[0]
        server.start()
        await until(lambda: results[-1].ok, "a publication once the service is up")
        publisher.update(Record(me.peer_id, "https://moved.example.net/"))
        await until(
            lambda: results[-1].ok and results[-1].record.relay == "https://moved.example.net/",
            "the changed record published",
        )
        found = await Resolver(http_only(server)).lookup(me.peer_id)
        assert found.record is not None
        assert found.record.relay == "https://moved.example.net/"
    finally:
        running.cancel()
        server.stop()


# -- a hostile pkarr relay ------------------------------------------------------------------------


Serve = Callable[[bytes], Awaitable[str]]


@pytest.fixture
async def hostile() -> AsyncIterator[Serve]:
    """Starts pkarr relays on 127.0.0.1 that answer every GET with the bytes they are given;
    each call returns one's base URL."""
    servers: list[asyncio.Server] = []

    async def start(body: bytes) -> str:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.readuntil(b"\r\n\r\n")
            head = f"HTTP/1.1 200 OK\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
            writer.close()

        server = await asyncio.start_server(answer, "127.0.0.1", 0)
        servers.append(server)
        return f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/pkarr"

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def record_of(identity: Identity, relay: str = RELAY, timestamp: int = 1) -> bytes:
    """A relay's answer: `identity`'s signed record without the key."""
    return sign(identity, Record(identity.peer_id, relay, timestamp=timestamp))[32:]


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (lambda me: record_of(new_identity()), "not signed by"),
        (lambda me: b"\x13" * 300, "not signed by"),
        (lambda me: _signed_garbage(me), "DNS packet cannot be read"),
        (lambda me: b"\x00" * 5000, "larger than the 1072 bytes"),
        (lambda me: b"\x00" * 20, "cut short"),
    ],
    ids=["another key's", "garbled", "garbled but signed", "oversized", "truncated"],
)
async def test_a_bad_record_is_ignored_with_the_reason(
    hostile: Serve, answer: Callable[[Identity], bytes], reason: str
) -> None:
    me = new_identity()
    url = await hostile(answer(me))
    found = await Resolver(Services((url,))).lookup(me.peer_id)
    assert found.record is None
    assert reason in str(found.error(me.peer_id))


async def test_a_hostile_relay_does_not_hide_an_honest_one(
    hostile: Serve, iroh_dns: IrohDnsServer, stamps: Timestamps
) -> None:
    me = new_identity()
    await publish(iroh_dns, me, Record(me.peer_id, RELAY), stamps)
    forged = await hostile(record_of(new_identity(), "https://evil.example.net/"))
    found = await Resolver(Services((forged, iroh_dns.pkarr_url))).lookup(me.peer_id)
    assert found.record is not None
    assert found.record.relay == RELAY
    assert any("not signed by" in problem for problem in found.problems)


async def test_a_record_naming_a_private_plain_http_relay_is_not_followed(
    hostile: Serve,
) -> None:
    me = new_identity()
    url = await hostile(record_of(me, "http://10.0.0.1:3340/"))
    found = await Resolver(Services((url,))).lookup(me.peer_id)
    assert found.record is None
    assert "not https on a public host" in str(found.error(me.peer_id))
    followed = await Resolver(Services((url,)), relays=("http://10.0.0.1:3340/",)).lookup(
        me.peer_id
    )
    assert followed.record is not None
    assert followed.record.relay == "http://10.0.0.1:3340/"


def _signed_garbage(me: Identity) -> bytes:
    packet = b"\x00\x00\x80\x00\x00\x00\x00\x09junk"
    return me.sign(b"3:seqi1e1:v%d:" % len(packet) + packet) + (1).to_bytes(8, "big") + packet


async def until(condition: Callable[[], bool], what: str) -> None:
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE
    while not condition():
        if loop.time() > end:
            pytest.fail(f"no {what} within {DEADLINE:g} s")
        await asyncio.sleep(0.05)
