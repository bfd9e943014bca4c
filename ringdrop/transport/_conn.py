"""A connection's rules as sans-IO machines, one per side: which stream is which, what a peer may
do before it proves its key, and the limits on its requests. The links feed them events and act
on their decisions; they never touch a socket, a task or a clock."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum, auto
from types import MappingProxyType
from typing import TypeVar

from ringdrop.errors import LocalProtocolError, ProtocolError
from ringdrop.identity import PeerId
from ringdrop.protocol import (
    MAX_CANDIDATES,
    MAX_REQUEST_BYTES,
    Candidates,
    PathsChannel,
    Request,
    Responder,
    ResponseHeader,
    State,
    StreamEnded,
    encode,
)

__all__ = [
    "AUTH_STREAM",
    "CLIENT_TRANSITIONS",
    "SERVER_TRANSITIONS",
    "ClientConnection",
    "ClientPhase",
    "ClientTrigger",
    "Counts",
    "Phase",
    "Refuse",
    "Route",
    "ServerConnection",
    "Start",
    "Trigger",
    "clean_reason",
]

Address = tuple[str, int]

AUTH_STREAM = 0
"""The client's first stream: authentication (tickets/PROTOCOL.md)."""
_MAX_REASON = 1000
_PATHS_FIRST = bytes([PathsChannel.FIRST_BYTE])
_P = TypeVar("_P", bound=Enum)
_T = TypeVar("_T", bound=Enum)


class Route(Enum):
    """Which machine a stream's bytes belong to."""

    AUTH = auto()
    PATHS = auto()
    REQUEST = auto()
    IGNORED = auto()
    """A stream the client did not open: nothing in ringdrop is sent on one."""


class Phase(Enum):
    """Where the server's side of a connection stands. CLOSED is never left."""

    PROVING = auto()
    SEATING = auto()
    SEATED = auto()
    ALLOWED = auto()
    CLOSED = auto()


class Trigger(Enum):
    """What moves the server's side, as tickets/PROTOCOL.md's table writes it."""

    PROOF = "proof verified"
    SEAT = "seat granted"
    REQUEST = "request"
    PATHS = "paths stream data"
    ALLOWED = "allowed get, members or catalog"
    CLOSE = "connection ended"


SERVER_TRANSITIONS = MappingProxyType(
    {
        (Phase.PROVING, Trigger.REQUEST): Phase.PROVING,
        (Phase.PROVING, Trigger.PATHS): Phase.PROVING,
        (Phase.PROVING, Trigger.PROOF): Phase.SEATING,
        (Phase.PROVING, Trigger.CLOSE): Phase.CLOSED,
        (Phase.SEATING, Trigger.REQUEST): Phase.SEATING,
        (Phase.SEATING, Trigger.PATHS): Phase.SEATING,
        (Phase.SEATING, Trigger.SEAT): Phase.SEATED,
        (Phase.SEATING, Trigger.CLOSE): Phase.CLOSED,
        (Phase.SEATED, Trigger.REQUEST): Phase.SEATED,
        (Phase.SEATED, Trigger.PATHS): Phase.SEATED,
        (Phase.SEATED, Trigger.ALLOWED): Phase.ALLOWED,
        (Phase.SEATED, Trigger.CLOSE): Phase.CLOSED,
        (Phase.ALLOWED, Trigger.REQUEST): Phase.ALLOWED,
        (Phase.ALLOWED, Trigger.PATHS): Phase.ALLOWED,
        (Phase.ALLOWED, Trigger.ALLOWED): Phase.ALLOWED,
        (Phase.ALLOWED, Trigger.CLOSE): Phase.CLOSED,
    }
)
"""Every move of the server's side. The peer cannot cause a move the table lacks (the stream
machines refuse it first); the server asking for one is its own bug (LocalProtocolError)."""


class ClientPhase(Enum):
    """Where the client's side of a connection stands."""

    HANDSHAKE = auto()
    PROVING = auto()
    READY = auto()


