"""Hostile peers against the path layer and the server's seats, and the receiver's race, over
real non-loopback addresses (issues 20, 21): an island namespace (tests/netlab.py) holds the
server's socket, the hostile peers' and their victims', all made and driven by this process;
nothing leaves it.

Absence ("the victim got nothing") is checked against a witness: a candidate the same server
must ping, on a connection that earned it, whose pings take longer to finish than the server
would have taken to ping the victim.

Root only (the island is a network namespace): skipped otherwise, failed under CI=true.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from ipaddress import ip_address

import nacl.signing
import pytest

from ringdrop.identity import Identity, PeerId
from ringdrop.protocol import (
    AnnounceRequest,
    Candidates,
    Catalog,
    CatalogRequest,
    Info,
    News,
    PathsChannel,
    Request,
    ResponseHeader,
    RingsRequest,
    SinceRequest,
    encode,
)
from ringdrop.ticket import Address
from ringdrop.transport import Dialer, Handler, Limits, Reach, Reply, Server
from ringdrop.transport._candidates import AMPLIFICATION, PINGS_PER_SECOND, PROBE_TRIES
from ringdrop.transport._paths import MIN_PING, _Codec
from ringdrop.transport._udp import bind_udp
from tests.hostile import HostilePeer, first_frame, hostile_from
from tests.netlab import Island, is_root, island, made_in

if not is_root() and os.environ.get("CI") == "true":
    pytest.fail("CI must run the path-attack tests: they need root", pytrace=False)
pytestmark = pytest.mark.skipif(not is_root(), reason="the island namespace needs root")

SHARER = Identity(nacl.signing.SigningKey(b"sharer".ljust(32, b".")))
MEMBER = Identity(nacl.signing.SigningKey(b"member".ljust(32, b".")))
MALLORY = Identity(nacl.signing.SigningKey(b"mallory".ljust(32, b".")))
TIMEOUT = 60.0


_SO_TIMESTAMPNS = 35  # Linux; the socket module does not name it before Python 3.13


def stamped(sock: socket.socket) -> socket.socket:
    """`sock`, made to tell when the kernel received each datagram (see `read_stamped`)."""
    sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
    return sock


def read_stamped(sock: socket.socket) -> list[tuple[float, bytes, tuple[str, int]]]:
    """What waits in a `stamped` socket: (when the kernel received it, datagram, sender). The
    kernel's time, not this loop's, so that a busy test loop reading late does not bunch up
    what came spread out."""
    got: list[tuple[float, bytes, tuple[str, int]]] = []
    while True:
        try:
            data, ancillary, _, sender = sock.recvmsg(65536, socket.CMSG_SPACE(16))
        except BlockingIOError:
            return got
        stamp = next(c for _, kind, c in ancillary if kind == _SO_TIMESTAMPNS)
        seconds, nanoseconds = struct.unpack("qq", stamp[:16])
        got.append((seconds + nanoseconds / 1e9, data, sender[:2]))


class Victim:
    """A UDP socket that only listens: what arrived, and when."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = stamped(sock)
        self.address: tuple[str, int] = sock.getsockname()[:2]
        self.got: list[tuple[float, bytes]] = []
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(sock, self._read)

    def _read(self) -> None:
        self.got += [(at, data) for at, data, _ in read_stamped(self.sock)]

    @property
    def count(self) -> int:
        return len(self.got)

    @property
    def received(self) -> int:
        return sum(len(data) for _, data in self.got)

    def close(self) -> None:
        self._loop.remove_reader(self.sock)
        self.sock.close()


@pytest.fixture
def isle() -> Iterator[Island]:
    with island(6) as made:
        yield made


@pytest.fixture
async def victims(isle: Island) -> AsyncIterator[Callable[[str], Victim]]:
    made: list[Victim] = []

    def victim(ip: str) -> Victim:
        made.append(Victim(isle.udp(ip)))
        return made[-1]

    yield victim
    for each in made:
        each.close()


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.02)


def members_only(*allowed: Identity) -> Handler:
    """A catalog for `allowed` keys, a refusal for any other."""
    keys = {identity.peer_id for identity in allowed}

    async def handler(peer: PeerId, request: Request) -> Reply:
        if peer in keys:
            return Reply(ResponseHeader("allowed"), catalog=Catalog(()))
        return Reply(ResponseHeader("denied", "not in any ring"))

    return handler


