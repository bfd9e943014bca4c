"""The receiver's side: reach a sharer by racing every way to it, and check that it holds the key
the ticket names.

The race follows Happy Eyeballs (RFC 8305): one QUIC connection per way — each direct address
(at most `MAX_DIALLED`, unicast; this machine's loopback too when the ticket names one of this
machine's own addresses) and the sharer's relay — started `STAGGER` seconds apart, the relay
together with the first address; an attempt the network refuses at once makes the next start at
once. The first whose TLS handshake proves the sharer's key wins and the others are closed; an
attempt answered by another key only loses. All of them share one `Dialer`: one UDP socket
(whose public address STUN is asked for as soon as it opens) and one relay connection, which
the winner keeps, for probing and falling back.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import itertools
import logging
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nacl.signing

from ringdrop.errors import (
    ProtocolError,
    RingdropError,
    TransferError,
    UnreachableError,
    WrongPeerError,
)
from ringdrop.identity import Identity, PeerId
from ringdrop.protocol import (
    MAX_CANDIDATES,
    AnnounceRequest,
    Candidates,
    Catalog,
    CatalogEntry,
    CatalogRequest,
    Challenge,
    ClientAuth,
    Data,
    GetRequest,
    Info,
    MembersRequest,
    News,
    PathsChannel,
    Request,
    Requester,
    ResponseHeader,
    RingRequest,
    SinceRequest,
    StreamEnded,
)
from ringdrop.ticket import Address
from ringdrop.transport._backend import (
    Backend,
    BackendName,
    QuicLike,
    Settings,
    backend_for,
    is_loopback,
)
from ringdrop.transport._candidates import refusal
from ringdrop.transport._conn import AUTH_STREAM, ClientConnection, Route
from ringdrop.transport._link import (
    CANCELLED,
    INTERNAL_ERROR,
    NO_ERROR,
    PEER,
    PROTOCOL_ERROR,
    Link,
    datagram_size,
)
from ringdrop.transport._paths import Direct, Endpoint, Path, PathInfo, PathSet, Relayed
from ringdrop.transport._udp import bind_udp, socket_address
from ringdrop.transport.relay import RelayClient

__all__ = ["MAX_DIALLED", "STAGGER", "Connection", "Dialer", "ResponseBody", "connect", "plan"]

_log = logging.getLogger("ringdrop.transport")

MAX_DIALLED = 8
"""Direct addresses of a ticket dialled at most: a hostile ticket sprays no more."""
STAGGER = 0.05
"""Seconds between the starts of two attempts (RFC 8305's Connection Attempt Delay, which it
sets at 250 ms for TCP over the Internet; a QUIC handshake on a LAN takes a few ms)."""
_STUN_TIMEOUT = 3.0
BODY_PIECE = 1024 * 1024
"""The most bytes of content one read of a `ResponseBody` returns, bar a larger chunk. A
download writes pieces of a MiB or less at 1.0-1.1 GB/s, of 4 MiB at 0.9 and of 16 MiB at
0.5-0.7 (`bench/bench_native.py`): a reader that falls behind and gets its whole backlog at
once would fall further behind."""
_SMALL_CHUNK = 512
"""Content chunks smaller than this on average are joined as they arrive (`ResponseBody._add`)."""
# A consumer slower than the network makes content pile up; past this much, the link holds
# what arrives until the consumer has caught up to the low mark: qh3 keeps it, and the sender's
# flow control credit with it; with aioquic, which cannot, the socket is not read meanwhile
# (QUIC then sees loss and slows down).
_HIGH_WATER = 2 * 1024 * 1024
_LOW_WATER = 512 * 1024


async def connect(
    identity: Identity,
    peer_id: PeerId,
    addresses: Sequence[Address],
    *,
    relay: str | None = None,
    relay_public_only: bool = False,
    stun: Sequence[tuple[str, int]] = (),
    local_ips: Sequence[str] = (),
    machine_ips: Sequence[str] = (),
    timeout: float = 10.0,
    idle_timeout: float = 30.0,
    backend: BackendName | None = None,
    on_path: Callable[[PathInfo], object] | None = None,
) -> Connection:
    """Connect to `peer_id` by whichever way proves its key first (see the module docstring);
    afterwards the path layer probes for a better path and moves to it.

    `relay` is the sharer's relay (with `relay_public_only`, used only at public addresses);
    `stun` servers tell this side its public address, which the sharer is then told to probe;
    `local_ips` are the addresses this side offers likewise; `machine_ips` this machine's
    interface addresses. Raises WrongPeerError if only other keys answered, TransferError if
    nothing worked.
    """
    dialer = Dialer(
        identity, relay=relay, relay_public_only=relay_public_only, stun=stun, own=machine_ips
    )
    return await dialer.connect(
        peer_id,
        addresses,
        local_ips=local_ips,
        machine_ips=machine_ips,
        timeout=timeout,
        idle_timeout=idle_timeout,
        backend=backend,
        on_path=on_path,
    )


def plan(
    addresses: Sequence[Address], machine_ips: Sequence[str], ipv6: bool = True
) -> list[tuple[str, int]]:
    """The direct addresses to dial, in the order to start them, at most `MAX_DIALLED`.

    Unicast only: an address no other machine could mean is skipped, but for loopback, which a
    ticket names only for a sharer on this machine. A ticket address that is one of this
    machine's own (`machine_ips`) is dialled on loopback too, first (large datagrams make
    transfers there several times faster), and as itself (the same private address can belong
    to another machine on another network). The rest alternate between IP families (RFC 8305
    §4), starting with the ticket's first. `ipv6` false leaves out IPv6 addresses.
    """
    mine = set(machine_ips)
    targets: list[tuple[str, int]] = []
    loopback: list[tuple[str, int]] = []
    for address in addresses:
        host, port = str(address.ip), address.port
        if ":" in host and not ipv6:
            continue
        if is_loopback(host):
            loopback.append((host, port))
        elif refusal(host) is None:
            targets.append((host, port))
            if host in mine:
                loopback.append(("::1" if ":" in host and ipv6 else "127.0.0.1", port))
    ordered = _interleave(list(dict.fromkeys(targets)))
    return list(dict.fromkeys(loopback + ordered))[:MAX_DIALLED]


def _interleave(targets: list[tuple[str, int]]) -> list[tuple[str, int]]:
    if not targets:
        return []
    first = ":" in targets[0][0]
    same = [t for t in targets if (":" in t[0]) == first]
    other = [t for t in targets if (":" in t[0]) != first]
    out: list[tuple[str, int]] = []
    for index in range(max(len(same), len(other))):
        out += same[index : index + 1] + other[index : index + 1]
    return out


@dataclass(frozen=True)
class _Plan:
    """What every attempt of one connect shares."""

    identity: Identity
    peer_id: PeerId
    idle_timeout: float
    backend: BackendName | None
    on_path: Callable[[PathInfo], object] | None


class Dialer:
    """Where one connection to a sharer starts from: a UDP socket, whose public address STUN is
    asked for at once, and a connection to the sharer's relay (if any). Made as soon as the
    ticket is known, so both are ready by the time `connect` dials (the node opens one before
    it reads its store); used for one `connect`. Closing it (or the connection it made) closes
    both. `sock`, a non-blocking UDP socket, replaces the one it would bind (on every address,
    any port); `addresses` are those `connect` will dial, if known; `relay_refused` why the
    peer's relay is not used, for the error when nothing else answers.

    The relay is joined under a key of its own, not the node's: a relay forwards to the newest
    connection of a key, so using the node's would cut off this node's own server (serving in
    the TUI, or `ringdrop serve` in another terminal). The sharer learns who we are from the
    QUIC handshake, and the relay learns less.
    """

    def __init__(
        self,
        identity: Identity,
        *,
        relay: str | None = None,
        relay_public_only: bool = False,
        stun: Sequence[tuple[str, int]] = (),
        own: Sequence[str] = (),
        addresses: Sequence[Address] = (),
        sock: socket.socket | None = None,
        relay_refused: str | None = None,
    ) -> None:
        self._identity = identity
        self._relay_refused = relay_refused
        if sock is None:
            try:
                sock = bind_udp("::", 0)
            except OSError as error:
                raise TransferError(f"Cannot open a UDP socket: {error.strerror}.") from error
        self._sock = sock
        self.endpoint = Endpoint(
            identity, sock, self._route, on_error=self._socket_error, own_ips=frozenset(own)
        )
        self._loop = asyncio.get_running_loop()
        if relay is not None:
            self.endpoint.relay = RelayClient(
                relay,
                Identity(nacl.signing.SigningKey.generate()),
                self.endpoint.on_relay_datagrams,
                self.endpoint.on_relay_state,
                public_only=relay_public_only,
            )
            self.endpoint.relay.start()
        # The QUIC library for paths off this machine takes a tenth of a second to import: on a
        # thread, while the store is read and the relay answers, not on the way to the first
        # byte. (`addresses`, the ones `connect` will be given, say whether it is needed.)
        self._loading: asyncio.Future[Backend] | None = None
        if relay is not None or any(not is_loopback(str(a.ip)) for a in addresses):
            self._loading = self._loop.run_in_executor(None, backend_for, None, None)
        self._stun: asyncio.Task[tuple[str, int] | None] | None = None
        if stun:
            self._stun = self._loop.create_task(
                self.endpoint.reflexive_address(stun, _STUN_TIMEOUT)
            )
        self._attempts: list[_ClientLink] = []
        self._by_cid: dict[bytes, _ClientLink] = {}
        self._failures: dict[str, RingdropError] = {}
        self._changed = asyncio.Event()
        self.winner: _ClientLink | None = None
        self._used = False
        self._closed = False

    def public_address(self) -> tuple[str, int] | None:
        """This socket's public address, if STUN has told it already."""
        if self._stun is None or not self._stun.done() or self._stun.cancelled():
            return None
        with contextlib.suppress(Exception):
            return self._stun.result()
        return None

    async def wait_public_address(self) -> tuple[str, int] | None:
        if self._stun is None:
            return None
        with contextlib.suppress(Exception):
            return await asyncio.shield(self._stun)
        return None

    async def connect(
        self,
        peer_id: PeerId,
        addresses: Sequence[Address],
        *,
        local_ips: Sequence[str] = (),
        machine_ips: Sequence[str] = (),
        timeout: float = 10.0,
        idle_timeout: float = 30.0,
        backend: BackendName | None = None,
        on_path: Callable[[PathInfo], object] | None = None,
    ) -> Connection:
        """Race every way to `peer_id` (see the module docstring); the winner, authenticated."""
        if self._used:
            raise RuntimeError("a Dialer makes one connection")
        self._used = True
        ipv6 = self.endpoint.udp.family == socket.AF_INET6
        direct = [Direct(target) for target in plan(addresses, machine_ips, ipv6)]
        relay = self.endpoint.relay
        relayed = Relayed(relay.url, peer_id.raw) if relay is not None else None
        attempt = _Plan(self._identity, peer_id, idle_timeout, backend, on_path)
        try:
            if relayed is None and len(direct) == 1 and is_loopback(direct[0].address[0]):
                # A connected socket hears the kernel's "connection refused": no waiting for a
                # timeout when nothing serves on this machine.
                try:
                    self._sock.connect(socket_address(self._sock.family, direct[0].address))
                except OSError as error:
                    raise UnreachableError(
                        f"Could not reach {peer_id.short()}… ({direct[0]}: {error.strerror})."
                    ) from None
            if not direct and relayed is None:
                raise TransferError(f"Could not reach {peer_id.short()}…: {_NOWHERE}")
            try:
                async with asyncio.timeout(timeout):
                    link = await self._race(direct, relayed, attempt)
                    await link.authenticated
            except TimeoutError:
                for other in self._attempts:
                    if other.is_open:
                        self._failures[_where(other.paths.current)] = UnreachableError(
                            f"no answer within {timeout:g} s"
                        )
                raise self._error(peer_id) from None
            except TransferError as error:
                if self.winner is not None:
                    self._failures[_where(self.winner.paths.current)] = error
                raise self._error(peer_id) from None
        except BaseException:
            self.close()
            raise
        link.paths.start()
        link.paths.allow_probing()  # the sharer's key is verified: its candidates may be tried
        link.share_candidates(local_ips)
        return Connection(link)

    def close(self) -> None:
        """Close every attempt, the socket and the relay connection."""
        if self._closed:
            return
        self._closed = True
        if self._stun is not None:
            self._stun.cancel()
        for link in list(self._attempts):
            link.close(NO_ERROR, "", TransferError("The connection attempt was abandoned."))
        self.endpoint.close()
        relay = self.endpoint.relay
        if relay is not None:
            task = self._loop.create_task(relay.close())
            _CLOSING.add(task)
            task.add_done_callback(_CLOSING.discard)

    async def _race(
        self, direct: list[Direct], relayed: Relayed | None, attempt: _Plan
    ) -> _ClientLink:
        if self._loading is not None:
            with contextlib.suppress(Exception):  # the same failure recurs where it is used
                await self._loading
        waiting: list[Path] = list(direct)
        if relayed is not None:
            waiting.insert(1 if waiting else 0, relayed)
        # The relay starts with the first address: both are as likely to be the way.
        starts = 2 if relayed is not None and direct else 1
        while self.winner is None:
            self._changed.clear()
            for _ in range(starts):
                if waiting:
                    self._start(waiting.pop(0), attempt)
            starts = 1
            if self.winner is not None:
                break
            if not waiting and not any(link.is_open for link in self._attempts):
                raise self._error(attempt.peer_id)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STAGGER if waiting else None):
                    await self._changed.wait()
        return self.winner

    def _start(self, way: Path, attempt: _Plan) -> None:
        loopback = isinstance(way, Direct) and is_loopback(way.address[0])
        backend = backend_for("127.0.0.1" if loopback else None, attempt.backend)
        size = datagram_size(backend, loopback)
        settings = Settings(
            datagram_size=size,
            max_data=16 * 1024 * 1024,
            max_stream_data=8 * 1024 * 1024,
            idle_timeout=attempt.idle_timeout,
        )
        holder: list[_ClientLink] = []
        paths = PathSet(
            self.endpoint,
            way=way,
            peer_key=attempt.peer_id.raw,
            relay_key=attempt.peer_id.raw,  # a server is on its relay as itself
            probe_size=size,
            on_change=attempt.on_path,
            on_unreachable=lambda reason: self._loop.call_soon(holder[0].refused, reason),
        )
        link = _ClientLink(
            backend, backend.client(settings), paths, attempt.identity, attempt.peer_id, self
        )
        holder.append(link)
        self._attempts.append(link)
        self._by_cid[link.quic.host_cid] = link
        link.quic.connect(PEER, link.now())
        link.flush()

    def _route(self, data: bytes, _path: Path) -> _ClientLink | None:
        if self.winner is not None:
            return self.winner
        if not data:
            return None
        if data[0] & 0x80:  # a long header: the destination id's length is in the header
            return self._by_cid.get(data[6 : 6 + data[5]]) if len(data) > 6 else None
        return self._by_cid.get(data[1:9])  # short: our ids are 8 bytes, as both libraries'

    def identified(self, link: _ClientLink, cid: bytes, issued: bool) -> None:
        if issued:
            self._by_cid[cid] = link
        else:
            self._by_cid.pop(cid, None)

    def verified(self, link: _ClientLink) -> bool:
        """`link`'s handshake proved the sharer's key: the winner, unless another was first."""
        if self.winner is not None:
            return False
        self.winner = link
        self._changed.set()
        for other in self._attempts:
            if other is not link:
                other.close(NO_ERROR, "", TransferError("Another way answered first."))
        self._attempts = [link]
        self._by_cid.clear()
        return True

    def ended(self, link: _ClientLink, error: TransferError) -> None:
        if link is self.winner:
            self.close()
        elif self.winner is None:
            self._failures[_where(link.paths.current)] = error
            self._changed.set()

    def _socket_error(self, error: OSError) -> None:
        """What the socket reports outside a send: a connected socket's "connection refused"."""
        for link in list(self._attempts):
            link.refused(f"the network refused the connection: {error.strerror or error}")

    def _error(self, peer_id: PeerId) -> RingdropError:
        failures = self._failures
        wrong = [error for error in failures.values() if isinstance(error, WrongPeerError)]
        if wrong and len(wrong) == len(failures):
            return wrong[0]
        lines = "; ".join(f"{where}: {error}" for where, error in failures.items())
        if self.endpoint.relay is not None:
            advice = ""
        elif self._relay_refused is not None:
            advice = f" {self._relay_refused}"
        else:
            advice = (
                " No relay was tried (the ticket names none, or relaying is disabled here): "
                "behind a NAT or firewall, ask the sharer for a ticket with a relay, or enable "
                "one."
            )
        # Unreachable only if nothing answered anywhere: a refusal means the sharer is running.
        unanswered = bool(failures) and all(
            isinstance(error, UnreachableError) for error in failures.values()
        )
        kind = UnreachableError if unanswered else TransferError
        return kind(f"Could not reach {peer_id.short()}… ({lines or _NOWHERE}).{advice}")