class ClientTrigger(Enum):
    """What moves the client's side, as tickets/PROTOCOL.md's table writes it."""

    KEY = "handshake proves the expected key"
    CHALLENGE = "challenge answered"
    PATHS = "paths stream opened"
    REQUEST = "request opened"


CLIENT_TRANSITIONS = MappingProxyType(
    {
        (ClientPhase.HANDSHAKE, ClientTrigger.KEY): ClientPhase.PROVING,
        (ClientPhase.PROVING, ClientTrigger.CHALLENGE): ClientPhase.READY,
        (ClientPhase.READY, ClientTrigger.PATHS): ClientPhase.READY,
        (ClientPhase.READY, ClientTrigger.REQUEST): ClientPhase.READY,
    }
)
"""Every move of the client's side; asking for another is this side's bug."""


def clean_reason(text: str) -> str:
    """`text` made fit for a response header or a close frame: short, no control characters."""
    clean = "".join(" " if unicodedata.category(char) in ("Cc", "Cs") else char for char in text)
    return clean[:_MAX_REASON]


class Counts:
    """What a server's connections hold at once, against its limits: seats (in all, and per
    host; None is a host not counted) and requests being served. Shared by its connections."""

    def __init__(self, max_connections: int, max_per_host: int, max_requests: int) -> None:
        self.max_connections = max_connections
        self.max_per_host = max_per_host
        self.max_requests = max_requests
        self.established = 0
        self.serving = 0
        self._by_host: dict[str, int] = {}

    def has_room(self, host: str | None) -> bool:
        if self.established >= self.max_connections:
            return False
        return host is None or not self.host_full(host)

    def host_full(self, host: str) -> bool:
        return self._by_host.get(host, 0) >= self.max_per_host

    def seat(self, host: str | None) -> None:
        self.established += 1
        if host is not None:
            self._by_host[host] = self._by_host.get(host, 0) + 1

    def unseat(self, host: str | None) -> None:
        self.established -= 1
        if host is not None:
            left = self._by_host[host] - 1
            if left:
                self._by_host[host] = left
            else:
                del self._by_host[host]  # so the table never outgrows the connections


@dataclass(frozen=True, slots=True)
class Start:
    """Serve `request` on `stream_id`, answering through `responder`."""

    stream_id: int
    request: Request
    responder: Responder


@dataclass(frozen=True, slots=True)
class Refuse:
    """Send `wire` and end the stream, and stop reading the rest of the request."""

    stream_id: int
    wire: bytes


@dataclass(slots=True)
class _Exchange:
    """One request stream: its machine, and whether each side of it is finished."""

    responder: Responder
    started: bool = False
    served: bool = False
    received_all: bool = False