async def start_server(
    isle: Island,
    handler: Handler,
    limits: Limits | None = None,
    known: Callable[[Sequence[PeerId]], Sequence[bool]] | None = None,
) -> Server:
    """A server on the island's first address, which it offers and counts as its own; on
    aioquic, as the hostile peers are (qh3's server fails to build its first flight for an
    aioquic client; honest ringdrop clients are on qh3 off loopback)."""
    sock = made_in(isle.ns, lambda: bind_udp("::", 0))
    port = sock.getsockname()[1]
    reach = Reach(addresses=((isle.ips[0], port),), own=(isle.ips[0],))
    server = Server(SHARER, sock, handler, limits or Limits(), "aioquic", reach, known)
    server.start(None)
    return server


def address(host: str, port: int) -> Address:
    return Address(ip_address(host), port)


async def ask_catalog(peer: HostilePeer) -> str:
    header = first_frame(await peer.ask(encode(CatalogRequest())))
    assert isinstance(header, ResponseHeader)
    return header.status


async def test_a_stranger_learns_no_address_and_directs_no_ping(
    isle: Island, victims: Callable[[str], Victim]
) -> None:
    server_ip, peer_ip, victim_ip, witness_ip = isle.ips[:4]
    victim, witness = victims(victim_ip), victims(witness_ip)
    async with (
        asyncio.timeout(TIMEOUT),
        await start_server(isle, members_only(MEMBER)) as server,
        hostile_from(isle.udp(peer_ip), server_ip, server.port) as mallory,
    ):
        await mallory.authenticate(MALLORY, SHARER.peer_id)
        mallory_paths = mallory.offer([victim.address])
        assert await ask_catalog(mallory) == "denied"
        async with hostile_from(isle.udp(peer_ip), server_ip, server.port) as member:
            await member.authenticate(MEMBER, SHARER.peer_id)
            member_paths = member.offer([witness.address])
            assert await ask_catalog(member) == "allowed"
            await until(lambda: witness.count >= PROBE_TRIES, "the witness's pings")
            told = member.received(member_paths)
        learnt = mallory.received(mallory_paths)
    assert victim.count == 0
    assert learnt == b""  # the sharer's addresses stay its own (share --no-addresses holds)
    (candidates,) = PathsChannel().receive_data(told)
    assert candidates == Candidates(((server_ip, server.port),))


async def test_allowed_questions_about_rings_and_their_news_open_no_paths(
    isle: Island, victims: Callable[[str], Victim]
) -> None:
    # Only content (or a catalog) is worth a direct path; a ring's manifests and news are a
    # frame or two, and the connection that carries them is usually closed right after.
    server_ip, peer_ip, victim_ip, witness_ip = isle.ips[:4]
    victim, witness = victims(victim_ip), victims(witness_ip)
    news = News(b"m" * 100, (b"a" * 200,))

    async def handler(peer: PeerId, request: Request) -> Reply:
        if isinstance(request, CatalogRequest):
            return Reply(ResponseHeader("allowed"), catalog=Catalog(()))
        if isinstance(request, SinceRequest):
            return Reply(ResponseHeader("allowed"), news=news)
        if isinstance(request, AnnounceRequest):
            return Reply(ResponseHeader("allowed"))
        return Reply(ResponseHeader("allowed"), info=Info())

    questions: list[Request] = [RingsRequest(), AnnounceRequest(news), SinceRequest(b"R" * 16, 0)]
    async with (
        asyncio.timeout(TIMEOUT),
        await start_server(isle, handler) as server,
        hostile_from(isle.udp(peer_ip), server_ip, server.port) as asker,
    ):
        await asker.authenticate(MEMBER, SHARER.peer_id)
        asker_paths = asker.offer([victim.address])
        for question in questions:
            header = first_frame(await asker.ask(encode(question)))
            assert isinstance(header, ResponseHeader)
            assert header.status == "allowed", question
        async with hostile_from(isle.udp(peer_ip), server_ip, server.port) as fetcher:
            await fetcher.authenticate(MEMBER, SHARER.peer_id)
            fetcher.offer([witness.address])
            assert await ask_catalog(fetcher) == "allowed"
            await until(lambda: witness.count >= PROBE_TRIES, "the witness's pings")
        learnt = asker.received(asker_paths)
    assert victim.count == 0
    assert learnt == b""


