"""The path layer: probes only the peer can make or read; candidate paths as a sans-IO machine
(tried a few times, then dead for good, paced, budgeted), driven with a clock of the test's
own; and what a ping makes a node send, on real UDP sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import nacl.signing
import pytest

from ringdrop.identity import Identity
from ringdrop.protocol import MAX_CANDIDATES
from ringdrop.transport._candidates import (
    AMPLIFICATION,
    DEAD_PINGS,
    PINGS_PER_SECOND,
    PROBE_TRIES,
    Candidate,
    CandidateSet,
    State,
    refusal,
)
from ringdrop.transport._paths import (
    MAGIC,
    MIN_PING,
    PONGS_PER_SECOND,
    Direct,
    Endpoint,
    PathSet,
    _Codec,
)
from ringdrop.transport._udp import bind_udp

ALICE = Identity(nacl.signing.SigningKey(b"alice".ljust(32, b".")))
BOB = Identity(nacl.signing.SigningKey(b"bob".ljust(32, b".")))
MALLORY = Identity(nacl.signing.SigningKey(b"mallory".ljust(32, b".")))
TXID = bytes(range(12))
ELSEWHERE = ("192.0.2.7", 4000)  # TEST-NET-1: never dialled here, only named
TIMEOUT = 20.0


def codec(identity: Identity, *peers: Identity) -> _Codec:
    made = _Codec(identity)
    for peer in peers:
        made.know(peer.peer_id.raw)
    return made


def test_a_probe_opens_only_with_the_right_keys_and_unaltered() -> None:
    sealed = codec(ALICE, BOB).seal(BOB.peer_id.raw, 1, TXID, None, 1200)
    assert len(sealed) == 1200
    assert sealed.startswith(MAGIC)
    assert codec(BOB, ALICE).open(sealed) == (ALICE.peer_id.raw, 1, TXID, None)
    assert codec(MALLORY, ALICE).open(sealed) is None  # sealed for bob
    assert codec(BOB).open(sealed) is None  # bob has no connection with alice: not opened
    for at in (0, 4, 40, 70, len(sealed) - 1):
        altered = bytearray(sealed)
        altered[at] ^= 1
        assert codec(BOB, ALICE).open(bytes(altered)) is None
    assert codec(BOB, ALICE).open(sealed[:60]) is None


def test_a_pong_says_where_the_ping_came_from() -> None:
    sealed = codec(BOB, ALICE).seal(ALICE.peer_id.raw, 2, TXID, ("2001:db8::7", 4242), 100)
    assert codec(ALICE, BOB).open(sealed) == (BOB.peer_id.raw, 2, TXID, ("2001:db8::7", 4242))
    assert len(sealed) == MIN_PING  # the largest pong: what a ping must be to be answered


# -- candidates, sans-IO ---------------------------------------------------------------------------


def run(candidates: CandidateSet, until: float, step: float = 0.01) -> list[tuple[float, str]]:
    """Drive `candidates` with the test's clock from 0 to `until`: the pings, with when."""
    sent: list[tuple[float, str]] = []
    now = 0.0
    while now <= until:
        pings, _ = candidates.due(now, None)
        sent += [(now, f"{host}:{port}") for host, port in pings]
        now = round(now + step, 6)
    return sent


def test_an_unanswered_candidate_is_pinged_a_few_times_then_never_again() -> None:
    candidates = CandidateSet(1452)
    candidates.allow()
    candidates.offer([ELSEWHERE])
    sent = run(candidates, until=600.0, step=0.05)
    assert len(sent) == PROBE_TRIES
    candidate = candidates.get(ELSEWHERE)
    assert candidate is not None
    assert candidate.state is State.DEAD
    candidates.offer([ELSEWHERE])  # offered again: still dead
    assert run(candidates, until=60.0) == []


def test_a_live_path_that_stops_answering_loses_consent_for_good() -> None:
    candidates = CandidateSet(1452)
    candidates.allow()
    candidates.offer([ELSEWHERE])
    pings, _ = candidates.due(0.0, None)
    assert pings == [ELSEWHERE]
    assert candidates.pong(ELSEWHERE, 0.01, 0.01) is not None
    kept_alive: list[tuple[str, int]] = []
    died: list[Candidate] = []
    now = 0.0
    while now < 600.0 and not died:
        now += 0.1
        pings, died = candidates.due(now, ELSEWHERE)
        kept_alive += pings
    assert died, "consent was never lost"
    assert len(kept_alive) == DEAD_PINGS
    assert candidates.get(ELSEWHERE).state is State.DEAD  # type: ignore[union-attr]
    assert candidates.pong(ELSEWHERE, 0.01, now) is None  # a late pong revives nothing
    assert run(candidates, until=60.0) == []


