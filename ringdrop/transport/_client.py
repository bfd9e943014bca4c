"""The receiver's side: connect to a sharer at the first of its addresses that proves its key."""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Sequence
from typing import Any

from ringdrop.errors import ProtocolError, RingdropError, TransferError, WrongPeerError
from ringdrop.identity import Identity, PeerId
from ringdrop.protocol import (
    Catalog,
    CatalogEntry,
    CatalogRequest,
    Challenge,
    ClientAuth,
    Data,
    GetRequest,
    MembersRequest,
    Request,
    Requester,
    ResponseHeader,
    StreamEnded,
)
from ringdrop.ticket import Address
from ringdrop.transport._backend import (
    Backend,
    BackendName,
    NetworkAddress,
    QuicLike,
    Settings,
    backend_for,
)
from ringdrop.transport._link import (
    CANCELLED,
    INTERNAL_ERROR,
    NO_ERROR,
    PROTOCOL_ERROR,
    Endpoint,
    Link,
    datagram_size,
    open_socket,
)

__all__ = ["Connection", "ResponseBody", "connect"]

_AUTH_STREAM = 0
# A consumer slower than the network makes content pile up; past this much, stop reading the
# socket (QUIC then sees loss and slows down) until it has caught up to the low mark.
_HIGH_WATER = 8 * 1024 * 1024
_LOW_WATER = 2 * 1024 * 1024


async def connect(
    identity: Identity,
    peer_id: PeerId,
    addresses: Sequence[Address],
    *,
    timeout: float = 10.0,
    idle_timeout: float = 30.0,
    backend: BackendName | None = None,
) -> Connection:
    """Connect to `peer_id`, trying all `addresses` at once; the first that authenticates wins.

    Raises WrongPeerError if only other keys answered, TransferError if no address worked.
    `backend` forces one QUIC library; by default each address gets the faster for its path.
    """
    attempts = {
        asyncio.create_task(_attempt(backend, identity, peer_id, address, idle_timeout)): address
        for address in addresses
    }
    failures: dict[Address, RingdropError] = {}
    winner: Connection | None = None
    try:
        async with asyncio.timeout(timeout):
            pending = set(attempts)
            while pending and winner is None:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for attempt in done:
                    error = attempt.exception()
                    if error is None:
                        winner = winner or attempt.result()
                    elif isinstance(error, RingdropError):
                        failures[attempts[attempt]] = error
                    else:
                        raise error
    except TimeoutError:
        for address in addresses:
            failures.setdefault(address, TransferError(f"no answer within {timeout:g} s"))
    finally:
        for attempt in attempts:
            attempt.cancel()
        for outcome in await asyncio.gather(*attempts, return_exceptions=True):
            if isinstance(outcome, Connection) and outcome is not winner:
                await outcome.close()  # a runner-up that authenticated as quickly
    if winner is None:
        raise _connect_error(peer_id, failures)
    return winner


def _connect_error(peer_id: PeerId, failures: dict[Address, RingdropError]) -> RingdropError:
    wrong = [error for error in failures.values() if isinstance(error, WrongPeerError)]
    if wrong and len(wrong) == len(failures):
        return wrong[0]
    lines = "; ".join(f"{address}: {error}" for address, error in failures.items())
    return TransferError(f"Could not reach {peer_id.short()}… at any address ({lines})")


async def _attempt(
    backend_name: BackendName | None,
    identity: Identity,
    peer_id: PeerId,
    address: Address,
    idle_timeout: float,
) -> Connection:
    family = socket.AF_INET6 if address.ip.version == 6 else socket.AF_INET
    target: NetworkAddress = (str(address.ip), address.port)
    sock = open_socket(family)
    try:
        sock.connect(target)
    except OSError as error:
        sock.close()
        raise TransferError(f"cannot send to it: {error.strerror}") from error
    settings = Settings(
        datagram_size=datagram_size(str(address.ip)),
        max_data=16 * 1024 * 1024,
        max_stream_data=8 * 1024 * 1024,
        idle_timeout=idle_timeout,
    )
    backend = backend_for(str(address.ip), backend_name)
    link = _ClientLink(backend, backend.client(settings), identity, peer_id)
    link.endpoint = Endpoint(sock, lambda _data, _address: link, link.on_socket_error, target)
    try:
        link.quic.connect(target, link.now())
        link.flush()
        await link.authenticated
    except BaseException:
        link.close(NO_ERROR, "", TransferError("The connection attempt was abandoned."))
        raise
    return Connection(link, address)


class Connection:
    """An authenticated connection to a sharer; several requests may run at once."""

    def __init__(self, link: _ClientLink, address: Address) -> None:
        self._link = link
        self.peer_id = link.peer_id
        self.address = address

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
        piece = self._pieces.popleft()
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
        self, backend: Backend, quic: QuicLike, identity: Identity, peer_id: PeerId
    ) -> None:
        super().__init__(backend, quic, high_water=64 * 1024)
        self.peer_id = peer_id
        self.authenticated: asyncio.Future[None] = self._loop.create_future()
        self.authenticated.add_done_callback(_quiet)
        self._auth = ClientAuth(identity, peer_id)
        self._exchanges: dict[int, ResponseBody] = {}
        self._queued = 0

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
            self.endpoint.pause_reading()

    def consumed(self, size: int) -> None:
        self._queued -= size
        if self._queued < _LOW_WATER:
            self.endpoint.resume_reading()

    def send_datagrams(self, datagrams: list[tuple[bytes, NetworkAddress]]) -> None:
        self.endpoint.send(datagrams)

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
        self.endpoint.close()

    def _on_auth_data(self, data: bytes, end_stream: bool) -> None:
        try:
            events = self._auth.receive_data(data, end_stream)
        except ProtocolError as error:
            self.close(PROTOCOL_ERROR, str(error), TransferError(str(error)))
            return
        if any(isinstance(event, Challenge) for event in events):
            self.send(_AUTH_STREAM, self._auth.prove(), end_stream=True)
            self.authenticated.set_result(None)


def _reset_reason(error_code: int) -> str:
    if error_code == INTERNAL_ERROR:
        return "it hit an error reading the content"
    if error_code == CANCELLED:
        return "it cancelled the transfer"
    if error_code == PROTOCOL_ERROR:
        return "this side broke the protocol"
    return f"error code {error_code:#x}"
