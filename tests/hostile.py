"""A hostile peer: a real QUIC client (aioquic's, directly) that writes whatever ringdrop bytes
a test chooses, built from `ringdrop.protocol`'s messages and machines.

Tests of the server's defences use it instead of patching the honest client, so the bytes that
reach the server are the attack itself and every check on the way is the server's real code.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
from collections import defaultdict
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset

from ringdrop.identity import Identity, PeerId
from ringdrop.protocol import (
    ALPN,
    Candidates,
    Challenge,
    ClientAuth,
    Hello,
    Message,
    PathsChannel,
    decode,
    encode,
)

if TYPE_CHECKING:
    from ringdrop.node import Node

AUTH_STREAM = 0


class HostilePeer(QuicConnectionProtocol):
    """One QUIC connection to a ringdrop server, on whose streams the test writes any bytes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._received: defaultdict[int, bytearray] = defaultdict(bytearray)
        self._ended: defaultdict[int, asyncio.Event] = defaultdict(asyncio.Event)
        self.reset: set[int] = set()
        self.closed: asyncio.Future[tuple[int, str]] = asyncio.get_running_loop().create_future()

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self._received[event.stream_id] += event.data
            if event.end_stream:
                self._ended[event.stream_id].set()
        elif isinstance(event, StreamReset):
            self.reset.add(event.stream_id)
            self._ended[event.stream_id].set()
        elif isinstance(event, ConnectionTerminated) and not self.closed.done():
            self.closed.set_result((event.error_code, event.reason_phrase))
            for ended in self._ended.values():
                ended.set()

    def write(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        self._quic.send_stream_data(stream_id, data, end_stream)
        self.transmit()

    def abandon(self, stream_id: int, error_code: int = 0) -> None:
        """Reset our side of the stream (RESET_STREAM)."""
        self._quic.reset_stream(stream_id, error_code)
        self.transmit()

    def open_stream(self, unidirectional: bool = False) -> int:
        return self._quic.get_next_available_stream_id(is_unidirectional=unidirectional)

    def received(self, stream_id: int) -> bytes:
        """What the server sent on the stream so far."""
        return bytes(self._received[stream_id])

    async def read(self, stream_id: int) -> bytes:
        """What the server sent on the stream, once it ended (or reset) it."""
        await self._ended[stream_id].wait()
        if self.closed.done():
            raise ConnectionError(f"The server closed the connection: {self.closed.result()}")
        return self.received(stream_id)

    async def challenge(self) -> bytes:
        """Say HELLO on the authentication stream; the nonce of the server's CHALLENGE."""
        self.write(AUTH_STREAM, encode(Hello()))
        message = first_frame(await self.read(AUTH_STREAM))
        assert isinstance(message, Challenge)
        return message.nonce

    async def authenticate(self, identity: Identity, server_id: PeerId) -> bytes:
        """Prove `identity` as an honest client would; the PROOF frame that did it."""
        auth = ClientAuth(identity, server_id)
        self.write(AUTH_STREAM, auth.hello())
        auth.receive_data(await self.read(AUTH_STREAM), end_stream=True)
        proof = auth.prove()
        self.write(AUTH_STREAM, proof, end_stream=True)
        return proof

    async def ask(self, frames: bytes) -> bytes:
        """Send `frames` on a new request stream and end it; the server's whole answer."""
        stream_id = self.open_stream()
        self.write(stream_id, frames, end_stream=True)
        return await self.read(stream_id)

    def offer(self, addresses: Sequence[tuple[str, int]]) -> int:
        """Open the paths stream with a CANDIDATES frame naming `addresses`; its stream id."""
        stream_id = self.open_stream()
        self.write(stream_id, PathsChannel().send(Candidates(tuple(addresses))))
        return stream_id


def first_frame(data: bytes) -> Message:
    """The message of the first whole frame in `data`."""
    return decode(data[: 5 + int.from_bytes(data[1:5], "big")])


def frames(data: bytes) -> list[Message]:
    """The messages of every frame in `data`, in order."""
    found: list[Message] = []
    at = 0
    while at < len(data):
        length = int.from_bytes(data[at + 1 : at + 5], "big")
        found.append(decode(data[at : at + 5 + length]))
        at += 5 + length
    return found


def _configuration() -> QuicConfiguration:
    return QuicConfiguration(
        is_client=True, alpn_protocols=[ALPN], verify_mode=ssl.CERT_NONE, idle_timeout=10.0
    )


@contextlib.asynccontextmanager
async def hostile(port: int) -> AsyncIterator[HostilePeer]:
    """A connection to the server at 127.0.0.1:`port`; its TLS key is not checked."""
    async with connect(
        "127.0.0.1", port, configuration=_configuration(), create_protocol=HostilePeer
    ) as peer:
        assert isinstance(peer, HostilePeer)
        yield peer


@contextlib.asynccontextmanager
async def connected(node: Node, identity: Identity) -> AsyncIterator[HostilePeer]:
    """A hostile client that proved `identity` to the serving `node`."""
    async with hostile(node.config.port) as peer:
        await peer.authenticate(identity, node.peer_id)
        yield peer


@contextlib.asynccontextmanager
async def hostile_from(sock: socket.socket, host: str, port: int) -> AsyncIterator[HostilePeer]:
    """A connection from the UDP socket `sock` (bound where the test wants, in a namespace of
    its own for instance) to the server at `host`:`port`; its TLS key is not checked."""
    loop = asyncio.get_running_loop()
    configuration = _configuration()
    configuration.server_name = host
    transport, peer = await loop.create_datagram_endpoint(
        lambda: HostilePeer(QuicConnection(configuration=configuration)), sock=sock
    )
    try:
        peer.connect((host, port))
        await peer.wait_connected()
        yield peer
    finally:
        peer.close()
        await peer.wait_closed()
        transport.close()
