"""The pump between a UDP socket and sans-IO QUIC connections, shared by client and server.

An `Endpoint` reads its socket in bursts and flushes each connection that got datagrams once per
burst, so one round of event handling, packet building and timer arming serves many datagrams.
A `Link` drives one QUIC connection and lets writers wait for room in a stream's send buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from abc import ABC, abstractmethod
from collections.abc import Callable

from ringdrop.errors import TransferError
from ringdrop.transport._backend import Backend, NetworkAddress, QuicLike, is_loopback

__all__ = [
    "CANCELLED",
    "INTERNAL_ERROR",
    "LOOPBACK_DATAGRAM",
    "NO_ERROR",
    "PATH_DATAGRAM",
    "PROTOCOL_ERROR",
    "REFUSED",
    "Endpoint",
    "Link",
    "datagram_size",
    "open_socket",
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
# QUIC's guaranteed minimum: nothing on the path can be too small for it. (qh3 probes upwards.)
PATH_DATAGRAM = 1200

# epoll sleeps in whole milliseconds; a QUIC timer due sooner (pacing, mostly) is polled instead.
_POLL_BELOW = 0.001
_BURST = 64
_SOCKET_BUFFER = 4 * 1024 * 1024


def datagram_size(host: str) -> int:
    """The datagram size to use towards `host`: large on loopback, QUIC's minimum elsewhere."""
    return LOOPBACK_DATAGRAM if is_loopback(host) else PATH_DATAGRAM


def open_socket(family: socket.AddressFamily) -> socket.socket:
    """A non-blocking UDP socket with buffers large enough for bursts of large datagrams."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setblocking(False)
    for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)  # the kernel caps it
    return sock


class Endpoint:
    """A UDP socket read in bursts; `route` names the link each datagram belongs to.

    A connected socket (a client's) sends without an address, and reports an unreachable peer
    through `on_error`.
    """

    def __init__(
        self,
        sock: socket.socket,
        route: Callable[[bytes, NetworkAddress], Link | None],
        on_error: Callable[[OSError], None],
        connected_to: NetworkAddress | None = None,
    ) -> None:
        self._sock = sock
        self._route = route
        self._on_error = on_error
        self._peer = connected_to
        self._loop = asyncio.get_running_loop()
        self._reading = False
        self.resume_reading()

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    def pause_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._sock)
            self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and self._sock.fileno() >= 0:
            self._loop.add_reader(self._sock, self._on_readable)
            self._reading = True

    def send(self, datagrams: list[tuple[bytes, NetworkAddress]]) -> None:
        if self._sock.fileno() < 0:
            return
        try:
            for data, address in datagrams:
                if self._peer is None:
                    self._sock.sendto(data, address)
                else:
                    self._sock.send(data)
        except BlockingIOError:
            pass  # the kernel's queue is full: QUIC sees these datagrams as lost and resends
        except OSError as error:
            self._on_error(error)

    def close(self) -> None:
        self.pause_reading()
        self._sock.close()

    def _on_readable(self) -> None:
        touched: dict[Link, None] = {}
        for _ in range(_BURST):
            try:
                data, address = self._sock.recvfrom(65536)
            except BlockingIOError:
                break
            except OSError as error:
                self._on_error(error)
                break
            link = self._route(data, self._peer or address)
            if link is not None:
                link.receive(data, self._peer or address)
                touched[link] = None
        for link in touched:
            link.flush()


class Link(ABC):
    """One QUIC connection: feeds it datagrams and timer ticks, sends what it wants sent, and
    hands its events to the subclass's `on_*` methods."""

    def __init__(self, backend: Backend, quic: QuicLike, high_water: int) -> None:
        self.backend = backend
        self.quic = quic
        self.error: TransferError | None = None
        self._loop = asyncio.get_running_loop()
        self._high_water = high_water
        self._timer: asyncio.Handle | None = None
        self._timer_at: float | None = None
        self._flush_handle: asyncio.Handle | None = None
        self._room: dict[int, asyncio.Future[None]] = {}
        self._stopped: set[int] = set()

    @abstractmethod
    def send_datagrams(self, datagrams: list[tuple[bytes, NetworkAddress]]) -> None: ...

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

    def receive(self, data: bytes, address: NetworkAddress) -> None:
        """Feed one datagram; the endpoint flushes after its burst."""
        if self.is_open:
            self.quic.receive_datagram(data, address, self._loop.time())

    def flush(self) -> None:
        """Handle the connection's events, send its datagrams, re-arm its timer, wake writers."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        while self.is_open and (event := self.quic.next_event()) is not None:
            try:
                self._dispatch(event)
            except Exception:
                # A bug must cost this connection, not the endpoint that serves all the others.
                _log.exception("Handling %r failed", event)
                error = TransferError("The connection failed on an internal error.")
                self.close(INTERNAL_ERROR, "internal error", error)
        now = self._loop.time()
        datagrams = self.quic.datagrams_to_send(now)
        if datagrams:
            self.send_datagrams(datagrams)
        if self.is_open:
            self._arm_timer(now)
        for stream_id, waiter in list(self._room.items()):
            if not self.can_write(stream_id) or self._has_room(stream_id):
                del self._room[stream_id]
                waiter.set_result(None)

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
                waiter.set_result(None)
            self._room.clear()
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
            self.quic.handle_timer(now)
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
    if code == NO_ERROR and reason.lower() == "idle timeout":
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
