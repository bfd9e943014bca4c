"""Datagrams reach QUIC in batches: a buffer the kernel coalesced goes whole to the connection its
first packet names, unless something else is inside it (another connection's packets, a probe, a
cut-off datagram), and a QUIC library fed a batch keeps what a datagram at a time would. Real UDP
sockets on loopback (a segmented send arrives there as one coalesced buffer) and real QUIC."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import nacl.signing
import pytest

from ringdrop.identity import Identity
from ringdrop.transport import available_backends
from ringdrop.transport._backend import Backend, QuicLike, Settings, TlsIdentity, load_backend
from ringdrop.transport._link import PEER
from ringdrop.transport._paths import Direct, Endpoint, Path, PathSet, _Codec
from ringdrop.transport._server import _destination
from ringdrop.transport._udp import Burst, UdpSocket, bind_udp, split

ALICE = Identity(nacl.signing.SigningKey(b"alice".ljust(32, b".")))
BOB = Identity(nacl.signing.SigningKey(b"bob".ljust(32, b".")))
SIZE = 1200
TIMEOUT = 10.0
PING, PONG = 1, 2


@dataclass(eq=False)
class Recorder:
    """A connection as the endpoint sees it, keeping what it was handed and how."""

    paths: PathSet
    calls: list[tuple[str, list[bytes]]] = field(default_factory=list)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def receive(self, datagrams: list[bytes]) -> None:
        self.calls.append(("datagrams", list(datagrams)))
        self.changed.set()

    def receive_coalesced(self, buffer: bytes, segment: int) -> None:
        self.calls.append(("coalesced", split(buffer, segment)))
        self.changed.set()

    def flush(self) -> None:
        pass

    @property
    def datagrams(self) -> list[bytes]:
        return [data for _, batch in self.calls for data in batch]

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(TIMEOUT):
            while len(self.datagrams) < count:
                self.changed.clear()
                await self.changed.wait()


def packet(connection_id: bytes, size: int = SIZE) -> bytes:
    """A datagram shaped like a QUIC short-header packet to `connection_id`."""
    return bytes([0x40 | os.urandom(1)[0] & 0x3F]) + connection_id + os.urandom(size - 9)


@dataclass
class Bench:
    bob: Endpoint
    alice: UdpSocket
    heard_by_alice: list[bytes]
    connections: dict[bytes, Recorder]

    def send(self, datagrams: list[bytes]) -> None:
        """One call: equal-size datagrams leave in one segmented send and arrive coalesced."""
        self.alice.send(datagrams, ("127.0.0.1", self.bob.udp.port))


@pytest.fixture
async def bench() -> AsyncIterator[Bench]:
    connections: dict[bytes, Recorder] = {}

    def route(data: bytes, _path: Path) -> Recorder | None:
        return connections.get(data[1:9])

    bob = Endpoint(BOB, bind_udp("127.0.0.1", 0), route)
    heard: list[bytes] = []

    def take(burst: Burst) -> None:
        heard.extend(data for buffer, size, _ in burst for data in split(buffer, size))

    alice = UdpSocket(bind_udp("127.0.0.1", 0), take)
    way = Direct(("127.0.0.1", alice.port))
    for connection_id in (b"A" * 8, b"B" * 8):
        paths = PathSet(bob, way=way, peer_key=ALICE.peer_id.raw, probe_size=SIZE)
        connections[connection_id] = Recorder(paths)
    yield Bench(bob, alice, heard, connections)
    for recorder in connections.values():
        recorder.paths.close()
    alice.close()
    bob.close()


async def test_a_coalesced_buffer_of_one_connection_is_handed_over_whole(bench: Bench) -> None:
    sent = [packet(b"A" * 8) for _ in range(20)]
    bench.send(sent)
    a = bench.connections[b"A" * 8]
    await a.wait_for(len(sent))
    assert a.calls == [("coalesced", sent)]
    assert bench.connections[b"B" * 8].calls == []


async def test_a_coalesced_buffer_split_across_connections_reaches_each_in_order(
    bench: Bench,
) -> None:
    a_sent = [packet(b"A" * 8) for _ in range(6)]
    b_sent = [packet(b"B" * 8) for _ in range(5)]
    bench.send(a_sent[:3] + b_sent[:2] + a_sent[3:] + b_sent[2:])
    a, b = bench.connections[b"A" * 8], bench.connections[b"B" * 8]
    await a.wait_for(len(a_sent))
    await b.wait_for(len(b_sent))
    assert a.datagrams == a_sent
    assert b.datagrams == b_sent
    # Still in batches: a run of one connection's datagrams is one call, not one per datagram.
    assert [len(batch) for _, batch in a.calls] == [3, 3]
    assert [len(batch) for _, batch in b.calls] == [2, 3]


async def test_a_probe_inside_a_burst_is_answered_and_the_packets_around_it_delivered(
    bench: Bench,
) -> None:
    txid = bytes(range(12))
    codec = _Codec(ALICE)
    assert codec.know(BOB.peer_id.raw)
    ping = codec.seal(BOB.peer_id.raw, PING, txid, None, SIZE)
    sent = [packet(b"A" * 8) for _ in range(4)]
    bench.send([*sent[:2], ping, *sent[2:]])
    a = bench.connections[b"A" * 8]
    await a.wait_for(len(sent))
    assert a.datagrams == sent
    async with asyncio.timeout(TIMEOUT):
        while not bench.heard_by_alice:
            await asyncio.sleep(0.01)
    opened = codec.open(bench.heard_by_alice[0])
    assert opened is not None
    assert opened[:3] == (BOB.peer_id.raw, PONG, txid)


async def test_a_truncated_last_segment_costs_only_itself(bench: Bench) -> None:
    sent = [packet(b"A" * 8) for _ in range(6)]
    cut = sent[-1][:5]  # too short to name a connection
    bench.send([*sent[:-1], cut])
    a = bench.connections[b"A" * 8]
    await a.wait_for(len(sent) - 1)
    assert a.datagrams == sent[:-1]


# -- a real QUIC connection fed in batches ------------------------------------------------------

SETTINGS = Settings(datagram_size=SIZE, max_data=1 << 22, max_stream_data=1 << 22, idle_timeout=30)


@dataclass
class Pair:
    backend: Backend
    client: QuicLike
    server: QuicLike
    now: float = 1.0

    def pump(self, *, hold: bool = False) -> list[bytes]:
        """Moves datagrams both ways, and time on to timers due soon, until both sides are
        quiet. With `hold`, what the server sends is kept from the client and returned, and
        time moves only as far as pacing needs (no loss timer fires)."""
        horizon = 0.05 if hold else 1.0
        held: list[bytes] = []
        for _ in range(10_000):
            to_server = self.backend.transmit(self.client, self.now)
            to_client = self.backend.transmit(self.server, self.now)
            if to_server:
                self.backend.receive(self.server, to_server, PEER, self.now)
            if hold:
                held += to_client
            elif to_client:
                self.backend.receive(self.client, to_client, PEER, self.now)
            if to_server or to_client:
                continue
            sides = (self.client, self.server)
            due = [
                at for q in sides if (at := q.get_timer()) is not None and at < self.now + horizon
            ]
            if not due:
                return held
            self.now = max(self.now, min(due))
            for quic in sides:
                if (at := quic.get_timer()) is not None and at <= self.now:
                    quic.handle_timer(self.now)
        raise AssertionError("the connection never went quiet")


def events(backend: Backend, quic: QuicLike) -> list[object]:
    backend.drain(quic)
    found = []
    while (event := quic.next_event()) is not None:
        found.append(event)
    return found


def connected(backend: Backend) -> Pair:
    client = backend.client(SETTINGS)
    client.connect(PEER, 1.0)
    first = backend.transmit(client, 1.0)
    header = _destination(first[0])
    assert header is not None
    server = backend.server(SETTINGS, TlsIdentity.of(BOB), header[0])
    backend.receive(server, first, PEER, 1.0)
    pair = Pair(backend, client, server)
    pair.pump()
    assert any(isinstance(e, backend.events.HandshakeCompleted) for e in events(backend, client))
    events(backend, server)
    return pair


def stream_bytes(backend: Backend, found: list[object]) -> bytes:
    data_event = backend.events.StreamDataReceived
    return b"".join(e.data for e in found if isinstance(e, data_event))


def terminated(backend: Backend, found: list[object]) -> bool:
    return any(isinstance(e, backend.events.ConnectionTerminated) for e in found)


@pytest.mark.parametrize("name", available_backends())
def test_quic_fed_a_coalesced_buffer_with_a_cut_last_datagram_keeps_the_rest(name: str) -> None:
    backend = load_backend(name)  # type: ignore[arg-type]
    pair = connected(backend)
    payload = os.urandom(100_000)
    pair.client.send_stream_data(0, b"get", end_stream=True)
    pair.pump()
    events(backend, pair.server)
    pair.server.send_stream_data(0, payload, end_stream=True)
    held = pair.pump(hold=True)  # the server's first flight, not yet delivered
    # Six datagrams of one size in a row: five and the start of the sixth are coalesced, as
    # the kernel would hand them over.
    sizes = [len(data) for data in held]
    start = next(i for i in range(len(held) - 5) if len(set(sizes[i : i + 6])) == 1)
    if start:
        backend.receive(pair.client, held[:start], PEER, pair.now)
    segment = sizes[start]
    buffer = b"".join(held[start : start + 5]) + held[start + 5][:30]
    backend.receive_coalesced(pair.client, buffer, segment, PEER, pair.now)
    got = events(backend, pair.client)
    assert len(stream_bytes(backend, got)) >= 5 * (segment - 100)  # five packets' worth arrived
    assert not terminated(backend, got)
    backend.receive(pair.client, held[start + 5 :], PEER, pair.now)  # the sixth whole, and on
    pair.pump()
    got += events(backend, pair.client)
    assert stream_bytes(backend, got) == payload
    assert not terminated(backend, got)
