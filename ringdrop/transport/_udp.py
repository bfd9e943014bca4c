"""A UDP socket that moves datagrams in batches: one system call for many, where Linux allows.

QUIC's cost here is per datagram, in Python; so is a system call. Sending, runs of equal-size
datagrams to one address go out as one `sendmsg` with UDP generic segmentation offload
(`UDP_SEGMENT`): the kernel gathers the datagrams (no joined copy) and cuts them apart again.
Receiving, `UDP_GRO` lets the kernel hand over several datagrams of one flow in one buffer, with
their size beside it; the buffer is passed on whole, for the QUIC library to take apart. Both fall
back to one call per datagram where the kernel refuses them.

The socket also sets the don't-fragment bit (RFC 9000 § 14: QUIC datagrams must not be
fragmented) without trusting the kernel's path-MTU cache (`IP_PMTUDISC_PROBE`, as quinn does):
the path layer finds out for itself which datagram sizes a path carries.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import socket
import struct
from collections.abc import Callable, Sequence

from ringdrop.transport._backend import unmapped_ip

__all__ = ["Address", "Burst", "UdpSocket", "bind_udp", "normalize", "socket_address", "split"]

Address = tuple[str, int]
"""A peer's UDP address as (IP text, port); IPv4 always in dotted form, never IPv4-mapped."""

Burst = list[tuple[bytes, int, Address]]
"""What one read of the socket brought: (buffer, segment size, sender) per receive call. A
buffer longer than its segment size holds several datagrams of that size, back to back (the
last may be shorter); otherwise it is one datagram."""

_log = logging.getLogger("ringdrop.transport")

_SOL_UDP = 17
_UDP_SEGMENT = 103
_UDP_GRO = 104
_IP_MTU_DISCOVER = 10
_IPV6_MTU_DISCOVER = 23
_PMTUDISC_PROBE = 3
_SOCKET_BUFFER = 4 * 1024 * 1024
# One GSO send carries at most 64 segments and must fit in one UDP datagram's 16-bit length.
_GSO_SEGMENTS = 64
_GSO_BYTES = 65000
# Segmentation pays for datagrams of a real MTU, dozens to a call. Loopback's 16000-byte ones
# fit four to a call, and measured slower so (the receiver's coalescing gets in the way).
_GSO_MAX_SEGMENT = 4096
_RECEIVE_BYTES = 65536
_BURST = 64
_CMSG_SPACE = socket.CMSG_SPACE(4)
_SEGMENT = struct.Struct("=H")


def bind_udp(host: str, port: int) -> socket.socket:
    """A non-blocking UDP socket bound to `host`:`port` (`::` takes IPv4 too, as mapped
    addresses; where IPv6 is missing, `0.0.0.0`)."""
    try:
        return _bind(host, port)
    except OSError as error:
        if host != "::" or error.errno not in (errno.EAFNOSUPPORT, errno.EADDRNOTAVAIL):
            raise
    return _bind("0.0.0.0", port)  # noqa: S104 - no IPv6 here; bound as asked


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        for option in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            sock.setsockopt(socket.SOL_SOCKET, option, _SOCKET_BUFFER)  # the kernel caps it
        for level, name in ((socket.IPPROTO_IP, _IP_MTU_DISCOVER), (41, _IPV6_MTU_DISCOVER)):
            # Not this family, or not Linux: the kernel's default applies.
            with contextlib.suppress(OSError):
                sock.setsockopt(level, name, _PMTUDISC_PROBE)
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    return sock


def normalize(address: Sequence[object]) -> Address:
    """(IP, port) of a socket address, IPv4-mapped IPv6 turned back into IPv4, zone dropped."""
    port = address[1]
    assert isinstance(port, int)
    return str(unmapped_ip(str(address[0]))), port


def socket_address(family: int, address: Address) -> Address:
    """`address` as a socket of `family` takes it: IPv4 mapped into IPv6 on an IPv6 socket."""
    host, port = address
    if family == socket.AF_INET6 and ":" not in host:
        return f"::ffff:{host}", port
    return host, port


