"""The iroh relay client against a real iroh-relay 1.0.3 (tests/relay_server.py) and against
hand-written fake relays for what a real one never does (junk, v1 only, restart notices).

Everything listens on and sends to 127.0.0.1 only. Waits are for events, with generous
deadlines; nothing asserts that something happened within a time.
"""

from __future__ import annotations

import asyncio
import logging
import operator
import os
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import blake3
import nacl.signing
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.typing import Subprotocol

from ringdrop.errors import TransferError
from ringdrop.identity import Identity
from ringdrop.transport import relay
from ringdrop.transport.relay import (
    MAX_DATAGRAM,
    MAX_PAYLOAD,
    QUEUE_LIMIT,
    RelayClient,
    RelayState,
    choose_home_relay,
    relay_latency,
)
from tests.ci import skip_unless_ci
from tests.relay_server import IrohRelay, free_port, iroh_relay, require_iroh_relay

__all__ = ["iroh_relay"]  # the fixture, re-exported so that pytest finds it here

DEADLINE = 30.0  # for anything that should happen "soon": generous, as the machine is shared
_CHALLENGE_CONTEXT = "iroh-relay handshake v1 challenge signature"


def new_identity() -> Identity:
    return Identity(nacl.signing.SigningKey.generate())


@dataclass
class Node:
    """A relay client and everything it reported: datagrams with their source, states."""

    identity: Identity
    client: RelayClient
    received: list[tuple[bytes, list[bytes]]] = field(default_factory=list)
    states: list[RelayState] = field(default_factory=list)
    probed_by: set[bytes] = field(default_factory=set)
    """The sources of `reachable`'s probes, which are kept out of `received`."""

    @property
    def key(self) -> bytes:
        return self.identity.peer_id.raw

    def datagrams_from(self, key: bytes) -> list[bytes]:
        return [d for source, batch in self.received if source == key for d in batch]


PROBE = b"reachable?"


def make_node(url: str, **options: Any) -> Node:
    """A relay client for `url` (`options` go to RelayClient) that records what it gets."""
    identity = new_identity()
    received: list[tuple[bytes, list[bytes]]] = []
    states: list[RelayState] = []
    probed_by: set[bytes] = set()

    def on_datagrams(source: bytes, datagrams: list[bytes]) -> None:
        if PROBE in datagrams:
            probed_by.add(source)
        if kept := [d for d in datagrams if d != PROBE]:
            received.append((source, kept))

    client = RelayClient(
        url, identity, on_datagrams=on_datagrams, on_state=states.append, **options
    )
    return Node(identity, client, received, states, probed_by)


@pytest.fixture
async def nodes() -> AsyncIterator[Callable[[str], Awaitable[Node]]]:
    """Connected relay clients, closed when the test ends."""
    started: list[Node] = []

    async def connect(url: str) -> Node:
        node = make_node(url)
        started.append(node)
        node.client.start()
        await node.client.wait_connected(DEADLINE)
        return node

    yield connect
    for node in started:
        await node.client.close()


async def until(condition: Callable[[], bool], what: str, deadline: float = DEADLINE) -> None:
    """Poll `condition` until it holds; fail the test naming `what` if it never does."""
    end = time.monotonic() + deadline
    while not condition():
        if time.monotonic() > end:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


async def reachable(sender: Node, receiver: Node) -> None:
    """Wait until the relay forwards from `sender` to `receiver` (a relay confirms a client's
    handshake before it can route to it, and drops what it cannot route yet), then forget what
    `receiver` received before. Probes that arrive later are not counted as received."""
    end = time.monotonic() + DEADLINE
    receiver.probed_by.discard(sender.key)
    while sender.key not in receiver.probed_by:
        if time.monotonic() > end:
            pytest.fail("the relay never forwarded between the two clients")
        sender.client.send(receiver.key, [PROBE])
        await asyncio.sleep(0.05)
    receiver.received.clear()


async def two_clients(nodes: Callable[[str], Awaitable[Node]], url: str) -> tuple[Node, Node]:
    """alice and bob, connected to the relay at `url`, alice's datagrams reaching bob."""
    alice, bob = await nodes(url), await nodes(url)
    await reachable(alice, bob)
    return alice, bob


def is_connected(node: Node) -> bool:
    return node.client.state == "connected"


