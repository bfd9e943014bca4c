"""The connection machines (`ringdrop.transport._conn`) fed events directly, with real frames
from the protocol module: each connection rule, and their tables equal to tickets/PROTOCOL.md's."""

from __future__ import annotations

import re
from pathlib import Path

import nacl.signing
import pytest

from ringdrop.errors import LocalProtocolError, ProtocolError
from ringdrop.identity import Identity
from ringdrop.protocol import (
    MAX_REQUEST_BYTES,
    Candidates,
    CatalogRequest,
    PathsChannel,
    Requester,
    ResponseHeader,
    decode,
)
from ringdrop.transport import _conn
from ringdrop.transport._conn import (
    ClientConnection,
    ClientPhase,
    Counts,
    Phase,
    Refuse,
    Route,
    ServerConnection,
    Start,
)

SPEC = Path(__file__).resolve().parent.parent / "tickets" / "PROTOCOL.md"
PEER = Identity(nacl.signing.SigningKey(b"p" * 32)).peer_id
OTHER = Identity(nacl.signing.SigningKey(b"o" * 32)).peer_id
REQUEST = Requester().send_request(CatalogRequest())
PATHS = PathsChannel().send(Candidates((("192.0.2.7", 4000), ("2001:db8::7", 4001))))
OURS = Candidates((("198.51.100.1", 5000),))


def server(
    max_streams: int = 8, max_requests: int = 64, host: str | None = "h"
) -> ServerConnection:
    return ServerConnection(Counts(32, 8, max_requests), max_streams, host)


def seated(conn: ServerConnection) -> ServerConnection:
    conn.proved(PEER)
    assert conn.seat() == []
    return conn


def refusal(decision: Start | Refuse) -> ResponseHeader:
    assert isinstance(decision, Refuse)
    header = decode(decision.wire)
    assert isinstance(header, ResponseHeader)
    return header


# -- which stream is which --------------------------------------------------------------------


def test_stream_zero_is_authentication_and_other_kinds_of_stream_break_the_protocol() -> None:
    conn = server()
    assert conn.route(0, b"") is Route.AUTH
    for stream_id in (1, 2, 3, 5, 6, 7):  # server-initiated, or unidirectional
        with pytest.raises(ProtocolError, match="kind of stream"):
            conn.route(stream_id, REQUEST)
    assert conn.route(4, REQUEST) is Route.REQUEST


def test_the_paths_stream_is_the_first_fresh_stream_that_starts_with_candidates() -> None:
    conn = server()
    assert conn.route(4, REQUEST) is Route.REQUEST
    conn.request_data(4, REQUEST[:3], False)
    # A stream already carrying a request stays one, whatever its next bytes are.
    assert conn.route(4, PATHS) is Route.REQUEST
    assert conn.route(8, PATHS) is Route.PATHS
    assert conn.paths_stream == 8
    assert conn.route(8, b"anything") is Route.PATHS
    # There is one paths stream: a second stream opening with CANDIDATES is a request.
    assert conn.route(12, PATHS) is Route.REQUEST


def test_resetting_the_authentication_stream_breaks_the_protocol() -> None:
    with pytest.raises(ProtocolError, match="abandoned authentication"):
        server().reset(0)


# -- nothing before the proof and the seat ----------------------------------------------------


def test_a_request_before_the_proof_waits_for_the_seat() -> None:
    conn = server()
    assert conn.request_data(4, REQUEST, True) == []
    assert conn.phase is Phase.PROVING
    conn.proved(PEER)
    assert conn.phase.name == "SEATING"
    assert conn.request_data(8, REQUEST, True) == []  # proved, but not seated yet
    decisions = conn.seat()
    assert [(d.stream_id, d.request) for d in decisions if isinstance(d, Start)] == [
        (4, CatalogRequest()),
        (8, CatalogRequest()),
    ]
    assert conn.phase.name == "SEATED"
    # Seated: a request starts at once.
    started = conn.request_data(12, REQUEST, True)
    assert [type(d) for d in started] == [Start]


def test_a_waiting_request_the_peer_gives_up_on_is_dropped() -> None:
    conn = server()
    conn.request_data(4, REQUEST, True)
    conn.request_data(8, REQUEST, True)
    assert conn.stopped(4) is False  # nothing being served: nothing to cancel
    conn.proved(PEER)
    assert [d.stream_id for d in conn.seat()] == [8]


def test_paths_data_before_the_seat_is_held_and_bounded() -> None:
    conn = server()
    assert conn.route(4, PATHS) is Route.PATHS
    conn.paths_data(PATHS)
    assert conn.exchange(OURS) is None
    with pytest.raises(ProtocolError, match="too many candidates"):
        conn.paths_data(bytes(MAX_REQUEST_BYTES))


def test_candidates_are_exchanged_only_once_the_peer_made_an_allowed_request() -> None:
    conn = server()
    conn.route(4, PATHS)
    conn.paths_data(PATHS)
    seated(conn)
    assert conn.exchange(OURS) is None  # seated, but no allowed request yet
    assert conn.allow() is True
    assert conn.phase is Phase.ALLOWED
    exchanged = conn.exchange(OURS)
    assert exchanged is not None
    wire, offered = exchanged
    assert PathsChannel().receive_data(wire) == [OURS]
    assert offered == [("192.0.2.7", 4000), ("2001:db8::7", 4001)]
    # Ours are told once; later frames only bring the peer's.
    conn.paths_data(PathsChannel().send(Candidates((("192.0.2.9", 4002),))))
    assert conn.exchange(OURS) == (b"", [("192.0.2.9", 4002)])
    assert conn.allow() is False