_NOWHERE = "the ticket names no address this machine can dial, and no relay"


def _where(way: Path) -> str:
    return str(way) if isinstance(way, Direct) else f"relay {way}"


class Connection:
    """An authenticated connection to a sharer; several requests may run at once."""

    def __init__(self, link: _ClientLink) -> None:
        self._link = link
        self.peer_id = link.peer_id

    @property
    def path(self) -> PathInfo | None:
        """How the peer is reached now: direct or relay, and where."""
        return self._link.paths.info

    @property
    def address(self) -> str:
        """The current path, for display."""
        path = self.path
        return "?" if path is None else str(path)

    def traffic(self) -> dict[PathInfo, int]:
        """Datagram bytes received per path so far, by direct address or relay."""
        return self._link.paths.traffic()

    async def request(
        self, request: GetRequest | MembersRequest
    ) -> tuple[ResponseHeader, ResponseBody]:
        """Send a get request; the header, and the bao stream (empty unless allowed). For a
        members request the body is its PART frames, for `protocol.MembersReader`.

        The stream belongs to the task that calls this: if that task ends (cancelled, failed or
        done) before the body is read to its end, the stream is abandoned and the sharer stops.
        """
        exchange = self._link.open(request)
        try:
            header = await asyncio.shield(exchange.header)
        except asyncio.CancelledError:
            exchange._abandon()
            raise
        exchange._bind(asyncio.current_task())
        return header, exchange

    async def catalog(self) -> tuple[ResponseHeader, tuple[CatalogEntry, ...]]:
        """Ask what this peer may download; the header, and the entries (none unless allowed)."""
        exchange = self._link.open(CatalogRequest())
        try:
            header = await asyncio.shield(exchange.header)
            catalog = await asyncio.shield(exchange.catalog) if header.status == "allowed" else None
        except asyncio.CancelledError:
            exchange._abandon()
            raise
        return header, catalog.entries if catalog else ()

    async def ask(self, request: RingRequest) -> tuple[ResponseHeader, Info | None]:
        """Send a rings, about or have request; the header, and the INFO (None unless
        allowed)."""
        exchange = self._link.open(request)
        try:
            header = await asyncio.shield(exchange.header)
            info = await asyncio.shield(exchange.info) if header.status == "allowed" else None
        except asyncio.CancelledError:
            exchange._abandon()
            raise
        return header, info

    async def announce(self, request: AnnounceRequest) -> ResponseHeader:
        """Tell the peer a ring's news; its answer (allowed: it took them)."""
        exchange = self._link.open(request)
        try:
            return await asyncio.shield(exchange.header)
        except asyncio.CancelledError:
            exchange._abandon()
            raise

    async def since(self, request: SinceRequest) -> tuple[ResponseHeader, News | None]:
        """Ask a ring's owner for its news after a sequence number; the header, and the NEWS
        (None unless allowed)."""
        exchange = self._link.open(request)
        try:
            header = await asyncio.shield(exchange.header)
            news = await asyncio.shield(exchange.news) if header.status == "allowed" else None
        except asyncio.CancelledError:
            exchange._abandon()
            raise
        return header, news

    async def close(self) -> None:
        self._link.close(NO_ERROR, "", TransferError("The connection was closed."))

    async def __aenter__(self) -> Connection:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()