def have_arrived(node: Node, source: bytes, count: int) -> Callable[[], bool]:
    return lambda: len(node.datagrams_from(source)) >= count


# -- a real iroh-relay ------------------------------------------------------------------------


async def test_datagrams_cross_the_relay_both_ways_with_their_source_key(
    iroh_relay: IrohRelay, nodes: Callable[[str], Awaitable[Node]]
) -> None:
    alice, bob = await two_clients(nodes, iroh_relay.url)
    await reachable(bob, alice)
    assert alice.client.protocol == "iroh-relay-v2"
    # Every size from 1 to 1472: growing sizes leave one frame each, shrinking ones pair up
    # into batches whose last datagram is shorter.
    upwards = [os.urandom(size) for size in range(1, 1473)]
    downwards = upwards[::-1]
    # In rounds, because the relay drops what does not fit a receiver's queue of 512 frames.
    for start in range(0, len(upwards), 256):
        alice.client.send(bob.key, upwards[start : start + 256])
        bob.client.send(alice.key, downwards[start : start + 256])
        arrived = min(start + 256, len(upwards))
        await until(have_arrived(bob, alice.key, arrived), "alice's datagrams at bob")
        await until(have_arrived(alice, bob.key, arrived), "bob's datagrams at alice")
    assert bob.datagrams_from(alice.key) == upwards
    assert alice.datagrams_from(bob.key) == downwards
    assert all(len(batch) <= 2 for _, batch in alice.received)
    assert any(len(batch) == 2 for _, batch in alice.received)


async def test_equal_datagrams_travel_in_batches_of_at_most_64_kib(
    iroh_relay: IrohRelay, nodes: Callable[[str], Awaitable[Node]]
) -> None:
    alice, bob = await two_clients(nodes, iroh_relay.url)
    datagrams = [os.urandom(1472) for _ in range(100)]
    alice.client.send(bob.key, datagrams)
    await until(have_arrived(bob, alice.key, 100), "100 datagrams")
    assert bob.datagrams_from(alice.key) == datagrams
    per_frame = (MAX_DATAGRAM - 2) // 1472  # less the segment size
    assert [len(batch) for _, batch in bob.received] == [per_frame, per_frame, 100 - 2 * per_frame]


async def test_frames_at_the_64_kib_limit_cross_and_larger_datagrams_are_refused(
    iroh_relay: IrohRelay, nodes: Callable[[str], Awaitable[Node]]
) -> None:
    alice, bob = await two_clients(nodes, iroh_relay.url)
    largest = os.urandom(MAX_DATAGRAM)  # a frame of exactly 64 KiB
    half = (MAX_DATAGRAM - 2) // 2  # two of these fill a batch frame exactly
    pair = [os.urandom(half), os.urandom(half)]
    too_big_for_one_batch = [os.urandom(half + 1), os.urandom(half + 1)]
    expected = [largest, *pair, *too_big_for_one_batch]
    alice.client.send(bob.key, [largest])
    alice.client.send(bob.key, pair)
    alice.client.send(bob.key, too_big_for_one_batch)
    await until(have_arrived(bob, alice.key, len(expected)), "the large datagrams")
    assert bob.datagrams_from(alice.key) == expected
    assert [len(batch) for _, batch in bob.received] == [1, 2, 1, 1]
    with pytest.raises(ValueError, match="at most"):
        alice.client.send(bob.key, [os.urandom(MAX_DATAGRAM + 1)])


async def test_beyond_the_queue_limit_datagrams_are_dropped_not_queued(
    iroh_relay: IrohRelay, nodes: Callable[[str], Awaitable[Node]]
) -> None:
    alice, bob = await two_clients(nodes, iroh_relay.url)
    datagrams = [os.urandom(1472) for _ in range(3000)]  # about 4.4 MB in one go
    fits = QUEUE_LIMIT // 1472
    alice.client.send(bob.key, datagrams)
    assert alice.client.dropped == len(datagrams) - fits
    assert alice.client.queued_bytes == fits * 1472
    await until(have_arrived(bob, alice.key, fits), "the datagrams that fitted")
    assert bob.datagrams_from(alice.key) == datagrams[:fits]
    await until(lambda: alice.client.queued_bytes == 0, "an empty queue")