def test_broken_paths_data_breaks_the_protocol_once_seated() -> None:
    conn = seated(server())
    conn.route(4, PATHS)
    with pytest.raises(ProtocolError):
        conn.paths_data(PATHS[:1] + b"\xff\xff\xff\xff")


# -- limits -----------------------------------------------------------------------------------


def test_more_requests_at_once_than_max_streams_are_answered_busy() -> None:
    conn = seated(server(max_streams=2))
    assert [type(d) for d in conn.request_data(4, REQUEST, True)] == [Start]
    assert [type(d) for d in conn.request_data(8, REQUEST, True)] == [Start]
    [busy] = conn.request_data(12, REQUEST, True)
    assert refusal(busy) == ResponseHeader("busy", "at most 2 requests at once")
    # A refused stream's further bytes are discarded, and its end frees its place...
    assert conn.request_data(12, b"", True) == []
    conn.served(4)
    assert [type(d) for d in conn.request_data(16, REQUEST, True)] == [Start]


def test_requests_beyond_the_servers_limit_are_answered_busy_on_any_connection() -> None:
    counts = Counts(32, 8, max_requests=1)
    first = seated(ServerConnection(counts, 8, "a"))
    second = seated(ServerConnection(counts, 8, "b"))
    assert [type(d) for d in first.request_data(4, REQUEST, True)] == [Start]
    [busy] = second.request_data(4, REQUEST, True)
    assert refusal(busy) == ResponseHeader("busy", "serving 1 requests already")
    first.served(4)
    assert counts.serving == 0
    assert [type(d) for d in second.request_data(8, REQUEST, True)] == [Start]


def test_a_broken_request_is_answered_error_and_the_connection_lives() -> None:
    conn = seated(server())
    [bad] = conn.request_data(4, b"\x7f\x00\x00\x00\x00", False)
    header = refusal(bad)
    assert header.status == "error"
    assert header.reason.startswith("Bad request:")
    assert [type(d) for d in conn.request_data(8, REQUEST, True)] == [Start]


def test_a_request_being_served_is_cancelled_when_the_peer_stops_it() -> None:
    conn = seated(server())
    conn.request_data(4, REQUEST, True)
    assert conn.stopped(4) is True
    conn.served(4)
    assert conn.stopped(4) is False


def test_seats_are_counted_per_host_and_freed_when_the_connection_ends() -> None:
    counts = Counts(max_connections=3, max_per_host=2, max_requests=64)
    conns = [ServerConnection(counts, 8, host) for host in ("a", "a", None)]
    for conn in conns:
        assert counts.has_room(conn.host)
        seated(conn)
    assert counts.established == 3
    assert counts.host_full("a")
    assert not counts.host_full("b")
    assert not counts.has_room("b")  # all three seats taken
    conns[0].close()
    conns[0].close()  # ending twice frees one seat
    assert counts.established == 2
    assert not counts.host_full("a")
    unseated = ServerConnection(counts, 8, "a")
    unseated.close()  # never seated: nothing to free
    assert counts.established == 2


def test_moves_the_table_lacks_are_this_sides_bug() -> None:
    conn = server()
    with pytest.raises(LocalProtocolError):
        conn.seat()  # before the proof
    with pytest.raises(LocalProtocolError):
        conn.allow()
    conn.close()
    with pytest.raises(LocalProtocolError):
        conn.proved(PEER)


# -- the client's side ------------------------------------------------------------------------


def test_the_client_goes_on_only_with_the_expected_key() -> None:
    conn = ClientConnection(PEER)
    assert conn.handshake(OTHER.raw) is False
    assert conn.handshake(None) is False
    assert conn.phase is ClientPhase.HANDSHAKE
    with pytest.raises(LocalProtocolError):
        conn.open_request()  # nothing before the server's key is checked and ours proved
    assert conn.handshake(PEER.raw) is True
    with pytest.raises(LocalProtocolError):
        conn.open_paths(4)
    conn.challenged()
    conn.open_paths(4)
    conn.open_request()
    assert conn.phase.name == "READY"


def test_the_client_routes_by_stream_id() -> None:
    conn = ClientConnection(PEER)
    conn.handshake(PEER.raw)
    conn.challenged()
    conn.open_paths(4)
    assert [conn.route(sid) for sid in (0, 4, 8, 1, 3)] == [
        Route.AUTH,
        Route.PATHS,
        Route.REQUEST,
        Route.IGNORED,
        Route.IGNORED,
    ]


# -- the tables -------------------------------------------------------------------------------


def documented(role: str) -> list[tuple[str, str, str]]:
    section = SPEC.read_text().split("\n## Connection machines\n")[1].split("\n## ")[0]
    block = section.split(f"\n### {role}:")[1].split("\n### ")[0]
    rows = re.findall(r"^\| (\w+) \| ([^|]+?) \| (\w+) \|$", block, re.MULTILINE)
    return [row for row in rows if row[0] != "state"]


def test_the_spec_tables_are_the_code_tables() -> None:
    server_rows = [(s.name, t.value, n.name) for (s, t), n in _conn.SERVER_TRANSITIONS.items()]
    client_rows = [(s.name, t.value, n.name) for (s, t), n in _conn.CLIENT_TRANSITIONS.items()]
    assert documented("ServerConnection") == server_rows
    assert documented("ClientConnection") == client_rows
    assert server().phase.name == server_rows[0][0]
    assert ClientConnection(PEER).phase.name == client_rows[0][0]


def test_closed_is_never_left() -> None:
    assert not [key for key in _conn.SERVER_TRANSITIONS if key[0] is Phase.CLOSED]
