"""The transport over real QUIC on loopback: authentication, transfers, limits, cancellation."""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from ringdrop.bao import ChunkRanges, Decoder, Encoder, create_outboard
from ringdrop.errors import TransferError, WrongPeerError
from ringdrop.identity import Identity, PeerId
from ringdrop.protocol import (
    MAX_CANDIDATES,
    MAX_REQUEST_BYTES,
    NONCE_BYTES,
    Catalog,
    CatalogEntry,
    CatalogRequest,
    GetRequest,
    Hello,
    PathsChannel,
    Proof,
    Request,
    Requester,
    ResponseHeader,
    StreamEnded,
    encode,
    proof_message,
)
from ringdrop.ticket import Address
from ringdrop.transport import (
    Connection,
    Limits,
    Reply,
    Server,
    available_backends,
    connect,
    serve,
)
from ringdrop.transport._client import BODY_PIECE
from ringdrop.transport._link import PROTOCOL_ERROR, _termination_error
from tests.files import pseudo_random
from tests.hostile import AUTH_STREAM, HostilePeer, first_frame, hostile
from tests.node.relay import Relay

LOOPBACK = ip_address("127.0.0.1")
SHARER = Identity(nacl.signing.SigningKey(b"sharer".ljust(32, b".")))
RECEIVER = Identity(nacl.signing.SigningKey(b"receiver".ljust(32, b".")))
MALLORY = Identity(nacl.signing.SigningKey(b"mallory".ljust(32, b".")))
Handler = Callable[[PeerId, Request], Awaitable[Reply]]
TIMEOUT = 20.0  # a failsafe around each test's body: a hang fails the test, never the run


class Blob:
    """A blob on disk with its outboard, served through the native Encoder."""

    def __init__(self, directory: Path, size: int) -> None:
        self.data = pseudo_random(size)
        self.path, self.outboard = directory / "blob", directory / "blob.obao"
        self.path.write_bytes(self.data)
        self.root, self.size = create_outboard(self.path, self.outboard)
        self.pulled = 0
        self.closed = asyncio.Event()

    def reply(self, ranges: ChunkRanges, piece: int = 64 * 1024) -> Reply:
        encoder = Encoder(self.path, self.outboard, self.root, self.size, ranges)

        async def pieces() -> AsyncIterator[bytes]:
            try:
                while chunk := encoder.read(piece):
                    self.pulled += len(chunk)
                    yield chunk
            finally:
                self.closed.set()

        return Reply(ResponseHeader("allowed"), pieces())

    async def handler(self, peer: PeerId, request: Request) -> Reply:
        assert isinstance(request, GetRequest)
        return self.reply(request.ranges)

    def request(self) -> GetRequest:
        return GetRequest(self.root, ChunkRanges.all())


async def receive(connection: Connection, request: GetRequest, target: Path) -> bytes:
    header, body = await connection.request(request)
    header.raise_for_status()
    decoder = Decoder(request.content_hash, request.ranges, data=target)
    async for piece in body:
        decoder.write(piece)
    decoder.finish()
    return target.read_bytes()


async def start_sharer(handler: Handler, limits: Limits | None = None, **options: Any) -> Server:
    return await serve(SHARER, 0, handler, limits, host="127.0.0.1", **options)


async def dial(server: Server, identity: Identity = RECEIVER, **options: Any) -> Connection:
    return await connect(identity, SHARER.peer_id, [Address(LOOPBACK, server.port)], **options)


async def refuse(peer: PeerId, request: Request) -> Reply:
    return Reply(ResponseHeader("denied", "not in any ring"))


@pytest.mark.parametrize("backend", available_backends())
async def test_a_multi_mib_blob_arrives_byte_exact(tmp_path: Path, backend: Any) -> None:
    blob = Blob(tmp_path, 5 * 2**20 + 12345)
    async with asyncio.timeout(TIMEOUT):
        server = await start_sharer(blob.handler, backend=backend)
        async with server, await dial(server, backend=backend) as connection:
            received = await receive(connection, blob.request(), tmp_path / "received")
    assert received == blob.data