class UdpSocket:
    """Reads its socket in bursts, hands each burst to `receive`, and sends in batches.

    `receive(burst)` runs once per burst (see `Burst`), so that the connections it touched can
    be flushed once.
    """

    def __init__(
        self,
        sock: socket.socket,
        receive: Callable[[Burst], None],
        on_error: Callable[[OSError], None] | None = None,
    ) -> None:
        self._sock = sock
        self._receive = receive
        self._on_error = on_error
        self._family = sock.family
        self._loop = asyncio.get_running_loop()
        self._gso = True
        self._gro = _enable_gro(sock)
        self._reading = False
        # Datagrams come mostly from one sender: its address is parsed once, not once a burst.
        self._sender: object = None
        self._address: Address = ("", 0)
        self.resume_reading()

    @property
    def port(self) -> int:
        port: int = self._sock.getsockname()[1]
        return port

    @property
    def family(self) -> socket.AddressFamily:
        return self._family

    @property
    def reading(self) -> bool:
        return self._reading

    def pause_reading(self) -> None:
        if self._reading:
            self._loop.remove_reader(self._sock)
            self._reading = False

    def resume_reading(self) -> None:
        if not self._reading and self._sock.fileno() >= 0:
            self._loop.add_reader(self._sock, self._on_readable)
            self._reading = True

    def close(self) -> None:
        self.pause_reading()
        self._sock.close()

    def send(self, datagrams: Sequence[bytes], address: Address) -> None:
        """Send `datagrams` to `address`, batched. A full kernel queue drops the rest (QUIC
        resends what it counts as lost); an unreachable destination is reported, not raised."""
        if self._sock.fileno() < 0 or not datagrams:
            return
        target = socket_address(self._family, address)
        try:
            if self._gso and len(datagrams) > 1 and len(datagrams[0]) <= _GSO_MAX_SEGMENT:
                self._send_segmented(datagrams, target)
            else:
                for data in datagrams:
                    self._sock.sendto(data, target)
        except BlockingIOError:
            pass
        except OSError as error:
            if self._on_error is not None:
                self._on_error(error)

    def _send_segmented(self, datagrams: Sequence[bytes], target: tuple[str, int]) -> None:
        """Runs of equal size (the last one of a run may be shorter) in one `sendmsg` each."""
        sizes = list(map(len, datagrams))
        start = 0
        count = len(sizes)
        while start < count:
            size = sizes[start]
            end = start + 1
            limit = min(count, start + _GSO_SEGMENTS, start + max(1, _GSO_BYTES // max(size, 1)))
            while end < limit and sizes[end] == size:
                end += 1
            if end < limit and sizes[end] < size:
                end += 1  # a shorter datagram may close a segmented send
            if end - start == 1:
                self._sock.sendto(datagrams[start], target)
            else:
                try:
                    # The datagrams as separate buffers: the kernel gathers them, no join here.
                    self._sock.sendmsg(
                        datagrams[start:end],
                        [(_SOL_UDP, _UDP_SEGMENT, _SEGMENT.pack(size))],
                        0,
                        target,
                    )
                except OSError as error:
                    if error.errno not in (errno.EIO, errno.EINVAL, errno.EOPNOTSUPP):
                        raise
                    # No segmentation offload on this path or kernel: one datagram a call.
                    self._gso = False
                    _log.info("UDP segmentation offload unavailable (%s)", error.strerror)
                    for data in datagrams[start:]:
                        self._sock.sendto(data, target)
                    return
            start = end

    def _on_readable(self) -> None:
        burst: Burst = []
        for _ in range(_BURST):
            try:
                if self._gro:
                    data, ancillary, _flags, sender = self._sock.recvmsg(
                        _RECEIVE_BYTES, _CMSG_SPACE
                    )
                    segment = _segment_size(ancillary) if ancillary else 0
                else:
                    data, sender = self._sock.recvfrom(_RECEIVE_BYTES)
                    segment = 0
            except BlockingIOError:
                break
            except OSError as error:
                # ICMP errors for earlier sends surface here; they end nothing.
                if self._on_error is not None:
                    self._on_error(error)
                break
            if sender != self._sender:
                self._sender, self._address = sender, normalize(sender)
            burst.append((data, segment, self._address))
        if burst:
            self._receive(burst)


def split(data: bytes, segment: int) -> list[bytes]:
    """The datagrams of a received buffer (see `Burst`)."""
    if segment <= 0 or len(data) <= segment:
        return [data]
    return [data[at : at + segment] for at in range(0, len(data), segment)]


def _enable_gro(sock: socket.socket) -> bool:
    try:
        sock.setsockopt(_SOL_UDP, _UDP_GRO, 1)
    except OSError:
        return False
    return True


def _segment_size(ancillary: list[tuple[int, int, bytes]]) -> int:
    for level, kind, data in ancillary:
        if level == _SOL_UDP and kind == _UDP_GRO and len(data) >= 2:
            size: int = struct.unpack("=i", data[:4])[0] if len(data) >= 4 else data[0]
            return size
    return 0
