"""The pump between the path layer and one sans-IO QUIC connection, for client and server.

A `Link` drives one QUIC connection: it feeds it the datagrams its `PathSet` received (the
endpoint flushes each link once per burst of datagrams, so one round of event handling, packet
building and timer arming serves many), hands what QUIC wants sent to the `PathSet`, and lets
writers wait for room in a stream's send buffer. A reader that cannot keep up has the link
hold what arrives: with qh3 it stays in the library, and so does the peer's flow control credit
(the peer slows down, nothing is dropped). QUIC sees its peer at one fixed address,
`PEER`, whichever path the datagrams really take.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable

from ringdrop.errors import TransferError
from ringdrop.transport._backend import Backend, NetworkAddress, QuicLike
from ringdrop.transport._paths import PathSet

__all__ = [
    "CANCELLED",
    "INTERNAL_ERROR",
    "LOOPBACK_DATAGRAM",
    "MTU_DATAGRAM",
    "NO_ERROR",
    "PATH_DATAGRAM",
    "PEER",
    "PROTOCOL_ERROR",
    "REFUSED",
    "Link",
    "datagram_size",
]

_log = logging.getLogger("ringdrop.transport")

# Application error codes, for RESET_STREAM, STOP_SENDING and CONNECTION_CLOSE (PROTOCOL.md).
# Apart from 0 they stay clear of QUIC's transport codes, which a closed connection also reports.
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x5244_0001
INTERNAL_ERROR = 0x5244_0002
CANCELLED = 0x5244_0003
REFUSED = 0x5244_0004

_QUIC_APPLICATION_ERROR = 0xC

# aioquic writes a STREAM frame's length in two bytes, so a packet carries at most 16383 bytes
# of one stream: larger datagrams fail. Loopback has no MTU to speak of (65536).
LOOPBACK_DATAGRAM = 16000
# QUIC's guaranteed minimum: nothing on the path can be too small for it.
PATH_DATAGRAM = 1200
# The largest UDP payload of a 1500-byte MTU path for either IP version (IPv6's 40-byte header).
# qh3 starts at QUIC's minimum and probes up to it (DPLPMTUD); aioquic cannot probe.
MTU_DATAGRAM = 1452

# epoll sleeps in whole milliseconds; a QUIC timer due sooner (pacing, mostly) is polled instead.
_POLL_BELOW = 0.001

# The one address QUIC knows its peer by (TEST-NET-1: reaches nothing). The path layer decides
# where datagrams really go, so QUIC never sees an address change and never migrates.
PEER: NetworkAddress = ("192.0.2.1", 1)


def datagram_size(backend: Backend, loopback: bool) -> int:
    """The largest datagram a connection may send: on loopback 16000 bytes; elsewhere what a
    1500-byte MTU carries, for qh3 (which probes its way up to it), and QUIC's minimum for
    aioquic. The path layer pads its probes to this size, so that a path it moves to carries
    full-size packets too."""
    if loopback:
        return LOOPBACK_DATAGRAM
    return MTU_DATAGRAM if backend.name == "qh3" else PATH_DATAGRAM


class Link(ABC):
    """One QUIC connection: feeds it datagrams and timer ticks, sends what it wants sent, and
    hands its events to the subclass's `on_*` methods."""

    def __init__(self, backend: Backend, quic: QuicLike, paths: PathSet, high_water: int) -> None:
        self.backend = backend
        self.quic = quic
        self.paths = paths
        self.error: TransferError | None = None
        self._loop = asyncio.get_running_loop()
        self._high_water = high_water
        self._timer: asyncio.Handle | None = None
        self._timer_at: float | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._room: dict[int, asyncio.Future[None]] = {}
        self._stopped: set[int] = set()
        self.held = False
        """While set, what arrives stays with the library, undrained (see `Backend.holds`)."""

    @abstractmethod
    def on_stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None: ...

    @abstractmethod
    def on_stream_reset(self, stream_id: int, error_code: int) -> None:
        """The peer abandoned its sending side of the stream (RESET_STREAM)."""

    @abstractmethod
    def on_stop_sending(self, stream_id: int, error_code: int) -> None:
        """The peer wants no more of what this side sends on the stream (STOP_SENDING)."""

    @abstractmethod
    def on_terminated(self, error: TransferError) -> None: ...

    @abstractmethod
    def on_handshake(self) -> None:
        """The TLS handshake completed."""

    @abstractmethod
    def on_connection_id(self, connection_id: bytes, issued: bool) -> None:
        """This side issued or retired a connection id the peer may address it by."""

    @property
    def is_open(self) -> bool:
        return self.error is None

    def receive(self, datagrams: list[bytes]) -> None:
        """Feed datagrams that came one way, in order; the endpoint flushes after its burst."""
        if self.is_open:
            self.backend.receive(self.quic, datagrams, PEER, self._loop.time())

    def receive_coalesced(self, buffer: bytes, segment: int) -> None:
        """Feed a buffer of datagrams the kernel coalesced (see `_udp.Burst`), whole."""
        if self.is_open:
            self.backend.receive_coalesced(self.quic, buffer, segment, PEER, self._loop.time())

    def flush(self) -> None:
        """Handle the connection's events, send its datagrams, re-arm its timer, wake writers."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if not (self.held and self.backend.holds(self.quic)):
            self.backend.drain(self.quic)
        data_event = self.backend.events.StreamDataReceived
        # One STREAM frame a packet makes one event a packet: a stream's consecutive data
        # events are gathered and handed on once (joined, unless content takes them as they
        # are), so work above is per burst, not per packet.
        stream_id, chunks = -1, list[bytes]()
        while self.is_open and (event := self.quic.next_event()) is not None:
            if isinstance(event, data_event) and not event.end_stream:
                if event.stream_id != stream_id:
                    self._handle_data(stream_id, chunks)
                    stream_id, chunks = event.stream_id, []
                chunks.append(event.data)
                continue
            self._handle_data(stream_id, chunks)
            stream_id, chunks = -1, []
            self._handle(event)
        self._handle_data(stream_id, chunks)
        now = self._loop.time()
        try:
            datagrams = self.backend.transmit(self.quic, now)
        except Exception:
            # A library fault (aioquic once raised IndexError closing a connection that had no
            # path yet) must cost this connection only.
            _log.exception("The QUIC library failed to build packets")
            datagrams = []
            self.terminate(TransferError("The connection failed on an internal error."))
        if datagrams:
            self.paths.send(datagrams)
        if self.is_open:
            self._arm_timer(now)
        for stream_id, waiter in list(self._room.items()):
            if not self.can_write(stream_id) or self._has_room(stream_id):
                del self._room[stream_id]
                if not waiter.done():  # its writer was cancelled meanwhile
                    waiter.set_result(None)

    def _handle_data(self, stream_id: int, chunks: list[bytes]) -> None:
        if chunks and self.is_open:
            self._guarded(self.on_stream_chunks, stream_id, chunks)

    def on_stream_chunks(self, stream_id: int, chunks: list[bytes]) -> None:
        """A stream's consecutive data that does not end it, a chunk per packet: joined for
        `on_stream_data`, unless a subclass takes the chunks as they are (content does)."""
        self.on_stream_data(stream_id, chunks[0] if len(chunks) == 1 else b"".join(chunks), False)

    def _handle(self, event: object) -> None:
        self._guarded(self._dispatch, event)

    def _guarded(self, handler: Callable[..., None], *args: object) -> None:
        try:
            handler(*args)
        except Exception:
            # A bug must cost this connection, not the endpoint that serves all the others.
            _log.exception("Handling %r failed", args)
            error = TransferError("The connection failed on an internal error.")
            self.close(INTERNAL_ERROR, "internal error", error)

    def flush_soon(self) -> None:
        if self._flush_handle is None:
            self._flush_handle = self._loop.call_soon(self.flush)

    def can_write(self, stream_id: int) -> bool:
        return self.is_open and stream_id not in self._stopped

    async def wait_for_room(self, stream_id: int) -> None:
        """Return once the library holds less than the high-water mark for the stream.

        Raises TransferError if the stream or the connection is gone.
        """
        while True:
            self.check_writable(stream_id)
            if self._has_room(stream_id):
                return
            waiter = self._room[stream_id] = self._loop.create_future()
            try:
                await waiter
            finally:
                if self._room.get(stream_id) is waiter:
                    del self._room[stream_id]

    def check_writable(self, stream_id: int) -> None:
        if self.error is not None:
            raise self.error
        if stream_id in self._stopped:
            raise TransferError("The peer stopped reading the stream.")

    def send(self, stream_id: int, data: bytes, end_stream: bool = False) -> None:
        """Queue bytes on a stream now, whatever its backlog, and flush soon."""
        self.check_writable(stream_id)
        self.quic.send_stream_data(stream_id, data, end_stream)
        if end_stream:
            self._stopped.add(stream_id)
        self.flush_soon()

    def abandon(self, stream_id: int, error_code: int) -> None:
        """Reset our side of the stream and ask the peer to stop sending on theirs."""
        if self.is_open:
            if stream_id not in self._stopped:
                self._stopped.add(stream_id)
                self.quic.reset_stream(stream_id, error_code)
            self.stop_receiving(stream_id, error_code)

    def stop_receiving(self, stream_id: int, error_code: int) -> None:
        if self.is_open:
            with contextlib.suppress(ValueError):  # the stream is finished and forgotten
                self.quic.stop_stream(stream_id, error_code)
            self.flush_soon()

    def close(self, error_code: int, reason: str, error: TransferError) -> None:
        """Send CONNECTION_CLOSE now and end the link; `error` is what waiters see."""
        if self.is_open:
            self.quic.close(error_code=error_code, reason_phrase=reason)
            self.flush()
            self.terminate(error)

    def terminate(self, error: TransferError) -> None:
        """End the link without telling the peer (it is gone, or already told)."""
        if self.is_open:
            self.error = error
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            for waiter in self._room.values():
                if not waiter.done():
                    waiter.set_result(None)
            self._room.clear()
            self.paths.close()
            self.on_terminated(error)

    def _has_room(self, stream_id: int) -> bool:
        return self.backend.buffered_bytes(self.quic, stream_id) < self._high_water

    def _arm_timer(self, now: float) -> None:
        at = self.quic.get_timer()
        if at == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        if at is None:
            self._timer = None
        elif at - now < _POLL_BELOW:
            self._timer = self._loop.call_soon(self._on_timer)
        else:
            self._timer = self._loop.call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        now = self._loop.time()
        if self._timer_at is not None and self._timer_at <= now:
            self.backend.handle_timer(self.quic, now)
        self._timer_at = None
        self.flush()

    def _dispatch(self, event: object) -> None:
        events = self.backend.events
        if isinstance(event, events.StreamDataReceived):
            self.on_stream_data(event.stream_id, event.data, event.end_stream)
        elif isinstance(event, events.StreamReset):
            self.on_stream_reset(event.stream_id, event.error_code)
        elif isinstance(event, events.StopSendingReceived):
            self._stopped.add(event.stream_id)
            self.on_stop_sending(event.stream_id, event.error_code)
        elif isinstance(event, events.HandshakeCompleted):
            self.on_handshake()
        elif isinstance(event, events.ConnectionIdIssued):
            self.on_connection_id(event.connection_id, issued=True)
        elif isinstance(event, events.ConnectionIdRetired):
            self.on_connection_id(event.connection_id, issued=False)
        elif isinstance(event, events.ConnectionTerminated):
            self.terminate(_termination_error(event.error_code, event.reason_phrase))


def _termination_error(code: int, reason: str) -> TransferError:
    """The error a connection's end means, in words; `reason` is the peer's or the library's."""
    said = f": {reason}" if reason else "."
    # Both libraries end an idle connection with this phrase (aioquic with INTERNAL_ERROR).
    if reason.lower() == "idle timeout":
        return TransferError("The peer stopped answering (the connection timed out).")
    if code in (REFUSED, _QUIC_APPLICATION_ERROR):
        # Before the handshake an application's close travels as APPLICATION_ERROR, and
        # aioquic drops its reason; the only such close ringdrop sends is the refusal.
        said = said if reason else " (it serves as many peers as it allows)."
        return TransferError(f"The peer refused the connection{said}")
    if code == PROTOCOL_ERROR:
        return TransferError(f"The peer closed the connection over a protocol error{said}")
    if 0x100 <= code < 0x200:
        return TransferError(f"The TLS handshake with the peer failed{said}")
    return TransferError(f"The peer closed the connection{said}")