class ServerConnection:
    """The server's side of one connection (tickets/PROTOCOL.md, "Connection machines").

    Requests and paths data wait until the peer has proved its key and been given a seat;
    at most `max_streams` requests at once on the connection and the server's `counts` limit
    in all are served, more are refused `busy`; the paths stream, told apart by its first
    byte, is answered (with the addresses to probe) only once the peer made an allowed get,
    members or catalog request. Raises ProtocolError for what breaks the connection.
    """

    def __init__(self, counts: Counts, max_streams: int, host: str | None) -> None:
        self.phase = Phase.PROVING
        self.peer: PeerId | None = None
        """The key the peer proved (before it has a seat, too)."""
        self.host = host
        """The host it counts against per-host caps (None: not counted)."""
        self.paths_stream: int | None = None
        self._counts = counts
        self._max_streams = max_streams
        self._streams: dict[int, _Exchange] = {}
        self._held: list[tuple[int, Request]] = []
        self._early = b""
        self._channel: PathsChannel | None = None
        self._offered: list[Address] = []
        self._told = False

    @property
    def seated(self) -> bool:
        return self.phase is Phase.SEATED or self.phase is Phase.ALLOWED

    @property
    def allowed(self) -> bool:
        return self.phase is Phase.ALLOWED

    def route(self, stream_id: int, data: bytes) -> Route:
        """Whose bytes these are: the paths stream is the one that starts with CANDIDATES."""
        if stream_id == AUTH_STREAM:
            return Route.AUTH
        if stream_id % 4 != 0:
            raise ProtocolError("The peer opened a kind of stream ringdrop never uses.")
        if stream_id == self.paths_stream:
            return Route.PATHS
        if (
            self.paths_stream is None
            and stream_id not in self._streams
            and data[:1] == _PATHS_FIRST
        ):
            self.paths_stream = stream_id
            return Route.PATHS
        return Route.REQUEST

    def proved(self, peer: PeerId) -> None:
        self._step(Trigger.PROOF)
        self.peer = peer

    def seat(self) -> list[Start | Refuse]:
        """Given a seat (counted in `counts`): the paths data and requests held till now are let
        through (raises ProtocolError if that paths data breaks the protocol)."""
        self._step(Trigger.SEAT)
        self._counts.seat(self.host)
        early, self._early = self._early, b""
        if self.paths_stream is not None:
            self.paths_data(early)
        held, self._held = self._held, []
        return [self._start(stream_id, request) for stream_id, request in held]

    def close(self) -> None:
        """The connection ended: its seat, if it had one, is free."""
        if self.phase is Phase.CLOSED:
            return
        seated = self.seated
        self._step(Trigger.CLOSE)
        if seated:
            self._counts.unseat(self.host)

    def paths_data(self, data: bytes) -> None:
        """The client's candidates: held, up to a request's size, until the peer is seated."""
        self._step(Trigger.PATHS)
        if not self.seated:
            if len(self._early) + len(data) > MAX_REQUEST_BYTES:
                raise ProtocolError("The peer sent too many candidates.")
            self._early += data
            return
        if self._channel is None:
            self._channel = PathsChannel()
        for candidates in self._channel.receive_data(data):
            room = MAX_CANDIDATES - len(self._offered)
            self._offered += candidates.addresses[: max(0, room)]

    def allow(self) -> bool:
        """The peer made an allowed get, members or catalog request; whether it is the first."""
        if self.phase is Phase.ALLOWED:
            return False
        self._step(Trigger.ALLOWED)
        return True

    def exchange(self, ours: Candidates) -> tuple[bytes, list[Address]] | None:
        """Once allowed and the paths stream is open: what to send on it (`ours`, the first
        time only) and the candidates offered since the last call, to probe."""
        if self.phase is not Phase.ALLOWED or self._channel is None:
            return None
        wire = b""
        if not self._told:
            self._told = True
            wire = self._channel.send(ours)
        offered, self._offered = self._offered, []
        return wire, offered

    def request_data(self, stream_id: int, data: bytes, end_stream: bool) -> list[Start | Refuse]:
        exchange = self._streams.get(stream_id)
        if exchange is None:
            exchange = self._streams[stream_id] = _Exchange(Responder())
            if len(self._streams) > self._max_streams:
                limit = self._max_streams
                busy = ResponseHeader("busy", f"at most {limit} requests at once")
                return [self._refuse(stream_id, busy)]
        if exchange.served:
            exchange.received_all = exchange.received_all or end_stream
            self._forget_if_done(stream_id)
            return []
        try:
            events = exchange.responder.receive_data(data, end_stream)
        except ProtocolError as error:
            bad = ResponseHeader("error", clean_reason(f"Bad request: {error}"))
            return [self._refuse(stream_id, bad)]
        decisions: list[Start | Refuse] = []
        for event in events:
            if isinstance(event, Request):
                self._step(Trigger.REQUEST)
                if self.seated:
                    decisions.append(self._start(stream_id, event))
                else:
                    self._held.append((stream_id, event))
            elif isinstance(event, StreamEnded):
                exchange.received_all = True
                self._forget_if_done(stream_id)
        return decisions

    def served(self, stream_id: int) -> None:
        """A started request is over (answered, failed or cancelled)."""
        self._counts.serving -= 1
        exchange = self._streams.get(stream_id)
        if exchange is not None:
            exchange.served = True
            self._forget_if_done(stream_id)

    def stopped(self, stream_id: int) -> bool:
        """The peer asked the server to stop sending on `stream_id`; whether a request being
        served there must be cancelled (`served` follows). One still held is dropped."""
        self._held = [(sid, request) for sid, request in self._held if sid != stream_id]
        exchange = self._streams.get(stream_id)
        if exchange is None:
            return False
        if exchange.started and not exchange.served:
            return True
        exchange.served = True
        self._forget_if_done(stream_id)
        return False

    def reset(self, stream_id: int) -> bool:
        """The peer abandoned its side of `stream_id`; as `stopped`, and it sends no more."""
        if stream_id == AUTH_STREAM:
            raise ProtocolError("The peer abandoned authentication.")
        cancel = self.stopped(stream_id)
        exchange = self._streams.get(stream_id)
        if exchange is not None:
            exchange.received_all = True
            self._forget_if_done(stream_id)
        return cancel

    def _start(self, stream_id: int, request: Request) -> Start | Refuse:
        counts = self._counts
        if counts.serving >= counts.max_requests:
            limit = counts.max_requests
            return self._refuse(
                stream_id, ResponseHeader("busy", f"serving {limit} requests already")
            )
        counts.serving += 1
        exchange = self._streams[stream_id]
        exchange.started = True
        return Start(stream_id, request, exchange.responder)

    def _refuse(self, stream_id: int, header: ResponseHeader) -> Refuse:
        exchange = self._streams[stream_id]
        responder = exchange.responder
        # A responder that saw the request break the protocol is in ERROR and sends nothing;
        # the refusal is then the server's own, which PROTOCOL.md allows at any point.
        wire = encode(header) if responder.state is State.ERROR else responder.send_header(header)
        exchange.served = True
        return Refuse(stream_id, wire)

    def _forget_if_done(self, stream_id: int) -> None:
        exchange = self._streams[stream_id]
        if exchange.served and exchange.received_all:
            del self._streams[stream_id]

    def _step(self, trigger: Trigger) -> None:
        self.phase = _move(SERVER_TRANSITIONS, self.phase, trigger)