class ResponseBody:
    """The bao stream of one response, as it arrives.

    Read it to its end, or leave it (`aclose()`, `async with`, cancelling the owning task): the
    sharer is then told to stop. A body left unread and unclosed holds up the connection: past a
    few MiB of unread content, the connection stops reading its socket.
    """

    def __init__(self, link: _ClientLink, stream_id: int, request: Request) -> None:
        self._link = link
        self._stream_id = stream_id
        self._requester = Requester()
        self._chunks: list[bytes] = []
        """Content that arrived and was not read yet, in order: a chunk a packet, mostly, and
        small ones joined (`_add`)."""
        self._unread = 0
        """Its bytes."""
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: RingdropError | None = None
        self._owner: asyncio.Task[Any] | None = None
        self.header: asyncio.Future[ResponseHeader] = asyncio.get_running_loop().create_future()
        self.catalog: asyncio.Future[Catalog] = asyncio.get_running_loop().create_future()
        self.info: asyncio.Future[Info] = asyncio.get_running_loop().create_future()
        self.news: asyncio.Future[News] = asyncio.get_running_loop().create_future()
        # A failed request leaves its futures unread: that is not worth a warning.
        for future in (self.header, self.catalog, self.info, self.news):
            future.add_done_callback(_quiet)
        link.send(stream_id, self._requester.send_request(request), end_stream=True)

    def __aiter__(self) -> ResponseBody:
        return self

    async def __anext__(self) -> bytes:
        while not self._chunks:
            if self._error is not None:
                raise self._error
            if self._ended:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            except asyncio.CancelledError:
                self._abandon()
                raise
        piece = self._take(BODY_PIECE)
        self._link.consumed(len(piece))
        return piece

    def _take(self, most: int) -> bytes:
        """What arrived since the last read, as one piece of at most `most` bytes (or the
        first chunk, if that is larger): work downstream (verifying, writing, progress) is
        then per burst of datagrams, not per datagram, and per MiB, not per backlog."""
        chunks = self._chunks
        if self._unread <= most:
            cut = len(chunks)
        else:
            # Queued chunks average at least half _SMALL_CHUNK bytes (`_add`): so many reach
            # `most`, unless smaller ones are among them (the piece is then smaller).
            window = itertools.islice(chunks, most // (_SMALL_CHUNK // 2) + 1)
            cut = max(1, bisect.bisect_right(list(itertools.accumulate(map(len, window))), most))
        piece = chunks[0] if cut == 1 else b"".join(chunks[:cut])
        del chunks[:cut]
        self._unread -= len(piece)
        return piece

    def _take_content(self, chunks: list[bytes]) -> bool:
        """Keeps `chunks` for the reader, unparsed, if they are content (False: they must be
        parsed)."""
        if not self._requester.takes_content:
            return False
        self._add(chunks)
        self._wake()
        return True

    def _add(self, chunks: list[bytes]) -> None:
        size = sum(map(len, chunks))
        if not size:
            return
        queue = self._chunks
        if size < len(chunks) * _SMALL_CHUNK:
            # Small chunks (a sharer sending tiny STREAM frames) are joined, and onto the last
            # one if that is small too: whatever the sharer sends, the queue holds an object
            # per half _SMALL_CHUNK bytes at most (not joining onto a large last chunk, which
            # each tiny frame would then copy whole).
            joined = b"".join(chunks)
            if queue and len(queue[-1]) < _SMALL_CHUNK:
                queue[-1] += joined
            else:
                queue.append(joined)
        else:
            queue += chunks if all(chunks) else [chunk for chunk in chunks if chunk]
        self._unread += size
        self._link.queued(size)

    async def aclose(self) -> None:
        """Stop receiving; the sharer is told to stop sending."""
        self._abandon()

    async def __aenter__(self) -> ResponseBody:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._abandon()

    def _bind(self, owner: asyncio.Task[Any] | None) -> None:
        """Abandon the stream when `owner` ends before the stream does."""
        if owner is not None and not self._ended:
            self._owner = owner
            owner.add_done_callback(self._owner_done)

    def _owner_done(self, _: asyncio.Task[Any]) -> None:
        self._abandon()

    def _abandon(self) -> None:
        if not self._ended:
            self._link.abandon(self._stream_id, CANCELLED)
            self._finish(TransferError("The download was cancelled."))
        self._link.consumed(self._unread)
        self._chunks.clear()
        self._unread = 0

    def _receive(self, data: bytes, end_stream: bool) -> None:
        try:
            events = self._requester.receive_data(data, end_stream)
        except ProtocolError as error:
            self._link.abandon(self._stream_id, PROTOCOL_ERROR)
            self._finish(error)
            return
        for event in events:
            if isinstance(event, Data):
                self._add([event.data])
            elif isinstance(event, ResponseHeader):
                self.header.set_result(event)
            elif isinstance(event, Catalog):
                self.catalog.set_result(event)
            elif isinstance(event, Info):
                self.info.set_result(event)
            elif isinstance(event, News):
                self.news.set_result(event)
            elif isinstance(event, StreamEnded):
                self._finish(None)
        self._wake()

    def _fail(self, error: RingdropError) -> None:
        self._finish(error)

    def _finish(self, error: RingdropError | None) -> None:
        if self._ended:
            return
        self._ended = True
        self._error = error
        self._link.forget(self._stream_id)
        if self._owner is not None:
            self._owner.remove_done_callback(self._owner_done)
            self._owner = None
        for future in (self.header, self.catalog, self.info, self.news):
            if not future.done():
                future.set_exception(error or ProtocolError("The sharer sent no answer."))
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)


