"""The sharer's side: a UDP port where authenticated peers' requests meet the caller's handler,
and who gets a connection when there are more peers than room."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from ringdrop.errors import LocalProtocolError, ProtocolError, RingdropError, TransferError
from ringdrop.identity import Identity, PeerId
from ringdrop.protocol import (
    MAX_CANDIDATES,
    NONCE_BYTES,
    Candidates,
    Catalog,
    CatalogRequest,
    GetRequest,
    Hello,
    Info,
    MembersRequest,
    News,
    PeerAuthenticated,
    Request,
    Responder,
    ResponseHeader,
    ServerAuth,
    State,
)
from ringdrop.transport._admission import (
    Admission,
    AdmissionLimits,
    Admit,
    HalfOpen,
    host_key,
    parse_initial,
)
from ringdrop.transport._backend import (
    Backend,
    BackendName,
    QuicLike,
    Settings,
    TlsIdentity,
    backend_for,
    is_loopback,
)
from ringdrop.transport._conn import (
    AUTH_STREAM,
    Counts,
    Refuse,
    Route,
    ServerConnection,
    Start,
    clean_reason,
)
from ringdrop.transport._link import (
    CANCELLED,
    INTERNAL_ERROR,
    NO_ERROR,
    PROTOCOL_ERROR,
    REFUSED,
    Link,
    datagram_size,
)
from ringdrop.transport._paths import Direct, Endpoint, Path, PathSet
from ringdrop.transport._udp import bind_udp
from ringdrop.transport.relay import RelayClient, RelayState

__all__ = ["Handler", "Limits", "Reach", "Reply", "Server", "serve"]

_log = logging.getLogger("ringdrop.transport")

_CID_LENGTH = 8  # both libraries' default connection id length
_STUN_REFRESH = 300.0
_STUN_RETRY = 30.0
_OPENS_PATHS = (GetRequest, MembersRequest, CatalogRequest)
"""The requests whose allowed answer makes the client a peer for the path layer."""


@dataclass(frozen=True, slots=True)
class Limits:
    """What one server grants its peers.

    `max_connections` peers that proved their key are served at once, at most
    `max_connections_per_host` from one host (an IPv4 address or an IPv6 /64; peers that came
    through a relay are not counted per host, since the relay hides their address, nor are
    processes of this machine, on loopback). When there
    is no room for a peer that proved its key, a connection of a stranger makes room (see
    `Server`); otherwise the newcomer is refused. A stranger whose connection has made no
    allowed request may lose it to a newcomer after `stranger_grace` seconds.
    `max_streams` requests at once per connection and `max_requests` in all are served; more
    are answered `busy` at once. Since each served get holds its files open, `max_requests`
    also bounds the server's file handles. `send_buffer` bounds the bytes the QUIC library
    holds per stream before the next piece of content is read. Requests are at most the
    protocol's `MAX_REQUEST_BYTES`; QUIC itself caps open streams per connection at 128
    (aioquic) or 100 (qh3), and neither library lets that be configured.

    Against floods (see `_admission`): at most `max_half_open` connections may be waiting for
    their peer's proof of identity, at most half of them from clients that have not proved their
    address, admitted at `accepts_per_second`; at most `max_half_open_per_host` of those that
    have proved it come from one host. Beyond those, a new client must first answer a Retry
    (at most `retries_per_second` are sent; `accepts_per_second=0` asks every client for one).
    A TLS handshake must finish within `handshake_timeout`, the proof within `auth_timeout`.
    """

    max_connections: int = 32
    max_connections_per_host: int = 8
    stranger_grace: float = 10.0
    max_streams: int = 8
    max_requests: int = 64
    idle_timeout: float = 30.0
    auth_timeout: float = 10.0
    send_buffer: int = 4 * 1024 * 1024
    handshake_timeout: float = 5.0
    # Sized for a burst of honest peers, many behind one address (a NAT): a connection is
    # half-open for a round trip or two, and their number bounds the memory they take.
    max_half_open: int = 64
    max_half_open_per_host: int = 16
    accepts_per_second: float = 100.0
    retries_per_second: float = 2000.0


@dataclass(frozen=True, slots=True)
class Reply:
    """A handler's answer: the header, and for an allowed request its body, catalog, info or
    news (an allowed announce has none)."""

    header: ResponseHeader
    body: AsyncIterable[bytes] | None = None
    catalog: Catalog | None = None
    info: Info | None = None
    news: News | None = None


Handler = Callable[[PeerId, Request], Awaitable[Reply]]
Known = Callable[[Sequence[PeerId]], Sequence[bool]]
"""Which of these peers the node knows (its peer book, which holds every ring member): a
blocking lookup, run on a thread."""


@dataclass(frozen=True, slots=True)
class Reach:
    """How peers reach a server besides its UDP port: its home relay and STUN servers, the
    addresses it tells peers to probe (its own, as tickets list them) once they made an
    allowed request, and this machine's interface addresses (`own`), which no peer may
    name as its candidates."""

    relay: str | None = None
    stun: tuple[tuple[str, int], ...] = ()
    addresses: tuple[tuple[str, int], ...] = ()
    own: tuple[str, ...] = ()


async def serve(
    identity: Identity,
    port: int,
    handler: Handler,
    limits: Limits | None = None,
    *,
    host: str = "::",
    backend: BackendName | None = None,
    reach: Reach | None = None,
    on_relay: Callable[[RelayState], object] | None = None,
    known: Known | None = None,
) -> Server:
    """Listen on UDP `port` (0 picks a free one) of `host` (all addresses by default), and be
    reachable through `reach.relay` (the home relay) by this node's key.

    `backend` forces one QUIC library; by default each connection gets the faster for its path.
    `known` tells peers the node knows from strangers, when connections must be shed.
    """
    try:
        sock = bind_udp(host, port)
    except OSError as error:
        raise TransferError(f"Cannot listen on UDP port {port}: {error.strerror}.") from error
    server = Server(identity, sock, handler, limits or Limits(), backend, reach or Reach(), known)
    server.start(on_relay)
    return server


class Server:
    """Serves requests on one UDP socket and the home relay until closed.

    Who keeps a connection when there is no room (`Limits.max_connections`, or the per-host
    cap): a peer in the node's peer book (every ring member is) never loses its place to a
    stranger, and takes the place of a stranger's connection — one that has made no allowed
    request first, the oldest first. A stranger may take the place of another stranger's
    connection that has made no allowed request in `Limits.stranger_grace` seconds. Otherwise
    the newcomer is refused. So throwaway keys can hold slots only while nobody known needs
    them, and only for the grace period without an allowed request.
    """

    def __init__(
        self,
        identity: Identity,
        sock: socket.socket,
        handler: Handler,
        limits: Limits,
        backend: BackendName | None,
        reach: Reach,
        known: Known | None = None,
    ) -> None:
        self.peer_id = identity.peer_id
        self.handler = handler
        self.limits = limits
        self._identity = identity
        self._backend = backend
        self._reach = reach
        self._tls = TlsIdentity.of(identity)
        self._links: dict[bytes, _ServerLink] = {}
        self._connections: set[_ServerLink] = set()
        # Seats of connections whose peer proved its key: what `max_connections` counts.
        # Half-open ones are bounded apart (admission), so forged Initials never take an
        # honest peer's slot.
        self.counts = Counts(
            limits.max_connections, limits.max_connections_per_host, limits.max_requests
        )
        self._known = known
        self._seating: set[asyncio.Task[None]] = set()
        self.evicted = 0
        loop = asyncio.get_running_loop()
        self.admission = Admission(
            AdmissionLimits(
                max_half_open=limits.max_half_open,
                max_half_open_per_host=limits.max_half_open_per_host,
                accepts_per_second=limits.accepts_per_second,
                retries_per_second=limits.retries_per_second,
                # A client answers a Retry at once, but resends that Initial (same token) with
                # backoff while no slot is free: the token must outlive such a wait.
                token_lifetime=30.0,
            ),
            loop.time,
        )
        self.endpoint = Endpoint(identity, sock, self._route, own_ips=frozenset(reach.own))
        self.reflexive: tuple[str, int] | None = None
        self._stun_task: asyncio.Task[None] | None = None

    def start(self, on_relay: Callable[[RelayState], object] | None) -> None:
        if self._reach.relay is not None:
            endpoint = self.endpoint

            def relay_state(state: RelayState) -> None:
                endpoint.on_relay_state(state)
                if on_relay is not None:
                    on_relay(state)

            relay = RelayClient(
                self._reach.relay, self._identity, endpoint.on_relay_datagrams, relay_state
            )
            endpoint.relay = relay
            relay.start()
        if self._reach.stun:
            self._stun_task = asyncio.get_running_loop().create_task(self._learn_reflexive())
        # The QUIC library for paths off this machine, loaded (a tenth of a second: imports,
        # its crypto's first use) on a thread now, not while the first client waits for its
        # handshake. A failure to load it is raised again when a connection needs it.
        warming = asyncio.get_running_loop().run_in_executor(None, backend_for, None, self._backend)
        warming.add_done_callback(lambda done: done.cancelled() or done.exception())

    @property
    def port(self) -> int:
        return self.endpoint.port

    @property
    def established(self) -> int:
        """Connections served now (their peers proved their keys and got seats)."""
        return self.counts.established

    @property
    def relay_state(self) -> RelayState | None:
        return None if self.endpoint.relay is None else self.endpoint.relay.state

    def candidates(self) -> tuple[tuple[str, int], ...]:
        """What connected peers are told to probe: our addresses and our public one."""
        found = [a for a in self._reach.addresses if not is_loopback(a[0])]
        if self.reflexive is not None and self.reflexive not in found:
            found.append(self.reflexive)
        return tuple(found[:MAX_CANDIDATES])

    async def close(self) -> None:
        """Close every connection, wait for their requests to clean up, close the socket."""
        if self._stun_task is not None:
            self._stun_task.cancel()
        for task in self._seating:
            task.cancel()
        tasks = [task for link in self._connections for task in link.tasks()]
        for link in list(self._connections):
            link.close(NO_ERROR, "the sharer stopped", TransferError("The server closed."))
        await asyncio.gather(*tasks, return_exceptions=True)
        if self.endpoint.relay is not None:
            await self.endpoint.relay.close()
        self.endpoint.close()

    async def __aenter__(self) -> Server:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def _learn_reflexive(self) -> None:
        """Ask STUN for our public address now and every few minutes (NAT mappings change)."""
        while True:
            found = await self.endpoint.reflexive_address(self._reach.stun, timeout=5.0)
            if found is not None and found != self.reflexive:
                _log.info("Public address (STUN): %s:%d", *found)
                self.reflexive = found
            await asyncio.sleep(_STUN_REFRESH if found else _STUN_RETRY)

    # -- who keeps a connection ------------------------------------------------------------------

    def seat(self, link: _ServerLink) -> None:
        """`link`'s peer proved its key: establish it if there is room, else decide who goes."""
        if self.counts.has_room(link.host):
            self._establish(link)
            if self._known is not None:
                self._look_up([link])
            return
        task = asyncio.get_running_loop().create_task(self._seat_when_full(link))
        self._seating.add(task)
        task.add_done_callback(self._seating.discard)

    def _could_make_room(self) -> bool:
        """Whether a newcomer could get a connection: there is room, or a stranger's connection
        might make room for it once it proves its key (a known peer may take any stranger's;
        a stranger only one past its grace without an allowed request). If not, it is refused
        at once, before the handshake."""
        if self.counts.established < self.limits.max_connections:
            return True
        now = asyncio.get_running_loop().time()
        grace = self.limits.stranger_grace
        for link in self._connections:
            if not link.is_seated or link.known is True:
                continue
            if self._known is not None or (not link.allowed and now - link.since >= grace):
                return True
        return False

    def _establish(self, link: _ServerLink) -> None:
        if not link.is_open:
            return  # it ended while its seat was being decided
        link.established(asyncio.get_running_loop().time())

    def _look_up(self, links: list[_ServerLink]) -> None:
        """Learn in the background whether established peers are known (for a later choice)."""
        task = asyncio.get_running_loop().create_task(self._learn_known(links))
        self._seating.add(task)
        task.add_done_callback(self._seating.discard)

    async def _learn_known(self, links: list[_ServerLink]) -> None:
        assert self._known is not None
        peers = [link.peer for link in links if link.peer is not None]
        try:
            answers = await asyncio.to_thread(self._known, peers)
        except Exception:
            _log.exception("Cannot tell known peers from strangers")
            answers = [False] * len(peers)
        for link, known in zip(links, answers, strict=True):
            link.known = known

    async def _seat_when_full(self, link: _ServerLink) -> None:
        unsure = [other for other in self._connections if other.is_seated and other.known is None]
        if self._known is not None:
            await self._learn_known([link, *unsure])
        else:
            link.known = False
        if not link.is_open:
            return
        if not self.counts.has_room(link.host):
            victim = self._victim(link, asyncio.get_running_loop().time())
            if victim is None:
                link.refuse()
                return
            self.evicted += 1
            victim.evict()
        self._establish(link)

    def _victim(self, newcomer: _ServerLink, now: float) -> _ServerLink | None:
        """The stranger's connection that makes room for `newcomer`, if one may (see the class
        docstring): from the newcomer's host when that host is at its cap."""
        seated = [link for link in self._connections if link.is_seated and link.known is False]
        host = newcomer.host
        if host is not None and self.counts.host_full(host):
            seated = [link for link in seated if link.host == host]  # frees both caps
        if not newcomer.known:
            grace = self.limits.stranger_grace
            seated = [link for link in seated if not link.allowed and now - link.since >= grace]
        seated.sort(key=lambda link: (link.allowed, link.since))
        return seated[0] if seated else None

    def _add_connection_id(self, connection_id: bytes, link: _ServerLink) -> None:
        if link in self._connections:
            self._links[connection_id] = link

    def _remove_connection_id(self, connection_id: bytes) -> None:
        self._links.pop(connection_id, None)

    def _forget(self, link: _ServerLink) -> None:
        self._connections.discard(link)
        for connection_id in [cid for cid, known in self._links.items() if known is link]:
            del self._links[connection_id]

    def _route(self, data: bytes, path: Path) -> _ServerLink | None:
        header = _destination(data)
        if header is None:
            return None
        connection_id, is_initial = header
        link = self._links.get(connection_id)
        if link is None and is_initial:
            try:
                link = self._admit(data, path)
            except Exception:
                # A bug must cost this datagram, not the burst the endpoint is reading.
                _log.exception("Cannot accept a connection by %s", path)
        return link

    def _admit(self, data: bytes, path: Path) -> _ServerLink | None:
        """The new connection a client's first Initial earns, if admission grants one."""
        initial = parse_initial(data)
        if initial is None:
            return None
        # Admission counts and validates by address; through a relay, the relay's
        # authenticated key of the sender stands for it.
        address = path.address if isinstance(path, Direct) else (f"relay {path.peer_key.hex()}", 0)
        admitted = self.admission.consider(initial, address)
        if isinstance(admitted, bytes):
            self._send_to(path, admitted)  # a Retry
            return None
        if admitted is None:
            return None
        try:
            return self._accept(admitted, path)
        except BaseException:
            admitted.slot.release()
            raise

    def _send_to(self, path: Path, datagram: bytes) -> None:
        if isinstance(path, Direct):
            self.endpoint.udp.send([datagram], path.address)
        else:
            self.endpoint.send_relay(path.peer_key, [datagram])

    def _accept(self, admitted: Admit, path: Path) -> _ServerLink:
        loopback = isinstance(path, Direct) and is_loopback(path.address[0])
        host = path.address[0] if isinstance(path, Direct) else None
        backend = backend_for(host, self._backend)
        settings = Settings(
            datagram_size=datagram_size(backend, loopback),
            max_data=1024 * 1024,
            max_stream_data=128 * 1024,  # requests are small; replies flow the other way
            idle_timeout=self.limits.idle_timeout,
        )
        quic = backend.server(settings, self._tls, admitted.original_cid, admitted.retry_cid)
        probe_size = datagram_size(backend, loopback)
        paths = PathSet(self.endpoint, way=path, peer_key=None, probe_size=probe_size)
        if not self._could_make_room():
            admitted.slot.release()  # a refusal is answered at once and kept nowhere
            link = _ServerLink(self, backend, quic, paths, None, host=None)
            link.refuse_when_ready = True
            return link
        # Relayed peers are not counted per host (the relay hides their addresses), nor are
        # this machine's own processes.
        group = host_key(path.address[0]) if isinstance(path, Direct) and not loopback else None
        link = _ServerLink(self, backend, quic, paths, admitted.slot, host=group)
        self._connections.add(link)
        # The client sends to the id it chose, or after a Retry to the Retry's id.
        self._links[admitted.retry_cid or admitted.original_cid] = link
        self._links[quic.host_cid] = link
        return link