async def test_datagrams_sent_before_connecting_are_dropped_silently(
    iroh_relay: IrohRelay,
) -> None:
    node = make_node(iroh_relay.url)
    node.client.send(new_identity().peer_id.raw, [b"early"])
    assert node.client.dropped == 1
    assert node.client.state == "disconnected"
    await node.client.close()
    assert node.states == ["closed"]


async def test_a_restarted_relay_is_reconnected_and_traffic_resumes(
    iroh_relay: IrohRelay, nodes: Callable[[str], Awaitable[Node]]
) -> None:
    alice, bob = await two_clients(nodes, iroh_relay.url)
    alice.client.send(bob.key, [b"before"])
    await until(have_arrived(bob, alice.key, 1), "the first datagram")
    assert bob.datagrams_from(alice.key) == [b"before"]

    await asyncio.to_thread(iroh_relay.restart)  # SIGKILL, then the same port again
    for node in (alice, bob):
        await until(partial(operator.contains, node.states, "disconnected"), "a disconnection")
        await until(partial(is_connected, node), "the reconnection")
        assert node.states[:3] == ["connecting", "connected", "disconnected"]

    await reachable(alice, bob)  # traffic resumes by itself: no call on the clients but send
    await reachable(bob, alice)
    alice.client.send(bob.key, [b"after"])
    bob.client.send(alice.key, [b"back"])
    await until(have_arrived(bob, alice.key, 1), "alice's datagram after the restart")
    await until(have_arrived(alice, bob.key, 1), "bob's datagram after the restart")
    assert bob.datagrams_from(alice.key) == [b"after"]
    assert alice.datagrams_from(bob.key) == [b"back"]


async def test_a_relay_that_denies_the_key_is_a_clear_error(tmp_path: Path) -> None:
    identity = new_identity()
    config = f'access.denylist = ["{identity.peer_id.raw.hex()}"]'
    with IrohRelay(require_iroh_relay(), tmp_path, config=config) as server:
        client = RelayClient(server.url, identity, on_datagrams=lambda _k, _d: None)
        client.start()
        try:
            with pytest.raises(TransferError, match=r"refused this node \(not authorized\)"):
                await client.wait_connected(DEADLINE)
        finally:
            await client.close()
        # Another key is welcome: the refusal was about this one.
        other = RelayClient(server.url, new_identity(), on_datagrams=lambda _k, _d: None)
        other.start()
        try:
            await other.wait_connected(DEADLINE)
        finally:
            await other.close()


@pytest.mark.slow
async def test_the_relays_keepalive_pings_are_answered(
    iroh_relay: IrohRelay, nodes: Callable[[str], Awaitable[Node]]
) -> None:
    # The server pings an idle client every 16-20 s and drops it if the pong is not back within
    # 5 s; so a second ping on the same connection proves the first was answered correctly.
    node = await nodes(iroh_relay.url)
    await until(lambda: node.client.pings_answered >= 2, "two pings from the relay", 60)
    assert node.states == ["connecting", "connected"]


async def test_latency_probe_and_home_relay_choice(iroh_relay: IrohRelay) -> None:
    latency = await relay_latency(iroh_relay.url, DEADLINE)
    assert latency is not None
    assert latency > 0
    nobody = f"http://127.0.0.1:{free_port()}"
    assert await relay_latency(nobody, DEADLINE) is None
    assert await choose_home_relay([nobody, iroh_relay.url], DEADLINE) == iroh_relay.url
    assert await choose_home_relay([nobody], DEADLINE) is None