def test_a_datagram_heard_keeps_a_live_path_alive_without_pongs() -> None:
    candidates = CandidateSet(1452)
    candidates.allow()
    candidates.dialled(ELSEWHERE)
    candidates.due(0.0, None)
    candidates.pong(ELSEWHERE, 0.01, 0.01)
    now = 0.0
    while now < 60.0:
        now += 0.1
        candidates.heard(ELSEWHERE, now)  # QUIC keeps flowing; no pong ever comes back
        _, died = candidates.due(now, ELSEWHERE)
        assert not died
    assert candidates.get(ELSEWHERE).state is State.ALIVE  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "host",
    [
        "127.0.0.1",
        "::1",
        "::ffff:127.0.0.1",
        "224.0.0.251",
        "ff02::1",
        "255.255.255.255",
        "0.0.0.0",  # noqa: S104 - an address under test, not bound
        "::",
        "fe80::1",
        "240.0.0.1",
        "198.51.100.9",  # in this test: the node's own
    ],
)
def test_an_address_no_other_machine_could_mean_is_no_candidate(host: str) -> None:
    candidates = CandidateSet(1452, own=["198.51.100.9"])
    candidates.allow()
    candidates.offer([(host, 4000), ELSEWHERE])
    assert refusal(host, ["198.51.100.9"]) is not None
    assert candidates.get((host, 4000)) is None
    assert {address for _, address in run(candidates, until=1.0)} == {"192.0.2.7:4000"}


def test_a_connection_holds_at_most_max_candidates_dead_ones_included() -> None:
    candidates = CandidateSet(1452)
    candidates.allow()
    first = [(f"192.0.2.{n}", 4000) for n in range(1, MAX_CANDIDATES + 1)]
    candidates.offer(first)
    run(candidates, until=600.0, step=0.05)  # all of them die unanswered
    candidates.offer([("198.51.100.1", 4000)])  # a fresh address to spray: no room, ever
    assert candidates.get(("198.51.100.1", 4000)) is None
    assert run(candidates, until=60.0) == []


def test_pings_to_unvalidated_addresses_are_paced() -> None:
    candidates = CandidateSet(1452)
    candidates.allow()
    candidates.offer([(f"192.0.2.{n}", 4000) for n in range(1, MAX_CANDIDATES + 1)])
    sent = run(candidates, until=30.0, step=0.01)
    assert len(sent) == MAX_CANDIDATES * PROBE_TRIES  # every one is tried, in time
    for start, _ in sent:
        window = [at for at, _ in sent if start <= at < start + 1.0]
        assert len(window) <= PINGS_PER_SECOND + PINGS_PER_SECOND / 2


def test_nothing_is_pinged_before_probing_is_allowed() -> None:
    candidates = CandidateSet(1452)
    candidates.offer([ELSEWHERE])
    candidates.ping_from(("192.0.2.8", 4000), 1452, 1452, 0.0)
    assert run(candidates, until=10.0) == []
    candidates.allow()
    assert {address for _, address in run(candidates, until=0.0)} == {
        "192.0.2.7:4000",
        "192.0.2.8:4000",
    }


@pytest.mark.parametrize("size", [MIN_PING, 600, 1452])
def test_an_address_known_from_its_pings_gets_at_most_three_times_what_it_sent(
    size: int,
) -> None:
    candidates = CandidateSet(1452)
    candidates.allow()
    source = ("192.0.2.9", 4000)
    received = sent = 0
    for step in range(40):
        now = step * 0.5
        candidates.ping_from(source, size, size, now)  # answered with a pong of its size
        received, sent = received + size, sent + size
        pings, _ = candidates.due(now, None)
        sent += 1452 * len(pings)
        assert sent <= AMPLIFICATION * received


# -- answering pings, on loopback ------------------------------------------------------------------


@pytest.fixture
async def bob_endpoint() -> AsyncIterator[Endpoint]:
    endpoint = Endpoint(BOB, bind_udp("::", 0), lambda _data, _path: None)
    yield endpoint
    endpoint.close()