async def test_addresses_no_other_machine_could_mean_are_never_pinged(
    isle: Island, victims: Callable[[str], Victim]
) -> None:
    server_ip, peer_ip, witness_ip = isle.ips[0], isle.ips[1], isle.ips[2]
    loopback, own, witness = victims("127.0.0.1"), victims(server_ip), victims(witness_ip)
    async with (
        asyncio.timeout(TIMEOUT),
        await start_server(isle, members_only(MEMBER)) as server,
        hostile_from(isle.udp(peer_ip), server_ip, server.port) as member,
    ):
        await member.authenticate(MEMBER, SHARER.peer_id)
        assert await ask_catalog(member) == "allowed"
        member.offer(
            [
                loopback.address,
                own.address,  # the server's own address, another port
                ("224.0.0.1", 9),
                ("0.0.0.0", 9),  # noqa: S104 - an address under test, not bound
                ("255.255.255.255", 9),
                witness.address,
            ]
        )
        await until(lambda: witness.count >= PROBE_TRIES, "the witness's pings")
    assert loopback.count == 0
    assert own.count == 0


async def test_an_address_that_never_answers_gets_a_few_paced_pings_and_no_more(
    isle: Island, victims: Callable[[str], Victim]
) -> None:
    server_ip, peer_ip, victim_ip, witness_ip = isle.ips[:4]
    silent = [victims(victim_ip) for _ in range(15)]  # with the peer's own path, a full set
    witness = victims(witness_ip)
    async with (
        asyncio.timeout(TIMEOUT),
        await start_server(isle, members_only(MEMBER)) as server,
        hostile_from(isle.udp(peer_ip), server_ip, server.port) as member,
    ):
        await member.authenticate(MEMBER, SHARER.peer_id)
        assert await ask_catalog(member) == "allowed"
        member.offer([victim.address for victim in silent])
        expected = len(silent) * PROBE_TRIES
        await until(lambda: sum(v.count for v in silent) >= expected, "every victim's pings")
        # Another connection's candidate is tried for as long as these were: had they
        # been tried again, or for longer, it would show by the time it is done.
        async with hostile_from(isle.udp(peer_ip), server_ip, server.port) as other:
            await other.authenticate(MEMBER, SHARER.peer_id)
            assert await ask_catalog(other) == "allowed"
            other.offer([witness.address])
            await until(lambda: witness.count >= PROBE_TRIES, "the witness's pings")
    assert [victim.count for victim in silent] == [PROBE_TRIES] * len(silent)
    times = sorted(at for victim in silent for at, _ in victim.got)
    busiest = max(sum(1 for t in times if start <= t < start + 1.0) for start in times)
    assert busiest <= PINGS_PER_SECOND * 1.5  # a second's pace and the burst


async def test_pings_sent_from_a_forged_address_earn_it_at_most_three_times_their_size(
    isle: Island, victims: Callable[[str], Victim]
) -> None:
    server_ip, peer_ip, victim_ip, witness_ip = isle.ips[:4]
    victim = victims(victim_ip)  # the pings go out from the victim's own socket
    async with (
        asyncio.timeout(TIMEOUT),
        await start_server(isle, members_only(MEMBER)) as server,
        hostile_from(isle.udp(peer_ip), server_ip, server.port) as member,
    ):
        await member.authenticate(MEMBER, SHARER.peer_id)
        assert await ask_catalog(member) == "allowed"
        seal = _Codec(MEMBER)
        seal.know(SHARER.peer_id.raw)
        sent = 0
        for size in (89, MIN_PING, 600, 1452) * 3:
            ping = seal.seal(SHARER.peer_id.raw, 1, os.urandom(12), None, size)
            victim.sock.sendto(ping, (server_ip, server.port))
            sent += len(ping)
        witness = victims(witness_ip)
        ping = seal.seal(SHARER.peer_id.raw, 1, os.urandom(12), None, 1452)
        witness.sock.sendto(ping, (server_ip, server.port))
        await until(lambda: witness.count >= 1, "the witness's pong")
        # Pings the server sends the victim of its own accord come later, if at all:
        # the budget bounds them whenever they come.
        await until(lambda: victim.received >= sent, "the victim's answers")
        await asyncio.sleep(0)
        received = victim.received
    assert sent <= received <= AMPLIFICATION * sent


