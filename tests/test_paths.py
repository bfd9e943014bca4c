"""The path layer's probes: only the peer can make or read one, and a probe replayed from a
forged address earns that address no more than it sent. Real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import nacl.signing
import pytest

from ringdrop.identity import Identity
from ringdrop.transport._paths import MAGIC, PROBE_TRIES, Endpoint, PathSet, _Codec
from ringdrop.transport._udp import bind_udp

ALICE = Identity(nacl.signing.SigningKey(b"alice".ljust(32, b".")))
BOB = Identity(nacl.signing.SigningKey(b"bob".ljust(32, b".")))
MALLORY = Identity(nacl.signing.SigningKey(b"mallory".ljust(32, b".")))
TXID = bytes(range(12))


def test_a_probe_opens_only_with_the_right_keys_and_unaltered() -> None:
    sealed = _Codec(ALICE).seal(BOB.peer_id.raw, 1, TXID, None, 1200)
    assert len(sealed) == 1200
    assert sealed.startswith(MAGIC)
    assert _Codec(BOB).open(sealed) == (ALICE.peer_id.raw, 1, TXID, None)
    assert _Codec(MALLORY).open(sealed) is None  # sealed for bob
    for at in (0, 4, 40, 70, len(sealed) - 1):
        altered = bytearray(sealed)
        altered[at] ^= 1
        assert _Codec(BOB).open(bytes(altered)) is None
    assert _Codec(BOB).open(sealed[:60]) is None


def test_a_pong_says_where_the_ping_came_from() -> None:
    sealed = _Codec(BOB).seal(ALICE.peer_id.raw, 2, TXID, ("203.0.113.7", 4242), 100)
    assert _Codec(ALICE).open(sealed) == (BOB.peer_id.raw, 2, TXID, ("203.0.113.7", 4242))


@pytest.fixture
async def bob_endpoint() -> AsyncIterator[Endpoint]:
    endpoint = Endpoint(BOB, bind_udp("127.0.0.1", 0), lambda _data, _path: None)
    yield endpoint
    endpoint.close()


async def test_a_replayed_ping_from_a_forged_address_earns_one_pong_and_one_ping(
    bob_endpoint: Endpoint,
) -> None:
    paths = PathSet(bob_endpoint, peer_key=ALICE.peer_id.raw, probe_size=1200)
    victim = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    victim.bind(("127.0.0.1", 0))
    victim.setblocking(False)
    try:
        ping = _Codec(ALICE).seal(BOB.peer_id.raw, 1, TXID, None, 1200)
        victim.sendto(ping, ("127.0.0.1", bob_endpoint.udp.port))  # "from" the victim
        loop = asyncio.get_running_loop()
        first = await asyncio.wait_for(loop.sock_recv(victim, 2048), 10)
        second = await asyncio.wait_for(loop.sock_recv(victim, 2048), 10)
        kinds = sorted(_Codec(ALICE).open(d)[1] for d in (first, second))  # type: ignore[index]
        assert kinds == [1, 2]  # a pong, and one ping back
        # However long the connection lives, that address gets nothing more.
        now = asyncio.get_running_loop().time()
        for step in range(200):
            paths._tick(now + step * 0.5)
        # _tick sends at once, and loopback delivers on send: anything sent is already here.
        with pytest.raises(BlockingIOError):
            victim.recv(2048)
    finally:
        paths.close()
        victim.close()


async def test_a_probe_from_a_key_without_a_connection_gets_no_answer(
    bob_endpoint: Endpoint,
) -> None:
    # A witness with a connection here pings after the stranger: bob reads his socket in order
    # and answers as he reads, and loopback delivers on send, so once the witness has its pong,
    # any answer to the stranger would already be waiting in the stranger's socket.
    paths = PathSet(bob_endpoint, peer_key=ALICE.peer_id.raw, probe_size=1200)
    stranger, witness = (socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(2))
    for sock in (stranger, witness):
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
    try:
        ping = _Codec(MALLORY).seal(BOB.peer_id.raw, 1, TXID, None, 1200)
        for _ in range(PROBE_TRIES):
            stranger.sendto(ping, ("127.0.0.1", bob_endpoint.udp.port))
        witness_ping = _Codec(ALICE).seal(BOB.peer_id.raw, 1, TXID, None, 1200)
        witness.sendto(witness_ping, ("127.0.0.1", bob_endpoint.udp.port))
        loop = asyncio.get_running_loop()
        pong = await asyncio.wait_for(loop.sock_recv(witness, 2048), 10)
        assert _Codec(ALICE).open(pong) is not None, "the witness was answered"
        with pytest.raises(BlockingIOError):
            stranger.recv(2048)
    finally:
        paths.close()
        stranger.close()
        witness.close()