def _destination(data: bytes) -> tuple[bytes, bool] | None:
    """A QUIC packet's destination connection id and whether it is a v1 Initial packet."""
    if not data:
        return None
    if not data[0] & 0x40:
        return None  # QUIC v1 sets the fixed bit in every packet (RFC 9000 §17)
    if data[0] & 0x80:
        if len(data) < 6 or len(data) < 6 + data[5]:
            return None
        is_initial = data[1:5] == b"\x00\x00\x00\x01" and data[0] & 0x30 == 0
        return data[6 : 6 + data[5]], is_initial
    return data[1 : 1 + _CID_LENGTH], False


class _ServerLink(Link):
    """One client's connection: authenticates it, then serves its requests."""

    def __init__(
        self,
        server: Server,
        backend: Backend,
        quic: QuicLike,
        paths: PathSet,
        slot: HalfOpen | None,
        host: str | None,
    ) -> None:
        super().__init__(backend, quic, paths, server.limits.send_buffer)
        self.refuse_when_ready = False
        self.known: bool | None = None
        """Whether the node knows the peer (None: not asked yet)."""
        self.since = 0.0
        self._server = server
        self._slot = slot
        # Relayed peers' host is None: not counted per host (the relay hides their address).
        self._conn = ServerConnection(server.counts, server.limits.max_streams, host)
        self._auth = ServerAuth(server.peer_id, os.urandom(NONCE_BYTES))
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self._auth_deadline = self._loop.call_later(
            server.limits.auth_timeout, self._auth_timed_out
        )
        self._handshake_deadline = self._loop.call_later(
            server.limits.handshake_timeout, self._handshake_timed_out
        )

    @property
    def host(self) -> str | None:
        """The host it counts against per-host caps (None: not counted)."""
        return self._conn.host

    @property
    def peer(self) -> PeerId | None:
        """The key the peer proved (before it has a seat, too)."""
        return self._conn.peer

    @property
    def allowed(self) -> bool:
        """Whether the peer has made an allowed get, members or catalog request."""
        return self._conn.allowed

    @property
    def is_seated(self) -> bool:
        return self._conn.seated

    def flush(self) -> None:
        if self.is_open and not self.backend.has_path(self.quic):
            # What the peer sent could not even be parsed: nothing to answer, nobody to answer
            # (aioquic would fail building a datagram), and no slot to waste on it.
            self.terminate(TransferError("The peer's first packet was malformed."))
            return
        try:
            if self.refuse_when_ready:
                # Answer the first Initial packet with CONNECTION_CLOSE, and keep nothing.
                self.refuse_when_ready = False
                self._refuse_now()
            else:
                super().flush()
        except Exception:
            self._failed("flushing")

    def receive(self, datagrams: list[bytes]) -> None:
        try:
            super().receive(datagrams)
        except Exception:
            self._failed("reading a datagram")

    def receive_coalesced(self, buffer: bytes, segment: int) -> None:
        try:
            super().receive_coalesced(buffer, segment)
        except Exception:
            self._failed("reading a datagram")

    def _on_timer(self) -> None:
        try:
            super()._on_timer()
        except Exception:
            self._failed("handling a timer")

    def _refuse_now(self) -> None:
        reason = f"the sharer serves at most {self._server.limits.max_connections} peers"
        self.close(REFUSED, reason, TransferError("Refused: too many connections."))

    def refuse(self) -> None:
        """No room for this peer, which proved its key."""
        self._refuse_now()

    def evict(self) -> None:
        """Make room for another peer (see `Server`)."""
        reason = "the sharer needed the room for another peer"
        self.close(REFUSED, reason, TransferError("Evicted to make room for another peer."))

    def established(self, now: float) -> None:
        """Admitted among the connections served: requests flow from now on."""
        assert self.peer is not None
        self.since = now
        if self._server._known is None:
            self.known = False  # the node knows nobody: everyone is a stranger
        self.paths.set_peer(self.peer.raw)
        self.paths.start()
        try:
            decisions = self._conn.seat()
        except ProtocolError as error:
            self._close_for(error)
            return
        self._act(decisions)

    def _failed(self, doing: str) -> None:
        """A bug (ours or the QUIC library's) costs this connection, never the server."""
        _log.exception("A connection failed while %s", doing)
        self.terminate(TransferError("The connection failed on an internal error."))

    def close(self, error_code: int, reason: str, error: TransferError) -> None:
        if self.is_open and not self.backend.has_path(self.quic):
            # Nothing well-formed ever came from the peer: there is nobody to tell.
            self.terminate(error)
        else:
            super().close(error_code, reason, error)

    def tasks(self) -> list[asyncio.Task[None]]:
        return list(self._tasks.values())

    def on_handshake(self) -> None:
        """The handshake proved the client's address; its key it proves on its first stream."""
        self._handshake_deadline.cancel()
        if self._slot is not None:
            self._slot.validate()

    def on_connection_id(self, connection_id: bytes, issued: bool) -> None:
        if issued:
            self._server._add_connection_id(connection_id, self)
        else:
            self._server._remove_connection_id(connection_id)

    def on_stream_data(self, stream_id: int, data: bytes, end_stream: bool) -> None:
        try:
            route = self._conn.route(stream_id, data)
            if route is Route.AUTH:
                self._on_auth_data(data, end_stream)
            elif route is Route.PATHS:
                self._conn.paths_data(data)
                self._exchange_candidates()
            else:
                self._act(self._conn.request_data(stream_id, data, end_stream))
        except ProtocolError as error:
            self._close_for(error)

    def on_stream_reset(self, stream_id: int, error_code: int) -> None:
        try:
            cancel = self._conn.reset(stream_id)
        except ProtocolError as error:
            self._close_for(error)
            return
        if cancel:
            self._tasks[stream_id].cancel()

    def on_stop_sending(self, stream_id: int, error_code: int) -> None:
        """The requester gave up: stop serving, and drop a request still waiting for auth."""
        if self._conn.stopped(stream_id):
            self._tasks[stream_id].cancel()

    def on_terminated(self, error: TransferError) -> None:
        self._auth_deadline.cancel()
        self._handshake_deadline.cancel()
        if self._slot is not None:
            self._slot.release()
        self._conn.close()
        for task in self._tasks.values():
            task.cancel()
        self._server._forget(self)

    def _on_auth_data(self, data: bytes, end_stream: bool) -> None:
        try:
            events = self._auth.receive_data(data, end_stream)
        except ProtocolError as error:
            self._close_for(error)
            return
        for event in events:
            if isinstance(event, Hello):
                self.send(AUTH_STREAM, self._auth.challenge(), end_stream=True)
            elif isinstance(event, PeerAuthenticated):
                self._auth_deadline.cancel()
                self._handshake_deadline.cancel()  # streams flow only after a handshake
                if self._slot is not None:
                    self._slot.release()
                self._conn.proved(event.peer_id)
                self._server.seat(self)

    def _exchange_candidates(self) -> None:
        """Once the peer made an allowed request: its candidates are probed, and answered with
        ours (a stranger learns nothing of our addresses, and cannot direct our pings)."""
        exchanged = self._conn.exchange(Candidates(self._server.candidates()))
        if exchanged is None:
            return
        wire, offered = exchanged
        if wire:
            assert self._conn.paths_stream is not None
            self.send(self._conn.paths_stream, wire)
        self.paths.add_candidates(offered)

    def _on_allowed(self) -> None:
        """The peer made an allowed request: a peer, not a stranger, for the path layer."""
        if self.is_open and self._conn.allow():
            self.paths.allow_probing()
            self._exchange_candidates()

    def _act(self, decisions: list[Start | Refuse]) -> None:
        for decision in decisions:
            if isinstance(decision, Refuse):
                # A refusal is the whole answer: the rest of the request is discarded.
                self.send(decision.stream_id, decision.wire, end_stream=True)
                self.stop_receiving(decision.stream_id, PROTOCOL_ERROR)
            else:
                self._start(decision)

    def _start(self, start: Start) -> None:
        peer = self._conn.peer
        assert peer is not None
        stream_id = start.stream_id
        task = asyncio.create_task(self._serve(stream_id, start.responder, peer, start.request))
        self._tasks[stream_id] = task
        task.add_done_callback(lambda _: self._served(stream_id))

    def _served(self, stream_id: int) -> None:
        self._tasks.pop(stream_id, None)
        self._conn.served(stream_id)

    async def _serve(
        self, stream_id: int, responder: Responder, peer: PeerId, request: Request
    ) -> None:
        try:
            reply = await self._server.handler(peer, request)
        except RingdropError as error:
            reply = Reply(ResponseHeader("error", clean_reason(str(error))))
        except Exception:
            _log.exception("The request handler failed on %s from %s", request, peer)
            reply = Reply(ResponseHeader("error", "the sharer hit an internal error"))
        if reply.header.status == "allowed" and isinstance(request, _OPENS_PATHS):
            # Content (or a catalog) is worth a direct path; a ring's manifests and news, a
            # frame or two on a connection that usually closes next, are not.
            self._on_allowed()
        try:
            await self._send_reply(stream_id, responder, reply)
        except TransferError:
            pass  # the stream or the connection is gone: nobody is left to tell
        except asyncio.CancelledError:
            self.abandon(stream_id, CANCELLED)
            raise
        except Exception:
            _log.exception("Serving %s to %s failed", request, peer)
            self.abandon(stream_id, INTERNAL_ERROR)

    async def _send_reply(self, stream_id: int, responder: Responder, reply: Reply) -> None:
        header = responder.send_header(reply.header)
        # A refusal, or an allowed announce, is the whole answer.
        if responder.state is State.DONE:
            self.send(stream_id, header, end_stream=True)
        elif reply.catalog is not None:
            self.send(stream_id, header + responder.send_catalog(reply.catalog), end_stream=True)
        elif reply.info is not None:
            self.send(stream_id, header + responder.send_info(reply.info), end_stream=True)
        elif reply.news is not None:
            self.send(stream_id, header + responder.send_news(reply.news), end_stream=True)
        elif reply.body is not None:
            self.send(stream_id, header)
            await self._send_body(stream_id, responder, aiter(reply.body))
        else:
            raise LocalProtocolError("An allowed reply needs a body, a catalog or an info.")

    async def _send_body(
        self, stream_id: int, responder: Responder, pieces: AsyncIterator[bytes]
    ) -> None:
        """Pull a piece only when the stream has room for it: the file is read no further ahead
        than the body itself reads."""
        try:
            while True:
                await self.wait_for_room(stream_id)
                piece = await anext(pieces, None)
                if piece is None:
                    break
                self.send(stream_id, responder.send_data(piece))
            self.send(stream_id, b"", end_stream=True)
        finally:
            close = getattr(pieces, "aclose", None)
            if close is not None:
                await close()

    def _close_for(self, error: ProtocolError) -> None:
        self.close(PROTOCOL_ERROR, clean_reason(str(error)), TransferError(str(error)))

    def _auth_timed_out(self) -> None:
        limit = self._server.limits.auth_timeout
        reason = f"no proof of identity within {limit:g} s"
        self.close(PROTOCOL_ERROR, reason, TransferError(f"The peer sent {reason}."))

    def _handshake_timed_out(self) -> None:
        # Frees the slot of a client that never finishes its handshake: a forged Initial, a
        # peer that went away, or one trying to hold slots.
        limit = self._server.limits.handshake_timeout
        reason = f"no TLS handshake within {limit:g} s"
        error = TransferError(f"The peer did not finish its TLS handshake within {limit:g} s.")
        self.close(PROTOCOL_ERROR, reason, error)