async def test_a_known_peer_is_never_refused_because_of_strangers_from_one_host(
    isle: Island,
) -> None:
    server_ip, crowd_ip, member_ip = isle.ips[0], isle.ips[1], isle.ips[2]
    limits = Limits(max_connections=8, max_connections_per_host=2, stranger_grace=600.0)

    def known(peers: Sequence[PeerId]) -> list[bool]:
        return [peer == MEMBER.peer_id for peer in peers]

    async with (
        asyncio.timeout(TIMEOUT),
        await start_server(isle, members_only(MEMBER), limits, known) as server,
        contextlib.AsyncExitStack() as stack,
    ):
        crowd = []
        for _ in range(2):
            peer = await stack.enter_async_context(
                hostile_from(isle.udp(crowd_ip), server_ip, server.port)
            )
            await peer.authenticate(Identity(nacl.signing.SigningKey.generate()), SHARER.peer_id)
            assert await ask_catalog(peer) == "denied"
            crowd.append(peer)
        async with hostile_from(isle.udp(crowd_ip), server_ip, server.port) as third:
            await third.authenticate(MALLORY, SHARER.peer_id)
            refused = await third.closed  # the host's cap: a stranger waits its turn
        async with hostile_from(isle.udp(member_ip), server_ip, server.port) as elsewhere:
            await elsewhere.authenticate(MALLORY, SHARER.peer_id)
            other_host = await ask_catalog(elsewhere)  # another host has room
        async with hostile_from(isle.udp(crowd_ip), server_ip, server.port) as member:
            await member.authenticate(MEMBER, SHARER.peer_id)
            served = await ask_catalog(member)  # takes a stranger's seat on that host
        await until(lambda: any(peer.closed.done() for peer in crowd), "a stranger's eviction")
        evicted = [peer.closed.result() for peer in crowd if peer.closed.done()]
    assert "serves at most" in refused[1]
    assert other_host == "denied"
    assert served == "allowed"
    assert [reason for _, reason in evicted] == ["the sharer needed the room for another peer"]


async def test_an_unreachable_address_does_not_hold_up_a_reachable_one(
    isle: Island, victims: Callable[[str], Victim]
) -> None:
    # The first address names a machine where nothing answers (here loopback, which a ticket
    # naming this machine would be dialled on first); the second is the sharer, behind a
    # relay of datagrams that notes when the first one came. The silent address's attempt
    # would end only at its idle timeout, far past the connect's: a dialer that waited for it
    # before trying the next could not connect at all. How soon the next address is tried is
    # a figure for the benches (bench_discovery, bench_latency), not a bound for a loaded CI.
    server_ip = isle.ips[0]
    silent = victims("127.0.0.1")
    async with asyncio.timeout(TIMEOUT), await start_server(isle, members_only(MEMBER)) as server:
        forwarder = await Forwarder.start(isle, server_ip, (server_ip, server.port))
        try:
            dialer = Dialer(MEMBER, sock=made_in(isle.ns, lambda: bind_udp("::", 0)))
            ticket = [address("127.0.0.1", silent.address[1]), forwarder.address]
            connection = await dialer.connect(
                SHARER.peer_id, ticket, timeout=30.0, idle_timeout=10 * TIMEOUT
            )
            async with connection:
                header, _ = await connection.catalog()
        finally:
            forwarder.close()
    assert header.status == "allowed"
    assert silent.got, "the silent address was dialled too"
    assert forwarder.first is not None


class Forwarder:
    """Datagrams to `address` go on to the server and its answers come back: a real path,
    with the time the first datagram reached it."""

    def __init__(self, front: socket.socket, back: socket.socket, server: tuple[str, int]) -> None:
        self._front, self._back, self._server = stamped(front), back, server
        self._client: tuple[str, int] | None = None
        self.first: float | None = None
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(front, self._forward)
        self._loop.add_reader(back, self._answer)
        host, port = front.getsockname()[:2]
        self.address = address(host, port)

    @classmethod
    async def start(cls, isle: Island, ip: str, server: tuple[str, int]) -> Forwarder:
        return cls(isle.udp(ip), isle.udp(ip), server)

    def _forward(self) -> None:
        for at, data, sender in read_stamped(self._front):
            if self.first is None:
                self.first = at
            self._client = sender
            self._back.sendto(data, self._server)

    def _answer(self) -> None:
        while True:
            try:
                data = self._back.recv(65536)
            except BlockingIOError:
                return
            if self._client is not None:
                self._front.sendto(data, self._client)

    def close(self) -> None:
        for sock in (self._front, self._back):
            self._loop.remove_reader(sock)
            sock.close()


async def test_a_ticket_naming_this_machine_is_raced_on_loopback_first(isle: Island) -> None:
    # The ticket names the island's address, and the receiver is told it is its own: it dials
    # loopback first, where large datagrams make transfers faster, and gets there.
    server_ip = isle.ips[0]
    async with asyncio.timeout(TIMEOUT), await start_server(isle, members_only(MEMBER)) as server:
        dialer = Dialer(MEMBER, sock=made_in(isle.ns, lambda: bind_udp("::", 0)))
        connection = await dialer.connect(
            SHARER.peer_id, [address(server_ip, server.port)], machine_ips=[server_ip]
        )
        async with connection:
            path = connection.address
    assert path == f"direct 127.0.0.1:{server.port}"