async def test_a_reader_slower_than_the_network_still_gets_every_byte(tmp_path: Path) -> None:
    blob = Blob(tmp_path, 24 * 2**20)  # more than the receiver queues before it stops reading
    async with asyncio.timeout(TIMEOUT):
        async with await start_sharer(blob.handler) as server, await dial(server) as connection:
            _, body = await connection.request(blob.request())
            decoder = Decoder(blob.root, ChunkRanges.all(), data=tmp_path / "received")
            async for piece in body:
                if not decoder.verified_bytes:
                    await asyncio.sleep(0.3)  # meanwhile the content piles up, then waits
                decoder.write(piece)
            decoder.finish()
    assert (tmp_path / "received").read_bytes() == blob.data


@pytest.mark.parametrize("backend", available_backends())
async def test_a_reader_that_fell_behind_gets_its_backlog_a_mib_at_a_time(
    tmp_path: Path, backend: Any
) -> None:
    blob = Blob(tmp_path, 12 * 2**20)
    sizes: list[int] = []
    async with asyncio.timeout(TIMEOUT):
        server = await start_sharer(blob.handler, backend=backend)
        async with server, await dial(server, backend=backend) as connection:
            _, body = await connection.request(blob.request())
            decoder = Decoder(blob.root, ChunkRanges.all(), data=tmp_path / "received")
            async for piece in body:
                while not sizes and not connection._link.held:
                    # Meanwhile MiBs pile up, until the link holds the rest (or the failsafe
                    # ends the test).
                    await asyncio.sleep(0.05)
                sizes.append(len(piece))
                decoder.write(piece)
            decoder.finish()
    assert (tmp_path / "received").read_bytes() == blob.data
    # The backlog of more than 2 MiB came in pieces of at most a MiB, not in one (a piece ends
    # at a chunk's end, and qh3's chunks are up to 64 KiB).
    assert max(sizes) <= BODY_PIECE
    assert sum(size > BODY_PIECE // 2 for size in sizes) >= 2


@pytest.mark.parametrize("backend", available_backends())
async def test_content_in_one_byte_frames_is_queued_in_few_objects(backend: Any) -> None:
    # A hostile sharer: each byte of its answer goes out on its own, one STREAM frame a packet.
    content = pseudo_random(8192)
    sent = asyncio.Event()

    async def one_byte_frames(peer: PeerId, request: Request) -> Reply:
        async def pieces() -> AsyncIterator[bytes]:
            for at in range(len(content)):
                yield content[at : at + 1]
                await asyncio.sleep(0)  # the link sends what it has before the next byte
            sent.set()

        return Reply(ResponseHeader("allowed"), pieces())

    async with asyncio.timeout(TIMEOUT):
        server = await start_sharer(one_byte_frames, backend=backend)
        async with server, await dial(server, backend=backend) as connection:
            header, body = await connection.request(GetRequest(bytes(32), ChunkRanges.all()))
            await sent.wait()
            while body._unread < len(content):  # the last packets may still be on their way
                await asyncio.sleep(0.01)
            # Unread, 8 KiB in 8192 frames is held in a few dozen objects at most, not one a
            # frame (an object per 256 B at most, whatever the frames' sizes).
            assert len(body._chunks) <= len(content) // 256 + 1
            received = b"".join([piece async for piece in body])
    assert header.status == "allowed"
    assert received == content


@pytest.mark.skipif("qh3" not in available_backends(), reason="qh3 is not installed")
async def test_a_stalled_reader_leaves_the_content_to_qh3_and_reads_its_socket_on(
    tmp_path: Path,
) -> None:
    blob = Blob(tmp_path, 48 * 2**20)  # far more than flow control lets the sharer send ahead
    async with asyncio.timeout(TIMEOUT):
        server = await start_sharer(blob.handler, backend="qh3")
        async with server, await dial(server, backend="qh3") as connection:
            _, body = await connection.request(blob.request())
            # Nothing reads the body. Sampled until two in a row agree: the sharer has stopped,
            # out of flow control credit (if it never does, the failsafe ends the test).
            samples = [blob.pulled]
            while len(samples) < 2 or samples[-1] != samples[-2]:
                await asyncio.sleep(0.3)
                samples.append(blob.pulled)
            link = connection._link
            # The link holds what arrives, in qh3, whose credit it withholds: its socket is
            # read on (nothing is dropped for a stalled reader, probes are answered).
            assert link.held
            assert link.endpoint.udp.reading
            decoder = Decoder(blob.root, ChunkRanges.all(), data=tmp_path / "received")
            async for piece in body:
                decoder.write(piece)
            decoder.finish()
    assert samples[-1] < blob.size
    assert (tmp_path / "received").read_bytes() == blob.data


async def test_only_the_missing_ranges_are_sent(tmp_path: Path) -> None:
    blob = Blob(tmp_path, 2**20)
    missing = ChunkRanges.groups(10, 20)
    request = GetRequest(blob.root, missing)
    async with asyncio.timeout(TIMEOUT):
        async with await start_sharer(blob.handler) as server, await dial(server) as connection:
            await receive(connection, request, tmp_path / "partial")
    assert blob.pulled < 11 * 16 * 1024
    assert (tmp_path / "partial").read_bytes()[10 * 16384 : 20 * 16384] == blob.data[163840:327680]


async def test_several_requests_run_at_once_on_one_connection(tmp_path: Path) -> None:
    blob = Blob(tmp_path, 2**20)
    async with asyncio.timeout(TIMEOUT):
        async with await start_sharer(blob.handler) as server, await dial(server) as connection:
            copies = await asyncio.gather(
                *(receive(connection, blob.request(), tmp_path / f"copy{i}") for i in range(4))
            )
    assert copies == [blob.data] * 4


async def test_the_handler_sees_the_authenticated_peer_id() -> None:
    seen: list[PeerId] = []

    async def handler(peer: PeerId, request: Request) -> Reply:
        seen.append(peer)
        return Reply(ResponseHeader("denied"))

    async with asyncio.timeout(TIMEOUT):
        async with await start_sharer(handler) as server, await dial(server) as connection:
            header, _ = await connection.catalog()
    assert header.status == "denied"
    assert seen == [RECEIVER.peer_id]


async def test_a_catalog_travels_as_sent() -> None:
    entries = (
        CatalogEntry("holiday.jpg", b"h" * 32, "blob", 123456),
        CatalogEntry("photos", b"p" * 32, "collection", 9 * 2**30),
    )

    async def handler(peer: PeerId, request: Request) -> Reply:
        assert isinstance(request, CatalogRequest)
        return Reply(ResponseHeader("allowed"), catalog=Catalog(entries))

    async with asyncio.timeout(TIMEOUT):
        async with await start_sharer(handler) as server, await dial(server) as connection:
            _, got = await connection.catalog()
    assert got == entries


async def test_a_refusal_carries_no_content(tmp_path: Path) -> None:
    blob = Blob(tmp_path, 2**20)
    async with asyncio.timeout(TIMEOUT):
        async with await start_sharer(refuse) as server, await dial(server) as connection:
            header, body = await connection.request(blob.request())
            pieces = [piece async for piece in body]
    assert (header, pieces) == (ResponseHeader("denied", "not in any ring"), [])


@pytest.mark.parametrize("backend", available_backends())
async def test_an_impostor_is_named_next_to_the_expected_peer(backend: Any) -> None:
    async with asyncio.timeout(TIMEOUT):
        async with await serve(MALLORY, 0, refuse, host="127.0.0.1", backend=backend) as server:
            with pytest.raises(WrongPeerError) as caught:
                await dial(server, backend=backend)
    assert str(SHARER.peer_id) in str(caught.value)
    assert str(MALLORY.peer_id) in str(caught.value)


class Recorder:
    """A handler that answers every request `denied, served` and remembers who asked."""

    def __init__(self) -> None:
        self.peers: list[PeerId] = []

    async def __call__(self, peer: PeerId, request: Request) -> Reply:
        self.peers.append(peer)
        return Reply(ResponseHeader("denied", "served"))


async def an_honest_peer_is_served(server: Server) -> bool:
    async with await dial(server) as connection:
        header, _ = await connection.catalog()
    return header.reason == "served"


def forged(nonce: bytes) -> bytes:
    """Mallory's proof in the receiver's name, signed with her own key."""
    message = proof_message(SHARER.peer_id, nonce, RECEIVER.peer_id)
    return encode(Proof(RECEIVER.peer_id, MALLORY.sign(message)))


@pytest.mark.parametrize("attack", ["replayed", "relayed", "forged"])
async def test_a_proof_not_made_for_this_connection_closes_it(attack: str) -> None:
    handler = Recorder()
    async with asyncio.timeout(TIMEOUT):
        async with await start_sharer(handler) as server:
            async with hostile(server.port) as receiver:
                recorded = await receiver.authenticate(RECEIVER, SHARER.peer_id)
            async with hostile(server.port) as mallory:
                nonce = await mallory.challenge()
                proof = {
                    "replayed": recorded,  # the receiver's, from its own connection
                    # What the receiver signed when Mallory posed as the sharer to it.
                    "relayed": encode(Proof.sign(RECEIVER, MALLORY.peer_id, nonce)),
                    "forged": forged(nonce),
                }[attack]
                mallory.write(AUTH_STREAM, proof, end_stream=True)
                stream = mallory.open_stream()
                mallory.write(stream, encode(CatalogRequest()), end_stream=True)
                closed = await mallory.closed
                answered = mallory.received(stream)
            served = await an_honest_peer_is_served(server)
    assert closed[0] == PROTOCOL_ERROR
    assert "replayed, relayed or forged" in closed[1]
    assert answered == b""
    assert served
    assert handler.peers == [RECEIVER.peer_id]  # the honest peer's request, and no other


def test_a_close_over_a_protocol_error_reaches_the_honest_side_in_words() -> None:
    error = _termination_error(PROTOCOL_ERROR, "no proof of identity within 1 s")
    assert str(error) == (
        "The peer closed the connection over a protocol error: no proof of identity within 1 s"
    )


@pytest.mark.parametrize("backend", available_backends())
async def test_a_sharer_that_stops_answering_is_said_so_in_plain_words(
    tmp_path: Path, backend: Any
) -> None:
    blob = Blob(tmp_path, 64 * 1024)
    async with asyncio.timeout(TIMEOUT), await start_sharer(blob.handler) as server:
        relay = await Relay(server.port, None).start()
        try:
            address = Address(LOOPBACK, relay.port)
            connection = await connect(
                RECEIVER, SHARER.peer_id, [address], idle_timeout=1.0, backend=backend
            )
            relay.cut = True  # the sharer's machine is gone: not a packet more either way
            with pytest.raises(TransferError) as caught:
                await receive(connection, blob.request(), tmp_path / "received")
            await connection.close()
        finally:
            relay.close()
    assert str(caught.value) == "The peer stopped answering (the connection timed out)."


@pytest.mark.parametrize("hello", [True, False], ids=["after-hello", "without-hello"])
async def test_nothing_is_served_before_the_peer_proves_its_key(hello: bool) -> None:
    handler = Recorder()
    async with asyncio.timeout(TIMEOUT):
        # The limit is the behaviour under test, and it holds for the honest peer too: short
        # enough to wait out, long enough for an honest handshake on a loaded machine.
        async with await start_sharer(handler, Limits(auth_timeout=3.0)) as server:
            async with hostile(server.port) as peer:
                if hello:
                    await peer.challenge()
                stream = AUTH_STREAM + 4  # the next client stream, whether or not 0 was used
                peer.write(stream, encode(CatalogRequest()), end_stream=True)
                closed = await peer.closed
                answered = peer.received(stream)
            served = await an_honest_peer_is_served(server)
    assert closed == (PROTOCOL_ERROR, "no proof of identity within 3 s")
    assert answered == b""
    assert served
    assert handler.peers == [RECEIVER.peer_id]


async def request_on_the_authentication_stream(peer: HostilePeer) -> None:
    peer.write(AUTH_STREAM, encode(CatalogRequest()))


async def proof_before_the_challenge(peer: HostilePeer) -> None:
    early = Proof.sign(RECEIVER, SHARER.peer_id, bytes(NONCE_BYTES))
    peer.write(AUTH_STREAM, encode(Hello()) + encode(early))


async def authentication_ended_without_a_proof(peer: HostilePeer) -> None:
    await peer.challenge()
    peer.write(AUTH_STREAM, b"", end_stream=True)


async def a_stream_of_a_kind_ringdrop_never_uses(peer: HostilePeer) -> None:
    await peer.authenticate(RECEIVER, SHARER.peer_id)
    peer.write(peer.open_stream(unidirectional=True), b"?")


async def too_many_candidates(peer: HostilePeer) -> None:
    await peer.authenticate(RECEIVER, SHARER.peer_id)
    count = MAX_CANDIDATES + 1  # the first byte of a CANDIDATES body
    peer.write(peer.open_stream(), struct.pack(">BIB", PathsChannel.FIRST_BYTE, 1, count))


async def authentication_abandoned(peer: HostilePeer) -> None:
    await peer.challenge()
    peer.abandon(AUTH_STREAM)


async def candidates_piled_up_before_the_proof(peer: HostilePeer) -> None:
    await peer.challenge()
    # Held until the proof, up to a request's size: one byte more is too many.
    peer.write(peer.open_stream(), bytes([PathsChannel.FIRST_BYTE]) + bytes(MAX_REQUEST_BYTES))


@pytest.mark.parametrize(
    ("attack", "reason"),
    [
        (request_on_the_authentication_stream, "frame of type 0x10 where it may not"),
        (proof_before_the_challenge, "must be silent"),
        (authentication_ended_without_a_proof, "middle of the exchange"),
        (a_stream_of_a_kind_ringdrop_never_uses, "kind of stream ringdrop never uses"),
        (too_many_candidates, "a candidate list of a bad length"),
        (authentication_abandoned, "abandoned authentication"),
        (candidates_piled_up_before_the_proof, "too many candidates"),
    ],
)
async def test_a_connection_that_breaks_the_protocol_is_closed_and_others_are_served(
    attack: Callable[[HostilePeer], Awaitable[None]], reason: str
) -> None:
    handler = Recorder()
    async with asyncio.timeout(TIMEOUT):
        async with await start_sharer(handler) as server:
            async with hostile(server.port) as peer:
                await attack(peer)
                closed = await peer.closed
            served = await an_honest_peer_is_served(server)
    assert closed[0] == PROTOCOL_ERROR
    assert reason in closed[1]
    assert served
    assert handler.peers == [RECEIVER.peer_id]


@pytest.mark.parametrize(
    ("request_bytes", "reason"),
    [
        (
            struct.pack(">BI", 0x10, MAX_REQUEST_BYTES + 1) + bytes(MAX_REQUEST_BYTES + 1),
            f"at most {MAX_REQUEST_BYTES}",
        ),
        (encode(Hello()), "frame of type 0x01 where it may not"),
        (encode(ResponseHeader("allowed")), "frame of type 0x11 where it may not"),
        (b"\x10\x00\x00\x00\x02\x07\x00", "protocol version 7"),
        (b"\x10\x00\x00\x00\x02\x01\x09", "unknown operation 9"),
        (encode(CatalogRequest()) * 2, "must be silent"),
        (encode(CatalogRequest())[:4], "middle of the exchange"),
    ],
    ids=[
        "oversized",
        "hello",
        "response",
        "version",
        "operation",
        "two-requests",
        "cut-short",
    ],
)
async def test_a_broken_request_is_refused_and_the_connection_serves_on(
    request_bytes: bytes, reason: str, tmp_path: Path
) -> None:
    blob = Blob(tmp_path, 100_000)
    async with asyncio.timeout(TIMEOUT):
        async with await start_sharer(blob.handler) as server:
            async with hostile(server.port) as peer:
                await peer.authenticate(RECEIVER, SHARER.peer_id)
                refusal = first_frame(await peer.ask(request_bytes))
                requester = Requester()
                answer = await peer.ask(requester.send_request(blob.request()))
                events = requester.receive_data(answer, end_stream=True)
            async with await dial(server) as connection:
                received = await receive(connection, blob.request(), tmp_path / "received")
    assert isinstance(refusal, ResponseHeader)
    assert refusal.status == "error"
    assert reason in refusal.reason
    assert events[0] == ResponseHeader("allowed")
    assert events[-1] == StreamEnded()
    assert received == blob.data


async def test_the_first_address_that_authenticates_wins_over_dead_ones(tmp_path: Path) -> None:
    refused = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    refused.bind(("127.0.0.1", 0))
    refused_port = refused.getsockname()[1]
    refused.close()  # nothing listens there: the kernel answers "port unreachable"
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # receives, never answers
    try:
        async with asyncio.timeout(TIMEOUT):
            async with await start_sharer(refuse) as server:
                working = Address(LOOPBACK, server.port)
                addresses = [
                    Address(LOOPBACK, refused_port),
                    Address(LOOPBACK, silent.getsockname()[1]),
                    working,
                ]
                async with await connect(RECEIVER, SHARER.peer_id, addresses) as connection:
                    path = connection.address
    finally:
        silent.close()
    assert path == f"direct {working}"


async def test_no_working_address_is_one_error_that_lists_each() -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    address = Address(LOOPBACK, silent.getsockname()[1])
    try:
        async with asyncio.timeout(TIMEOUT):
            with pytest.raises(TransferError, match=rf"{address}: no answer within 0.3 s"):
                await connect(RECEIVER, SHARER.peer_id, [address], timeout=0.3)
    finally:
        silent.close()


@pytest.mark.parametrize(
    ("limits", "reason"),
    [
        (Limits(max_streams=2), "at most 2 requests at once"),
        (Limits(max_requests=2), "serving 2 requests already"),
    ],
)
async def test_requests_beyond_a_limit_are_told_busy_and_the_rest_are_served(
    limits: Limits, reason: str
) -> None:
    release, both_served = asyncio.Event(), asyncio.Event()
    serving: list[Request] = []

    async def handler(peer: PeerId, request: Request) -> Reply:
        serving.append(request)
        if len(serving) == 2:
            both_served.set()
        await release.wait()
        return Reply(ResponseHeader("denied", "served"))

    async with asyncio.timeout(TIMEOUT):
        server = await start_sharer(handler, limits)
        async with server, await dial(server) as connection:
            calls = [asyncio.create_task(connection.catalog()) for _ in range(2)]
            await both_served.wait()
            busy, _ = await connection.catalog()
            release.set()
            served = [header for header, _ in await asyncio.gather(*calls)]
            again, _ = await connection.catalog()
    assert busy == ResponseHeader("busy", reason)
    assert [header.reason for header in [*served, again]] == ["served"] * 3


async def test_connections_beyond_the_limit_are_refused() -> None:
    async with asyncio.timeout(TIMEOUT):
        server = await start_sharer(refuse, Limits(max_connections=1))
        async with server, await dial(server) as first:
            await first.catalog()  # answered: the server has taken the first peer's proof
            with pytest.raises(TransferError, match="refused the connection"):
                await dial(server, MALLORY)


async def test_a_failing_handler_answers_error_and_the_server_serves_on() -> None:
    async def handler(peer: PeerId, request: Request) -> Reply:
        if isinstance(request, CatalogRequest):
            raise RuntimeError("a bug")
        return Reply(ResponseHeader("denied"))

    async with asyncio.timeout(TIMEOUT):
        async with await start_sharer(handler) as server, await dial(server) as connection:
            failed, _ = await connection.catalog()
            after, _ = await connection.request(GetRequest(bytes(32), ChunkRanges.all()))
    assert failed == ResponseHeader("error", "the sharer hit an internal error")
    assert after.status == "denied"


async def test_a_receiver_that_stops_reading_does_not_make_the_sharer_read_ahead(
    tmp_path: Path,
) -> None:
    blob = Blob(tmp_path, 64 * 2**20)
    limits = Limits(send_buffer=256 * 1024)
    window = 8 * 2**20  # the receiver's initial stream flow-control window
    async with asyncio.timeout(TIMEOUT):
        async with (
            await start_sharer(blob.handler, limits) as server,
            await dial(server) as connection,
        ):
            await connection.request(blob.request())
            connection._link.endpoint.udp.pause_reading()  # a receiver whose process stalled
            # Sampled until four in a row agree: the sharer has stopped reading (if it never
            # does, the failsafe ends the test). A sharer that reads ahead stops only at the end
            # of the blob, far above the bound.
            samples = [blob.pulled]
            while len(samples) < 4 or len(set(samples[-4:])) > 1:
                await asyncio.sleep(0.3)
                samples.append(blob.pulled)
    bound = 2 * window + limits.send_buffer + 64 * 1024
    assert samples[-1] <= bound, f"the sharer read {samples[-1]} bytes for a stalled stream"


async def test_cancelling_a_download_closes_its_stream(tmp_path: Path) -> None:
    blob = Blob(tmp_path, 64 * 2**20)

    reading = asyncio.Event()

    async def slow_reader(connection: Connection) -> None:
        _, body = await connection.request(blob.request())
        async for _ in body:
            reading.set()
            await asyncio.sleep(0.01)

    async with asyncio.timeout(TIMEOUT):
        async with await start_sharer(blob.handler) as server, await dial(server) as connection:
            download = asyncio.create_task(slow_reader(connection))
            await reading.wait()
            download.cancel()
            await blob.closed.wait()
            pulled = blob.pulled
            await asyncio.sleep(0.2)
            assert blob.pulled == pulled
    assert pulled < blob.size