class ClientConnection:
    """The client's side of one connection (tickets/PROTOCOL.md, "Connection machines"): the
    server's key is checked before anything is sent, and nothing but authentication before the
    proof is answered; after that the client opens the paths stream and its requests."""

    def __init__(self, expected: PeerId) -> None:
        self.phase = ClientPhase.HANDSHAKE
        self.expected = expected
        self.paths_stream: int | None = None

    def handshake(self, key: bytes | None) -> bool:
        """The key the server proved in TLS; whether it is the one expected (if not, the
        connection must close)."""
        if key != self.expected.raw:
            return False
        self._step(ClientTrigger.KEY)
        return True

    def challenged(self) -> None:
        self._step(ClientTrigger.CHALLENGE)

    def open_paths(self, stream_id: int) -> None:
        self._step(ClientTrigger.PATHS)
        self.paths_stream = stream_id

    def open_request(self) -> None:
        self._step(ClientTrigger.REQUEST)

    def route(self, stream_id: int) -> Route:
        if stream_id == AUTH_STREAM:
            return Route.AUTH
        if stream_id == self.paths_stream:
            return Route.PATHS
        # Only client-initiated bidirectional streams carry anything (PROTOCOL.md).
        return Route.REQUEST if stream_id % 4 == 0 else Route.IGNORED

    def _step(self, trigger: ClientTrigger) -> None:
        self.phase = _move(CLIENT_TRANSITIONS, self.phase, trigger)


def _move(table: Mapping[tuple[_P, _T], _P], phase: _P, trigger: _T) -> _P:
    """The phase `trigger` leads to from `phase`; a move the table lacks is this side's bug."""
    following = table.get((phase, trigger))
    if following is None:
        raise LocalProtocolError(f"{trigger.value} in {phase.name}")
    return following