def bob_knows_alice(endpoint: Endpoint) -> PathSet:
    """A connection of bob's with alice, its probing allowed: alice's pings are answered."""
    paths = PathSet(endpoint, way=Direct(ELSEWHERE), peer_key=ALICE.peer_id.raw, probe_size=1452)
    paths.start()
    paths.allow_probing()
    return paths


def udp(host: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    sock.setblocking(False)
    return sock


async def witness_answered(endpoint: Endpoint) -> None:
    """A ping from ::1 after the test's pings, answered: bob reads his socket in order and
    answers as he reads, and loopback delivers on send, so any answer to the earlier pings is
    waiting in their sockets by now."""
    witness = udp("::1")
    try:
        ping = codec(ALICE, BOB).seal(BOB.peer_id.raw, 1, TXID, None, 1452)
        witness.sendto(ping, ("::1", endpoint.port))
        pong = await asyncio.wait_for(asyncio.get_running_loop().sock_recv(witness, 65536), 10)
        assert codec(ALICE, BOB).open(pong) is not None
    finally:
        witness.close()


def drain(sock: socket.socket) -> list[bytes]:
    got = []
    while True:
        try:
            got.append(sock.recv(65536))
        except BlockingIOError:
            return got


async def test_a_ping_smaller_than_a_pong_gets_no_answer(bob_endpoint: Endpoint) -> None:
    paths = bob_knows_alice(bob_endpoint)
    victim = udp("127.0.0.1")
    try:
        async with asyncio.timeout(TIMEOUT):
            small = codec(ALICE, BOB).seal(BOB.peer_id.raw, 1, TXID, None, MIN_PING - 1)
            victim.sendto(small, ("127.0.0.1", bob_endpoint.port))
            await witness_answered(bob_endpoint)
        assert drain(victim) == []
    finally:
        paths.close()
        victim.close()


async def test_a_ping_replayed_from_a_forged_address_earns_no_more_than_it_sent(
    bob_endpoint: Endpoint,
) -> None:
    paths = bob_knows_alice(bob_endpoint)
    victim = udp("127.0.0.1")  # the pings come "from" the victim
    try:
        async with asyncio.timeout(TIMEOUT):
            sent = 0
            for size in (89, MIN_PING, 300, 1452):
                ping = codec(ALICE, BOB).seal(BOB.peer_id.raw, 1, TXID, None, size)
                victim.sendto(ping, ("127.0.0.1", bob_endpoint.port))
                sent += len(ping)
            await witness_answered(bob_endpoint)
        answers = drain(victim)
        assert answers, "the pings of a pong's size or more are answered"
        assert sum(map(len, answers)) <= sent
    finally:
        paths.close()
        victim.close()


async def test_pings_from_one_source_are_answered_at_a_bounded_rate(
    bob_endpoint: Endpoint,
) -> None:
    paths = bob_knows_alice(bob_endpoint)
    victim = udp("127.0.0.1")
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(TIMEOUT):
            ping = codec(ALICE, BOB).seal(BOB.peer_id.raw, 1, TXID, None, 1452)
            started = loop.time()
            for _ in range(200):
                victim.sendto(ping, ("127.0.0.1", bob_endpoint.port))
            await witness_answered(bob_endpoint)  # from ::1: another source, answered
            elapsed = loop.time() - started
        pongs = drain(victim)
        assert pongs
        # The bucket holds a second's worth and refills at that rate: a slow machine can only
        # let more through by taking longer.
        assert len(pongs) <= PONGS_PER_SECOND * (1 + elapsed) + 1
    finally:
        paths.close()
        victim.close()


async def test_a_probe_from_a_key_without_a_connection_gets_no_answer(
    bob_endpoint: Endpoint,
) -> None:
    paths = bob_knows_alice(bob_endpoint)
    stranger = udp("127.0.0.1")
    try:
        async with asyncio.timeout(TIMEOUT):
            ping = codec(MALLORY, BOB).seal(BOB.peer_id.raw, 1, TXID, None, 1452)
            for _ in range(PROBE_TRIES):
                stranger.sendto(ping, ("127.0.0.1", bob_endpoint.port))
            await witness_answered(bob_endpoint)
        assert drain(stranger) == []
    finally:
        paths.close()
        stranger.close()
