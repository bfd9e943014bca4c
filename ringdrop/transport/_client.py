"""The receiver's side: connect to a sharer by the first path that answers, directly or through its
relay, and check that it holds the key the ticket names."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import nacl.signing

from ringdrop.errors import ProtocolError, RingdropError, TransferError, WrongPeerError
from ringdrop.identity import Identity, PeerId
from ringdrop.protocol import (
    MAX_CANDIDATES,
    Candidates,
    Catalog,
    CatalogEntry,
    CatalogRequest,
    Challenge,
    ClientAuth,
    Data,
    GetRequest,
    MembersRequest,
    PathsChannel,
    Request,
    Requester,
    ResponseHeader,
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
from ringdrop.transport._link import (
    CANCELLED,
    INTERNAL_ERROR,
    NO_ERROR,
    PEER,
    PROTOCOL_ERROR,
    Link,
    datagram_size,
)
from ringdrop.transport._paths import Direct, Endpoint, PathInfo, PathSet
from ringdrop.transport._udp import bind_udp, socket_address
from ringdrop.transport.relay import RelayClient

__all__ = ["Connection", "ResponseBody", "connect"]

_AUTH_STREAM = 0
# A consumer slower than the network makes content pile up; past this much, stop reading the
# socket (QUIC then sees loss and slows down) until it has caught up to the low mark.
_HIGH_WATER = 2 * 1024 * 1024
_LOW_WATER = 512 * 1024


async def connect(
    identity: Identity,
    peer_id: PeerId,
    addresses: Sequence[Address],
    *,
    relay: str | None = None,
    stun: Sequence[tuple[str, int]] = (),
    local_ips: Sequence[str] = (),
    machine_ips: Sequence[str] = (),
    timeout: float = 10.0,
    idle_timeout: float = 30.0,
    backend: BackendName | None = None,
    on_path: Callable[[PathInfo], object] | None = None,
) -> Connection:
    """Connect to `peer_id` by whichever way answers first: its direct `addresses` and its home
    `relay` are tried at once, on one QUIC connection (see _paths.py); afterwards the path layer
    probes for a direct path and moves to it.

    A sharer on this machine (an address in the ticket is loopback or one of `machine_ips`,
    this machine's interface addresses) is tried on loopback first, where large datagrams make
    transfers several times faster. `stun` servers tell this side its public address, which the
    sharer is then told to probe; `local_ips` are the addresses this side offers likewise.
    Raises WrongPeerError if only other keys answered, TransferError if nothing worked.
    """
    failures: dict[str, RingdropError] = {}
    targets = [(str(a.ip), a.port) for a in addresses]
    here = set(machine_ips)
    local = [t for t in targets if t[0] in here or is_loopback(t[0])]
    # An address of this machine is still tried as itself after loopback: the same private
    # address can belong to another machine on another network.
    remote = [t for t in targets if not is_loopback(t[0])]
    plan = _Plan(identity, peer_id, stun, local_ips, idle_timeout, backend, on_path)
    if local:
        loopback = list(dict.fromkeys(("::1" if ":" in h else "127.0.0.1", p) for h, p in local))
        # Other ways stay open if the guess was wrong (the same private address on two LANs).
        first_try = timeout if not remote and relay is None else min(timeout, _LOOPBACK_FIRST)
        try:
            return await plan.attempt(loopback, None, first_try)
        except WrongPeerError as error:
            if not remote and relay is None:
                raise
            failures[_where(loopback, None)] = error
        except TransferError as error:
            failures[_where(loopback, None)] = error
            if not remote and relay is None:
                raise _connect_error(peer_id, failures, relay) from None
    try:
        return await plan.attempt(remote, relay, timeout)
    except WrongPeerError:
        raise
    except TransferError as error:
        failures[_where(remote, relay)] = error
        raise _connect_error(peer_id, failures, relay) from None


def _where(targets: list[tuple[str, int]], relay: str | None) -> str:
    ways = [str(Direct(target)) for target in targets] + ([f"relay {relay}"] if relay else [])
    return ", ".join(ways) or "nowhere"


_LOOPBACK_FIRST = 2.0
_STUN_TIMEOUT = 3.0


def _connect_error(
    peer_id: PeerId, failures: dict[str, RingdropError], relay: str | None
) -> RingdropError:
    wrong = [error for error in failures.values() if isinstance(error, WrongPeerError)]
    if wrong and len(wrong) == len(failures):
        return wrong[0]
    lines = "; ".join(f"{where}: {error}" for where, error in failures.items())
    advice = (
        ""
        if relay is not None
        else " No relay was tried (the ticket names none, or relaying is disabled here): "
        "behind a NAT or firewall, ask the sharer for a ticket with a relay, or enable one."
    )
    return TransferError(f"Could not reach {peer_id.short()}… ({lines}).{advice}")


@dataclass(frozen=True)
class _Plan:
    """What every connection attempt to one peer shares."""

    identity: Identity
    peer_id: PeerId
    stun: Sequence[tuple[str, int]]
    local_ips: Sequence[str]
    idle_timeout: float
    backend: BackendName | None
    on_path: Callable[[PathInfo], object] | None

    async def attempt(
        self, targets: list[tuple[str, int]], relay: str | None, timeout: float
    ) -> Connection:
        """One QUIC connection, its first datagrams sent to every target and the relay."""
        loopback = relay is None and bool(targets) and all(is_loopback(h) for h, _ in targets)
        backend = backend_for("127.0.0.1" if loopback else None, self.backend)
        settings = Settings(
            datagram_size=datagram_size(backend, loopback),
            max_data=16 * 1024 * 1024,
            max_stream_data=8 * 1024 * 1024,
            idle_timeout=self.idle_timeout,
        )
        try:
            sock = bind_udp("::", 0)
        except OSError as error:
            raise TransferError(f"cannot open a UDP socket: {error.strerror}") from error
        holder: list[_ClientLink] = []
        if loopback and len(targets) == 1:
            # A connected socket hears the kernel's "connection refused": no waiting for a
            # timeout when nothing serves on this machine.
            sock.connect(socket_address(sock.family, targets[0]))
        endpoint = Endpoint(
            self.identity,
            sock,
            lambda _data, _path: holder[0],
            on_error=lambda error: holder[0].on_socket_error(error),
        )
        if relay is not None:
            # A key of its own for the relay, not the node's: a relay forwards to the newest
            # connection of a key, so using the node's would cut off this node's own server
            # (serving in the TUI, or `ringdrop serve` in another terminal). The sharer learns
            # who we are from the QUIC handshake, and the relay learns less.
            endpoint.relay = RelayClient(
                relay,
                Identity(nacl.signing.SigningKey.generate()),
                endpoint.on_relay_datagrams,
                endpoint.on_relay_state,
            )
        paths = PathSet(
            endpoint,
            peer_key=self.peer_id.raw,
            probe_size=datagram_size(backend, loopback),
            dialled=targets,
            relay_key=self.peer_id.raw,  # a server is on its relay as itself
            on_change=self.on_path,
        )
        link = _ClientLink(backend, backend.client(settings), paths, self.identity, self.peer_id)
        link.endpoint = endpoint
        holder.append(link)
        try:
            if endpoint.relay is not None:
                endpoint.relay.start()
            link.quic.connect(PEER, link.now())
            link.flush()
            async with asyncio.timeout(timeout):
                await link.authenticated
        except TimeoutError:
            link.close(NO_ERROR, "", TransferError("The connection attempt timed out."))
            raise TransferError(f"no answer within {timeout:g} s") from None
        except BaseException:
            link.close(NO_ERROR, "", TransferError("The connection attempt was abandoned."))
            raise
        paths.start()
        link.share_candidates(self.local_ips, self.stun)
        return Connection(link)


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
        self._pieces: deque[bytes] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._ended = False
        self._error: RingdropError | None = None
        self._owner: asyncio.Task[Any] | None = None
        self.header: asyncio.Future[ResponseHeader] = asyncio.get_running_loop().create_future()
        self.catalog: asyncio.Future[Catalog] = asyncio.get_running_loop().create_future()
        # A failed request leaves its futures unread: that is not worth a warning.
        self.header.add_done_callback(_quiet)
        self.catalog.add_done_callback(_quiet)
        link.send(stream_id, self._requester.send_request(request), end_stream=True)

    def __aiter__(self) -> ResponseBody:
        return self

    async def __anext__(self) -> bytes:
        while not self._pieces:
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
        # Whatever arrived since the last read, as one piece: work downstream (verifying,
        # writing, progress) is then per burst of datagrams, not per datagram.
        if len(self._pieces) == 1:
            piece = self._pieces.popleft()
        else:
            piece = b"".join(self._pieces)
            self._pieces.clear()
        self._link.consumed(len(piece))
        return piece

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
        self._link.consumed(sum(map(len, self._pieces)))
        self._pieces.clear()

    def _receive(self, data: bytes, end_stream: bool) -> None:
        try:
            events = self._requester.receive_data(data, end_stream)
        except ProtocolError as error:
            self._link.abandon(self._stream_id, PROTOCOL_ERROR)
            self._finish(error)
            return
        for event in events:
            if isinstance(event, Data):
                self._pieces.append(event.data)
                self._link.queued(len(event.data))
            elif isinstance(event, ResponseHeader):
                self.header.set_result(event)
            elif isinstance(event, Catalog):
                self.catalog.set_result(event)
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
        for future in (self.header, self.catalog):
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
    """The connection to the sharer: checks its key, proves ours, routes stream data."""

    endpoint: Endpoint

    def __init__(
        self,
        backend: Backend,
        quic: QuicLike,
        paths: PathSet,
        identity: Identity,
        peer_id: PeerId,
    ) -> None:
        super().__init__(backend, quic, paths, high_water=64 * 1024)
        self.peer_id = peer_id
        self.authenticated: asyncio.Future[None] = self._loop.create_future()
        self.authenticated.add_done_callback(_quiet)
        self._auth = ClientAuth(identity, peer_id)
        self._exchanges: dict[int, ResponseBody] = {}
        self._queued = 0
        self._channel = PathsChannel()
        self._paths_stream: int | None = None
        self._background: set[asyncio.Task[None]] = set()

    def share_candidates(self, local_ips: Sequence[str], stun: Sequence[tuple[str, int]]) -> None:
        """Open the paths stream: tell the sharer where to probe us (our addresses now, our
        public one once STUN answers); its answer says where to probe it."""
        port = self.endpoint.udp.port
        ours = [(ip, port) for ip in local_ips if not is_loopback(ip)][: MAX_CANDIDATES - 1]
        self._paths_stream = self.quic.get_next_available_stream_id()
        self.send(self._paths_stream, self._channel.send(Candidates(tuple(ours))))
        if stun:
            task = self._loop.create_task(self._send_reflexive(stun))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def _send_reflexive(self, stun: Sequence[tuple[str, int]]) -> None:
        found = await self.endpoint.reflexive_address(stun, _STUN_TIMEOUT)
        if found is not None and self._paths_stream is not None and self.is_open:
            self.send(self._paths_stream, self._channel.send(Candidates((found,))))

    def now(self) -> float:
        return self._loop.time()

    def open(self, request: Request) -> ResponseBody:
        """Start a request on a new stream."""
        if self.error is not None:
            raise self.error
        stream_id = self.quic.get_next_available_stream_id()
        exchange = self._exchanges[stream_id] = ResponseBody(self, stream_id, request)
        return exchange

    def forget(self, stream_id: int) -> None:
        self._exchanges.pop(stream_id, None)

    def queued(self, size: int) -> None:
        self._queued += size
        if self._queued > _HIGH_WATER:
            self.endpoint.udp.pause_reading()

    def consumed(self, size: int) -> None:
        self._queued -= size
        if self._queued < _LOW_WATER:
            self.endpoint.udp.resume_reading()

    def on_socket_error(self, error: OSError) -> None:
        self.terminate(TransferError(f"the network refused the connection: {error.strerror}"))

    def on_handshake(self) -> None:
        key = self.backend.peer_key(self.quic)
        if key != self.peer_id.raw:
            actual = "a key that is not Ed25519" if key is None else str(PeerId(key))
            error = WrongPeerError(
                f"Expected the sharer {self.peer_id}, but {actual} answered. The ticket's "
                "address now belongs to someone else, or someone is impersonating the sharer.",
                expected=str(self.peer_id),
                actual=actual,
            )
            self.close(PROTOCOL_ERROR, "wrong peer id", error)
            return
        self.send(_AUTH_STREAM, self._auth.hello())

    def on_stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        if stream_id == _AUTH_STREAM:
            self._on_auth_data(data, end_stream)
        elif stream_id == self._paths_stream:
            try:
                found = self._channel.receive_data(data)
            except ProtocolError as error:
                self.close(PROTOCOL_ERROR, str(error), TransferError(str(error)))
                return
            for candidates in found:
                self.paths.add_candidates(candidates.addresses)
        elif (exchange := self._exchanges.get(stream_id)) is not None:
            exchange._receive(data, end_stream)

    def on_stream_reset(self, stream_id: int, error_code: int) -> None:
        exchange = self._exchanges.get(stream_id)
        if exchange is not None:
            reason = _reset_reason(error_code)
            exchange._fail(TransferError(f"The sharer stopped sending ({reason})."))

    def on_stop_sending(self, stream_id: int, error_code: int) -> None:
        """The sharer discards the rest of a request: its answer says why."""

    def on_connection_id(self, connection_id: bytes, issued: bool) -> None:
        """A client's socket talks to one peer: nothing to route."""

    def on_terminated(self, error: TransferError) -> None:
        if not self.authenticated.done():
            self.authenticated.set_exception(error)
        for exchange in list(self._exchanges.values()):
            exchange._fail(error)
        for task in self._background:
            task.cancel()
        self.endpoint.close()
        relay = self.endpoint.relay
        if relay is not None:
            task = self._loop.create_task(relay.close())
            _CLOSING.add(task)
            task.add_done_callback(_CLOSING.discard)

    def _on_auth_data(self, data: bytes, end_stream: bool) -> None:
        try:
            events = self._auth.receive_data(data, end_stream)
        except ProtocolError as error:
            self.close(PROTOCOL_ERROR, str(error), TransferError(str(error)))
            return
        if any(isinstance(event, Challenge) for event in events):
            self.send(_AUTH_STREAM, self._auth.prove(), end_stream=True)
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