async def test_the_home_relay_is_the_one_that_answers_its_probe_sooner(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 10: of two relays, the lower latency one is home. Which is slower is made certain
    by events, not by delays: the slow relay's probe has been asked before the fast one's
    connection is even opened, and is answered only after the fast one's prober has read its
    answer and hung up. The slow probe's interval holds the fast one's whole."""
    slow_asked, fast_gone = asyncio.Event(), asyncio.Event()
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"

    async def slow(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        slow_asked.set()
        await fast_gone.wait()
        writer.write(ok)
        writer.close()

    async def fast(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(ok)
            await reader.read()  # until the prober, having read the status line, hangs up
        except ConnectionError:
            pass
        finally:
            fast_gone.set()
            writer.close()

    async with (
        await asyncio.start_server(slow, "127.0.0.1", 0) as slow_server,
        await asyncio.start_server(fast, "127.0.0.1", 0) as fast_server,
    ):
        slow_port = slow_server.sockets[0].getsockname()[1]
        fast_port = fast_server.sockets[0].getsockname()[1]
        open_connection = asyncio.open_connection

        async def after_the_slow_probe(host: str, port: int, **options: Any) -> Any:
            if port == fast_port:
                await slow_asked.wait()
            return await open_connection(host, port, **options)

        monkeypatch.setattr(asyncio, "open_connection", after_the_slow_probe)
        urls = [f"http://127.0.0.1:{slow_port}", f"http://127.0.0.1:{fast_port}"]
        # The slow one first: were the latencies equal, it would be chosen and the test fail.
        assert await choose_home_relay(urls, DEADLINE) == urls[1]
        assert slow_asked.is_set()
        assert fast_gone.is_set()


async def test_an_unreachable_relay_times_out_with_the_reason() -> None:
    client = RelayClient(
        f"http://127.0.0.1:{free_port()}", new_identity(), on_datagrams=lambda _k, _d: None
    )
    client.start()
    try:
        with pytest.raises(TransferError, match=r"within 1\.5 s \(last error: cannot reach it"):
            await client.wait_connected(1.5)
    finally:
        await client.close()
    with pytest.raises(TransferError, match="closed"):
        await client.wait_connected(1)


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh network namespace with only its loopback up, deleted afterwards."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        skip_unless_ci("a network namespace needs root and iproute2")
    name = f"rdrelay{os.getpid()}"
    subprocess.run(["ip", "netns", "add", name], check=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "delete", name], check=False)


# Run inside the namespace: two clients exchange a datagram through the relay there.
_EXCHANGE = """
import asyncio, sys
import nacl.signing
from ringdrop.identity import Identity
from ringdrop.transport.relay import RelayClient

async def main(url):
    got = asyncio.get_running_loop().create_future()
    a, b = (Identity(nacl.signing.SigningKey.generate()) for _ in range(2))
    alice = RelayClient(url, a, lambda _k, _d: None)
    bob = RelayClient(url, b, lambda k, d: got.done() or got.set_result((k, d)))
    for client in (alice, bob):
        client.start()
        await client.wait_connected(30)
    alice.send(b.peer_id.raw, [b"inside"])
    source, datagrams = await asyncio.wait_for(got, 30)
    print("ok" if (source, datagrams) == (a.peer_id.raw, [b"inside"]) else "wrong")
    await alice.close()
    await bob.close()

asyncio.run(main(sys.argv[1]))
"""


def test_a_relay_runs_inside_a_network_namespace(netns: str, tmp_path: Path) -> None:
    # The namespace has a loopback of its own, so any fixed port is free there.
    with IrohRelay(require_iroh_relay(), tmp_path, port=3340, netns=netns) as server:
        result = subprocess.run(
            ["ip", "netns", "exec", netns, sys.executable, "-c", _EXCHANGE, server.url],
            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.stdout.strip() == "ok", result.stderr
        server.restart()  # the same port again, in the same namespace
        assert server.running


def test_relay_urls_map_to_the_websocket_path() -> None:
    assert relay._websocket_url("https://relay.example.") == "wss://relay.example./relay"
    assert relay._websocket_url("http://127.0.0.1:3340/x?y") == "ws://127.0.0.1:3340/relay"
    assert relay._websocket_url("http://[::1]:3340") == "ws://[::1]:3340/relay"
    with pytest.raises(ValueError, match="not a relay URL"):
        RelayClient("ftp://relay.example", new_identity(), on_datagrams=lambda _k, _d: None)
    with pytest.raises(ValueError, match=r"[Pp]ort"):
        RelayClient("https://relay.example:99999", new_identity(), on_datagrams=lambda _k, _d: None)


# -- fake relays: what a real one does rarely or never ----------------------------------------

Scenario = Callable[[ServerConnection, bytes], Awaitable[None]]


async def authenticate(ws: ServerConnection) -> bytes:
    """The server's side of the handshake, checking the client's proof; returns its key."""
    challenge = os.urandom(16)
    await ws.send(b"\x00" + challenge)
    auth = await ws.recv()
    assert isinstance(auth, bytes)
    assert auth[0] == 1
    assert len(auth) == 1 + 32 + 1 + 64
    assert auth[33] == 64  # postcard's length of the signature bytes
    key, signature = auth[1:33], auth[34:]
    message = blake3.blake3(challenge, derive_key_context=_CHALLENGE_CONTEXT).digest()
    nacl.signing.VerifyKey(key).verify(message, signature)  # raises if the proof is bad
    await ws.send(b"\x02")
    return key


class FakeRelay:
    """A WebSocket server on 127.0.0.1 that runs `scenario(ws, client_key)` for each client
    after a correct handshake (or, with `handshake=False`, straight after the upgrade), then
    holds the connection until the client leaves. Failures inside are kept in `errors`. Like
    a real relay it answers the latency probe, `GET /ping`. With `tls`, it serves HTTPS as
    `localhost`."""

    def __init__(
        self,
        scenario: Scenario,
        subprotocols: Sequence[str] | None = ("iroh-relay-v2",),
        handshake: bool = True,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.scenario = scenario
        self.tls = tls
        self.subprotocols = None if subprotocols is None else [Subprotocol(s) for s in subprotocols]
        self.handshake = handshake
        self.connections = 0
        self.offered: list[str | None] = []
        self.connected_at: list[float] = []
        self.errors: list[BaseException] = []
        self.url = ""
        self._server: Server | None = None

    async def __aenter__(self) -> FakeRelay:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            subprotocols=self.subprotocols,
            compression=None,
            process_request=self._probe,
            ssl=self.tls,
        )
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"https://localhost:{port}" if self.tls else f"http://127.0.0.1:{port}"
        return self

    @staticmethod
    def _probe(ws: ServerConnection, request: Request) -> Response | None:
        return ws.respond(200, "") if request.path == "/ping" else None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        self.connected_at.append(time.monotonic())
        self.offered.append(
            ws.request.headers.get("Sec-WebSocket-Protocol") if ws.request else None
        )
        try:
            key = await authenticate(ws) if self.handshake else b""
            await self.scenario(ws, key)
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        except Exception as error:  # reported by the test, not lost in the server's log
            self.errors.append(error)


async def connected_client(fake: FakeRelay, **options: Any) -> Node:
    node = make_node(fake.url, **options)
    node.client.start()
    await node.client.wait_connected(DEADLINE)
    return node


async def test_pings_are_answered_with_the_same_bytes() -> None:
    pongs: list[bytes] = []

    async def scenario(ws: ServerConnection, _key: bytes) -> None:
        for _ in range(2):
            data = os.urandom(8)
            await ws.send(b"\x09" + data)
            pong = await ws.recv()
            assert pong == b"\x0a" + data
            pongs.append(data)

    async with FakeRelay(scenario) as fake:
        node = await connected_client(fake)
        try:
            await until(lambda: len(pongs) == 2 or bool(fake.errors), "two pongs")
            assert fake.errors == []
            assert node.client.pings_answered == 2
        finally:
            await node.client.close()


SOURCE = bytes(range(32))


def datagram_frame(payload: bytes, kind: bytes = b"\x06") -> bytes:
    return kind + SOURCE + b"\x00" + payload


JUNK: list[bytes | str] = [
    b"",  # no frame type at all
    "a text message",
    b"\x3f" + b"unknown frame type 63",
    b"\x80\x00",  # a truncated four-byte varint
    b"\x06" + SOURCE[:10],  # a datagram frame shorter than its key
    b"\x07" + SOURCE + b"\x00\x00",  # a batch without its whole segment size
    datagram_frame(bytes(MAX_PAYLOAD)),  # a payload over 64 KiB
    b"\x09abc",  # a ping of 3 bytes
    b"\x08" + SOURCE[:5],  # endpoint gone with a short key
    b"\x0c\x00\x00",  # restarting without its two durations
    b"\x0d",  # a status without its byte
    b"\x0b" + b"health is v1 only",
]


async def test_junk_from_the_relay_is_skipped_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    valid = [
        datagram_frame(b"first"),
        b"\x40\x06" + SOURCE + b"\x00" + b"type in a two-byte varint",
        datagram_frame(b"\x00\x03abcdefg", kind=b"\x07"),  # segments abc, def, g
        datagram_frame(b"\x00\x00whole", kind=b"\x07"),  # segment size 0: one datagram
        datagram_frame(b""),  # nothing to deliver, but not wrong
        b"\x08" + SOURCE,  # endpoint gone
        b"\x0d\x00",  # status: healthy
    ]

    async def scenario(ws: ServerConnection, _key: bytes) -> None:
        for frame in JUNK:
            await ws.send(frame)
        for frame in valid:
            await ws.send(frame)
        await ws.send(datagram_frame(b"last"))

    caplog.set_level(logging.DEBUG, "ringdrop.transport")
    async with FakeRelay(scenario) as fake:
        node = await connected_client(fake)
        try:
            await until(lambda: b"last" in node.datagrams_from(SOURCE), "the last datagram")
            assert node.datagrams_from(SOURCE) == [
                b"first",
                b"type in a two-byte varint",
                b"abc",
                b"def",
                b"g",
                b"whole",
                b"last",
            ]
            assert node.client.invalid_frames == len(JUNK)
            assert fake.connections == 1
            assert node.states == ["connecting", "connected"]
            assert fake.errors == []
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warnings) == relay._WARN_LIMIT  # reported, without flooding the log
        finally:
            await node.client.close()


async def test_a_message_beyond_the_size_limit_costs_the_connection_not_the_client() -> None:
    async def scenario(ws: ServerConnection, _key: bytes) -> None:
        if fake.connections == 1:
            await ws.send(datagram_frame(bytes(4 * MAX_PAYLOAD)))
        else:
            await ws.send(datagram_frame(b"after reconnecting"))

    async with FakeRelay(scenario) as fake:
        node = await connected_client(fake)
        try:
            await until(lambda: node.datagrams_from(SOURCE) != [], "a datagram")
            assert node.datagrams_from(SOURCE) == [b"after reconnecting"]
            assert fake.connections == 2
        finally:
            await node.client.close()


async def test_a_failing_datagram_handler_does_not_stop_the_client() -> None:
    async def scenario(ws: ServerConnection, _key: bytes) -> None:
        await ws.send(datagram_frame(b"boom"))
        await ws.send(datagram_frame(b"fine"))

    seen: list[bytes] = []

    def handler(_source: bytes, datagrams: list[bytes]) -> None:
        seen.extend(datagrams)
        if datagrams == [b"boom"]:
            raise RuntimeError("a bug in the path layer")

    async with FakeRelay(scenario) as fake:
        client = RelayClient(fake.url, new_identity(), on_datagrams=handler)
        client.start()
        try:
            await until(lambda: seen == [b"boom", b"fine"], "both datagrams")
            assert client.state == "connected"
        finally:
            await client.close()


async def test_a_v1_only_relay_is_spoken_to_in_v1() -> None:
    received: list[bytes] = []

    async def scenario(ws: ServerConnection, key: bytes) -> None:
        await ws.send(b"\x0b" + b"a v1 health problem")  # allowed in v1
        await ws.send(b"\x0d\x00")  # status is v2 only
        await ws.send(datagram_frame(b"hello v1"))
        frame = await ws.recv()
        assert isinstance(frame, bytes)
        received.append(frame)

    async with FakeRelay(scenario, subprotocols=["iroh-relay-v1"]) as fake:
        node = await connected_client(fake)
        try:
            assert node.client.protocol == "iroh-relay-v1"
            assert fake.offered == ["iroh-relay-v2, iroh-relay-v1"]
            await until(lambda: node.datagrams_from(SOURCE) == [b"hello v1"], "the datagram")
            node.client.send(SOURCE, [b"reply"])
            await until(lambda: bool(received), "the reply at the relay")
            assert received == [b"\x04" + SOURCE + b"\x00" + b"reply"]
            assert node.client.invalid_frames == 1
            assert fake.errors == []
        finally:
            await node.client.close()


async def test_a_restart_notice_is_honoured() -> None:
    async def scenario(ws: ServerConnection, _key: bytes) -> None:
        if fake.connections == 1:
            # Reconnect in 300 ms, keep trying for 5 s.
            await ws.send(b"\x0c" + (300).to_bytes(4, "big") + (5000).to_bytes(4, "big"))

    async with FakeRelay(scenario) as fake:
        node = await connected_client(fake)
        try:
            await until(lambda: fake.connections == 2, "the second connection")
            await until(lambda: node.client.state == "connected", "the reconnection")
            assert fake.connected_at[1] - fake.connected_at[0] >= 0.3  # it waited as told
            assert node.states == [
                "connecting",
                "connected",
                "disconnected",
                "connecting",
                "connected",
            ]
        finally:
            await node.client.close()


async def test_a_silent_relay_is_pinged_then_abandoned() -> None:
    pings: list[bytes] = []

    async def scenario(ws: ServerConnection, _key: bytes) -> None:
        async for frame in ws:  # never answers: a relay whose host vanished
            assert isinstance(frame, bytes)
            if frame[0] == 9:
                pings.append(frame)

    async with FakeRelay(scenario) as fake:
        node = await connected_client(fake, keepalive=(0.3, 1.0))
        try:
            await until(lambda: fake.connections == 2, "a new connection")
            assert pings
            assert all(len(ping) == 9 for ping in pings)
            assert "disconnected" in node.states
        finally:
            await node.client.close()


@pytest.mark.parametrize(
    ("first_frame", "what"),
    [
        (b"\x3fgarbage", "frame type 63"),
        ("text", "a text message"),
        (b"\x00short", "a challenge shorter than 16 bytes"),
        (b"", "an empty or truncated frame"),
    ],
)
async def test_a_server_garbling_the_handshake_is_a_clear_error(
    first_frame: bytes | str, what: str
) -> None:
    async def scenario(ws: ServerConnection, _key: bytes) -> None:
        await ws.send(first_frame)

    async with FakeRelay(scenario, handshake=False) as fake:
        client = RelayClient(fake.url, new_identity(), on_datagrams=lambda _k, _d: None)
        client.start()
        try:
            with pytest.raises(
                TransferError, match="does not speak the iroh relay protocol"
            ) as info:
                await client.wait_connected(DEADLINE)
            assert what in str(info.value)
        finally:
            await client.close()


async def test_a_denial_after_a_valid_proof_carries_the_servers_reason() -> None:
    async def scenario(ws: ServerConnection, _key: bytes) -> None:
        challenge = os.urandom(16)
        await ws.send(b"\x00" + challenge)
        await ws.recv()
        reason = b"relay full, try later"
        await ws.send(b"\x03" + bytes([len(reason)]) + reason)

    async with FakeRelay(scenario, handshake=False) as fake:
        client = RelayClient(fake.url, new_identity(), on_datagrams=lambda _k, _d: None)
        client.start()
        try:
            with pytest.raises(TransferError, match=r"refused this node \(relay full, try later\)"):
                await client.wait_connected(DEADLINE)
        finally:
            await client.close()


async def test_a_relay_that_denies_us_is_not_asked_again() -> None:
    async def scenario(ws: ServerConnection, _key: bytes) -> None:
        await ws.send(b"\x00" + os.urandom(16))
        await ws.recv()
        reason = b"not authorized"
        await ws.send(b"\x03" + bytes([len(reason)]) + reason)

    async with FakeRelay(scenario, handshake=False) as fake:
        client = RelayClient(fake.url, new_identity(), on_datagrams=lambda _k, _d: None)
        client.start()
        try:
            # Its task ends on the denial: once it has, no other connection can come.
            await until(lambda: not client.running, "the client giving up")
            assert fake.connections == 1
            assert client.refused is not None
            assert "refused this node (not authorized)" in str(client.refused)
            with pytest.raises(TransferError, match="not authorized"):
                await client.wait_connected(DEADLINE)
        finally:
            await client.close()


async def test_a_relay_named_by_others_is_not_dialled_at_a_private_address(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An https relay, its certificate trusted, under a name (localhost) that resolves to this
    # machine: a ticket naming it must not make the node connect there.
    cert, key = self_signed_localhost(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))

    async def scenario(ws: ServerConnection, _key: bytes) -> None:
        await ws.send(datagram_frame(b"should not arrive"))

    async with FakeRelay(scenario, tls=server_tls) as fake:
        client = RelayClient(
            fake.url, new_identity(), on_datagrams=lambda _k, _d: None, public_only=True
        )
        client.start()
        try:
            with pytest.raises(TransferError, match=r"is at 127\.0\.0\.1, not a public address"):
                await client.wait_connected(DEADLINE)
            assert not client.running
        finally:
            await client.close()
        trusted = await connected_client(fake)  # the same relay, configured here: used
        await trusted.client.close()
    assert fake.connections == 1


async def test_a_websocket_server_without_the_relay_subprotocol_is_refused() -> None:
    async def scenario(ws: ServerConnection, _key: bytes) -> None:
        await ws.send(b"\x00" + bytes(16))

    async with FakeRelay(scenario, subprotocols=None, handshake=False) as fake:
        client = RelayClient(fake.url, new_identity(), on_datagrams=lambda _k, _d: None)
        client.start()
        try:
            with pytest.raises(TransferError, match="is not an iroh relay"):
                await client.wait_connected(DEADLINE)
        finally:
            await client.close()


def self_signed_localhost(folder: Path) -> tuple[Path, Path]:
    """A certificate for `localhost` that is its own CA, and its key: (cert, key) files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "localhost.pem", folder / "localhost.key"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_an_https_relay_is_reached_over_verified_tls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cert, key = self_signed_localhost(tmp_path)
    server_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_tls.load_cert_chain(cert, key)

    async def scenario(ws: ServerConnection, _key: bytes) -> None:
        await ws.send(datagram_frame(b"over tls"))

    async with FakeRelay(scenario, tls=server_tls) as fake:
        # Untrusted, the certificate stops both the probe and the connection...
        assert await relay_latency(fake.url, DEADLINE) is None
        client = RelayClient(fake.url, new_identity(), on_datagrams=lambda _k, _d: None)
        client.start()
        try:
            with pytest.raises(
                TransferError, match=r"invalid TLS certificate \(self.signed certificate\)"
            ):
                await client.wait_connected(DEADLINE)
        finally:
            await client.close()
        # ... and trusted (the system's CA file), it is verified and used.
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        assert await relay_latency(fake.url, DEADLINE) is not None
        node = await connected_client(fake)
        try:
            await until(lambda: node.datagrams_from(SOURCE) == [b"over tls"], "the datagram")
            assert fake.errors == []
        finally:
            await node.client.close()


async def test_an_unexpected_failure_is_logged_and_the_client_reconnects(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    original = RelayClient._next_frame
    calls = 0

    def fails_once(self: RelayClient) -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("a bug in the writer")
        return original(self)

    monkeypatch.setattr(RelayClient, "_next_frame", fails_once)
    frames: list[bytes | str] = []

    async def scenario(ws: ServerConnection, _key: bytes) -> None:
        async for frame in ws:
            frames.append(frame)

    async with FakeRelay(scenario) as fake:
        node = await connected_client(fake)
        try:
            node.client.send(SOURCE, [b"meets the bug"])
            await until(lambda: fake.connections == 2, "a new connection")
            await until(partial(is_connected, node), "the reconnection")
            node.client.send(SOURCE, [b"after"])
            await until(lambda: bool(frames), "a frame at the relay")
            assert frames == [b"\x04" + SOURCE + b"\x00" + b"after"]
            assert "a bug in the writer" in caplog.text
        finally:
            await node.client.close()


async def test_a_second_connection_with_the_same_key_displaces_the_first_until_it_leaves(
    iroh_relay: IrohRelay, nodes: Callable[[str], Awaitable[Node]]
) -> None:
    first = await nodes(iroh_relay.url)
    peer = await nodes(iroh_relay.url)
    received: list[bytes] = []
    second = RelayClient(
        iroh_relay.url, first.identity, on_datagrams=lambda _k, d: received.extend(d)
    )
    second.start()
    try:
        await second.wait_connected(DEADLINE)
        await until(lambda: first.client.displaced, "the first connection displaced")
        peer.client.send(first.key, [b"to the newest"])
        await until(lambda: received == [b"to the newest"], "the datagram at the second")
    finally:
        await second.close()
    await until(lambda: not first.client.displaced, "the first connection active again")
    peer.client.send(first.key, [b"to the first"])
    await until(have_arrived(first, peer.key, 1), "the datagram at the first")
    assert first.datagrams_from(peer.key) == [b"to the first"]
    assert first.states == ["connecting", "connected"]  # it never reconnected to take over