def _quiet(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class _ClientLink(Link):
    """One attempt's connection to the sharer: checks its key, proves ours, routes stream data."""

    def __init__(
        self,
        backend: Backend,
        quic: QuicLike,
        paths: PathSet,
        identity: Identity,
        peer_id: PeerId,
        dialer: Dialer,
    ) -> None:
        super().__init__(backend, quic, paths, high_water=64 * 1024)
        self.peer_id = peer_id
        self.endpoint = dialer.endpoint
        self.authenticated: asyncio.Future[None] = self._loop.create_future()
        self.authenticated.add_done_callback(_quiet)
        self._dialer = dialer
        self._auth = ClientAuth(identity, peer_id)
        self._conn = ClientConnection(peer_id)
        self._exchanges: dict[int, ResponseBody] = {}
        self._queued = 0
        self._channel = PathsChannel()
        self._background: set[asyncio.Task[None]] = set()

    def share_candidates(self, local_ips: Sequence[str]) -> None:
        """Open the paths stream: tell the sharer where to probe us (our addresses and our
        public one, now or once STUN answers); its answer says where to probe it."""
        port = self.endpoint.port
        ours = [(ip, port) for ip in local_ips if refusal(ip) is None][: MAX_CANDIDATES - 1]
        public = self._dialer.public_address()
        if public is not None and public not in ours:
            ours.append(public)
        stream_id = self.quic.get_next_available_stream_id()
        self._conn.open_paths(stream_id)
        self.send(stream_id, self._channel.send(Candidates(tuple(ours))))
        if public is None:
            task = self._loop.create_task(self._send_public())
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _send_public(self) -> None:
        found = await self._dialer.wait_public_address()
        stream_id = self._conn.paths_stream
        if found is not None and stream_id is not None and self.is_open:
            self.send(stream_id, self._channel.send(Candidates((found,))))

    def now(self) -> float:
        return self._loop.time()

    def open(self, request: Request) -> ResponseBody:
        """Start a request on a new stream."""
        if self.error is not None:
            raise self.error
        self._conn.open_request()
        stream_id = self.quic.get_next_available_stream_id()
        exchange = self._exchanges[stream_id] = ResponseBody(self, stream_id, request)
        return exchange

    def forget(self, stream_id: int) -> None:
        self._exchanges.pop(stream_id, None)

    def queued(self, size: int) -> None:
        self._queued += size
        if self._queued > _HIGH_WATER and not self.held:
            self.held = True
            if not self.backend.holds(self.quic):
                self.endpoint.udp.pause_reading()

    def consumed(self, size: int) -> None:
        self._queued -= size
        if self._queued < _LOW_WATER and self.held:
            self.held = False
            self.endpoint.udp.resume_reading()
            self.flush_soon()

    def refused(self, reason: str) -> None:
        """This attempt's way failed at once: the network refused it, or the relay refused us.
        Refused on the way to an address, nothing listens there (`UnreachableError`); a
        relay's refusal is the relay's."""
        kind = UnreachableError if isinstance(self.paths.current, Direct) else TransferError
        self.terminate(kind(reason))

    def on_handshake(self) -> None:
        key = self.backend.peer_key(self.quic)
        if not self._conn.handshake(key):
            actual = "a key that is not Ed25519" if key is None else str(PeerId(key))
            error = WrongPeerError(
                f"Expected the sharer {self.peer_id}, but {actual} answered. The ticket's "
                "address now belongs to someone else, or someone is impersonating the sharer.",
                expected=str(self.peer_id),
                actual=actual,
            )
            self.close(PROTOCOL_ERROR, "wrong peer id", error)
            return
        if not self._dialer.verified(self):
            self.close(NO_ERROR, "", TransferError("Another way answered first."))
            return
        self.send(AUTH_STREAM, self._auth.hello())

    def on_stream_chunks(self, stream_id: int, chunks: list[bytes]) -> None:
        exchange = self._exchanges.get(stream_id)
        if exchange is None or not exchange._take_content(chunks):
            super().on_stream_chunks(stream_id, chunks)

    def on_stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        # Content first: it is nearly every call.
        if (exchange := self._exchanges.get(stream_id)) is not None:
            exchange._receive(data, end_stream)
            return
        route = self._conn.route(stream_id)
        if route is Route.AUTH:
            self._on_auth_data(data, end_stream)
        elif route is Route.PATHS:
            try:
                found = self._channel.receive_data(data)
            except ProtocolError as error:
                self.close(PROTOCOL_ERROR, str(error), TransferError(str(error)))
                return
            for candidates in found:
                self.paths.add_candidates(candidates.addresses)

    def on_stream_reset(self, stream_id: int, error_code: int) -> None:
        exchange = self._exchanges.get(stream_id)
        if exchange is not None:
            reason = _reset_reason(error_code)
            exchange._fail(TransferError(f"The sharer stopped sending ({reason})."))

    def on_stop_sending(self, stream_id: int, error_code: int) -> None:
        """The sharer discards the rest of a request: its answer says why."""

    def on_connection_id(self, connection_id: bytes, issued: bool) -> None:
        self._dialer.identified(self, connection_id, issued)

    def on_terminated(self, error: TransferError) -> None:
        if not self.authenticated.done():
            self.authenticated.set_exception(error)
        for exchange in list(self._exchanges.values()):
            exchange._fail(error)
        for task in self._background:
            task.cancel()
        self._dialer.ended(self, error)

    def _on_auth_data(self, data: bytes, end_stream: bool) -> None:
        try:
            events = self._auth.receive_data(data, end_stream)
        except ProtocolError as error:
            self.close(PROTOCOL_ERROR, str(error), TransferError(str(error)))
            return
        if any(isinstance(event, Challenge) for event in events):
            self._conn.challenged()
            self.send(AUTH_STREAM, self._auth.prove(), end_stream=True)
            self.authenticated.set_result(None)


# Relay connections being closed after their link ended, kept from the garbage collector.
_CLOSING: set[asyncio.Task[None]] = set()


def _reset_reason(error_code: int) -> str:
    if error_code == INTERNAL_ERROR:
        return "it hit an error reading the content"
    if error_code == CANCELLED:
        return "it cancelled the transfer"
    if error_code == PROTOCOL_ERROR:
        return "this side broke the protocol"
    return f"error code {error_code:#x}"
