"""The sans-IO wire protocol: encodings, limits, and the stream state machines with ERROR."""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable

import nacl.signing
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringdrop.bao import ChunkRanges
from ringdrop.errors import (
    AccessDeniedError,
    LocalProtocolError,
    NotFoundError,
    ProtocolError,
    TransferError,
)
from ringdrop.identity import Identity
from ringdrop.protocol import (
    MAX_CATALOG_BYTES,
    MAX_HEADER_BYTES,
    MAX_REQUEST_BYTES,
    Candidates,
    Catalog,
    CatalogEntry,
    CatalogRequest,
    Challenge,
    ClientAuth,
    Data,
    Event,
    GetRequest,
    Hello,
    MemberPart,
    MembersReader,
    Message,
    PathsChannel,
    PeerAuthenticated,
    Proof,
    Request,
    Requester,
    Responder,
    ResponseHeader,
    ServerAuth,
    State,
    StreamEnded,
    decode,
    encode,
)

identities = st.binary(min_size=32, max_size=32).map(
    lambda seed: Identity(nacl.signing.SigningKey(seed))
)
hashes = st.binary(min_size=32, max_size=32)
text = st.text(st.characters(blacklist_categories=("Cc", "Cs")), max_size=40)
chunk_ranges = st.lists(
    st.tuples(st.integers(0, 2**40), st.none() | st.integers(1, 2**20)), min_size=1, max_size=8
).map(lambda spans: ChunkRanges([(start, None if n is None else start + n) for start, n in spans]))
get_requests = st.builds(GetRequest, hashes, chunk_ranges)
headers = st.builds(
    ResponseHeader, st.sampled_from(["allowed", "denied", "not_found", "busy", "error"]), text
)
entries = st.builds(
    CatalogEntry,
    text.filter(bool),
    hashes,
    st.sampled_from(["blob", "collection"]),
    st.integers(0, 2**64 - 1),
)
catalogs = st.builds(Catalog, st.lists(entries, max_size=5).map(tuple))
proofs = st.builds(
    Proof.sign, identities, identities.map(lambda i: i.peer_id), st.binary(min_size=32, max_size=32)
)
messages: st.SearchStrategy[Message] = st.one_of(
    st.just(Hello()),
    st.builds(Challenge, st.binary(min_size=32, max_size=32)),
    proofs,
    get_requests,
    st.just(CatalogRequest()),
    headers,
    catalogs,
)

SERVER = Identity(nacl.signing.SigningKey(b"s" * 32))
CLIENT = Identity(nacl.signing.SigningKey(b"c" * 32))
NONCE = b"n" * 32


def merged(events: list[Event]) -> list[Event]:
    """Events with adjacent Data joined: how bytes are cut up is not part of the meaning."""
    out: list[Event] = []
    for event in events:
        if isinstance(event, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def feed_split(receive: Callable[[bytes, bool], list[Event]], data: bytes, at: int) -> list[Event]:
    return merged(receive(data[:at], False) + receive(data[at:], True))


@given(messages)
def test_every_message_round_trips(message: Message) -> None:
    assert decode(encode(message)) == message


@given(st.binary(max_size=200))
def test_garbage_into_decode_raises_only_protocol_error(data: bytes) -> None:
    with contextlib.suppress(ProtocolError):
        decode(data)


@given(messages, st.integers(0, 7), st.integers(0, 255))
def test_a_corrupted_frame_raises_only_protocol_error(message: Message, at: int, bit: int) -> None:
    frame = bytearray(encode(message))
    frame[at % len(frame)] ^= 1 << (bit % 8)
    with contextlib.suppress(ProtocolError):
        decode(bytes(frame))


@given(st.lists(st.binary(max_size=64), max_size=6), st.booleans())
def test_garbage_into_any_machine_raises_only_protocol_error(
    pieces: list[bytes], requested: bool
) -> None:
    requester = Requester()
    if requested:
        requester.send_request(CatalogRequest())
    client_auth = ClientAuth(CLIENT, SERVER.peer_id)
    client_auth.hello()
    machines = [Responder(), requester, ServerAuth(SERVER.peer_id, NONCE), client_auth]
    for machine in machines:
        try:
            for piece in pieces:
                machine.receive_data(piece)
            machine.receive_data(b"", True)
        except ProtocolError:
            pass


def test_authentication_between_two_in_memory_peers() -> None:
    client, server = ClientAuth(CLIENT, SERVER.peer_id), ServerAuth(SERVER.peer_id, NONCE)
    assert server.receive_data(client.hello()) == [Hello()]
    assert client.receive_data(server.challenge(), True) == [Challenge(NONCE), StreamEnded()]
    events = server.receive_data(client.prove(), True)
    assert events == [PeerAuthenticated(CLIENT.peer_id), StreamEnded()]


def test_a_proof_replayed_on_another_connection_is_rejected() -> None:
    recorded = encode(Proof.sign(CLIENT, SERVER.peer_id, NONCE))
    server = ServerAuth(SERVER.peer_id, b"m" * 32)  # another connection: another nonce
    server.receive_data(encode(Hello()))
    server.challenge()
    with pytest.raises(ProtocolError, match="replayed, relayed or forged"):
        server.receive_data(recorded)


def test_a_proof_made_for_another_server_is_rejected() -> None:
    mallory = Identity(nacl.signing.SigningKey(b"m" * 32))
    relayed = encode(Proof.sign(CLIENT, mallory.peer_id, NONCE))  # the client thought it met her
    server = ServerAuth(SERVER.peer_id, NONCE)
    server.receive_data(encode(Hello()))
    server.challenge()
    with pytest.raises(ProtocolError, match="replayed, relayed or forged"):
        server.receive_data(relayed)


def test_a_proof_before_the_challenge_is_rejected() -> None:
    server = ServerAuth(SERVER.peer_id, NONCE)
    early = encode(Hello()) + encode(Proof.sign(CLIENT, SERVER.peer_id, NONCE))
    with pytest.raises(ProtocolError):
        server.receive_data(early)


@given(get_requests, st.binary(max_size=100))
def test_an_allowed_get_carries_the_bao_stream_unframed(request: GetRequest, body: bytes) -> None:
    requester, responder = Requester(), Responder()
    assert responder.receive_data(requester.send_request(request), True) == [
        request,
        StreamEnded(),
    ]
    wire = responder.send_header(ResponseHeader("allowed")) + responder.send_data(body)
    events = merged(requester.receive_data(wire, True))
    expected: list[Event] = [ResponseHeader("allowed"), *([Data(body)] if body else [])]
    assert events == [*expected, StreamEnded()]


@given(catalogs)
def test_an_allowed_catalog_is_one_frame(catalog: Catalog) -> None:
    requester, responder = Requester(), Responder()
    responder.receive_data(requester.send_request(CatalogRequest()))
    wire = responder.send_header(ResponseHeader("allowed")) + responder.send_catalog(catalog)
    assert requester.receive_data(wire, True) == [ResponseHeader("allowed"), catalog, StreamEnded()]


def test_content_after_a_refusal_is_a_protocol_error() -> None:
    requester = Requester()
    requester.send_request(CatalogRequest())
    with pytest.raises(ProtocolError, match="must be silent"):
        requester.receive_data(encode(ResponseHeader("denied", "no")) + b"sneaky bytes")


def test_a_stream_ending_before_the_header_is_a_protocol_error() -> None:
    requester = Requester()
    requester.send_request(CatalogRequest())
    with pytest.raises(ProtocolError, match="middle of the exchange"):
        requester.receive_data(encode(ResponseHeader("allowed"))[:3], True)


@given(get_requests, headers, st.binary(max_size=40), st.data())
def test_every_split_point_gives_the_same_events(
    request: GetRequest, header: ResponseHeader, body: bytes, data: st.DataObject
) -> None:
    request_wire = Requester().send_request(request)
    responder = Responder()
    responder.receive_data(request_wire)
    response_wire = responder.send_header(header)
    if header.status == "allowed":
        response_wire += responder.send_data(body)
    whole_request = Responder().receive_data(request_wire, True)
    whole_response = merged(_requester_for(request).receive_data(response_wire, True))
    for at in range(len(request_wire) + 1):
        assert feed_split(Responder().receive_data, request_wire, at) == whole_request
    at = data.draw(st.integers(0, len(response_wire)))
    assert feed_split(_requester_for(request).receive_data, response_wire, at) == whole_response


def test_every_split_point_of_the_authentication_gives_the_same_events() -> None:
    proof = encode(Proof.sign(CLIENT, SERVER.peer_id, NONCE))
    for at in range(len(proof) + 1):
        server = ServerAuth(SERVER.peer_id, NONCE)
        assert server.receive_data(encode(Hello())) == [Hello()]
        server.challenge()
        assert feed_split(server.receive_data, proof, at) == [
            PeerAuthenticated(CLIENT.peer_id),
            StreamEnded(),
        ]
    challenge = encode(Challenge(NONCE))
    for at in range(len(challenge) + 1):
        client = ClientAuth(CLIENT, SERVER.peer_id)
        client.hello()
        assert feed_split(client.receive_data, challenge, at) == [Challenge(NONCE), StreamEnded()]


def _requester_for(request: GetRequest) -> Requester:
    requester = Requester()
    requester.send_request(request)
    return requester


@pytest.mark.parametrize(
    ("frame_type", "limit", "receiver"),
    [
        (0x10, MAX_REQUEST_BYTES, "responder"),
        (0x11, MAX_HEADER_BYTES, "requester"),
    ],
)
def test_an_oversized_frame_is_refused_from_its_head_alone(
    frame_type: int, limit: int, receiver: str
) -> None:
    get = GetRequest(bytes(32), ChunkRanges.all())
    machine = Responder() if receiver == "responder" else _requester_for(get)
    with pytest.raises(ProtocolError, match=f"at most {limit}"):
        machine.receive_data(struct.pack(">BI", frame_type, limit + 1))


def test_an_oversized_catalog_is_refused_from_its_head_alone() -> None:
    requester = Requester()
    requester.send_request(CatalogRequest())
    head = encode(ResponseHeader("allowed")) + struct.pack(">BI", 0x12, MAX_CATALOG_BYTES + 1)
    with pytest.raises(ProtocolError, match=f"at most {MAX_CATALOG_BYTES}"):
        requester.receive_data(head)


def test_a_request_of_another_version_is_refused_by_name() -> None:
    frame = bytearray(encode(CatalogRequest()))
    frame[5] = 2
    with pytest.raises(ProtocolError, match="version 2"):
        Responder().receive_data(bytes(frame))


def _responder_for(request: Request) -> Responder:
    responder = Responder()
    responder.receive_data(encode(request))
    return responder


def _allowed_get() -> Responder:
    responder = _responder_for(GetRequest(bytes(32), ChunkRanges.all()))
    responder.send_header(ResponseHeader("allowed"))
    return responder


@pytest.mark.parametrize(
    "send",
    [
        lambda: Responder().send_header(ResponseHeader("allowed")),  # before the request
        lambda: _responder_for(GetRequest(bytes(32), ChunkRanges.all())).send_data(b"early"),
        lambda: _allowed_get().send_catalog(Catalog(())),  # a get is answered with content
        lambda: _allowed_get().send_header(ResponseHeader("allowed")),  # a second header
    ],
)
def test_sending_out_of_order_is_a_local_protocol_error(send: Callable[[], bytes]) -> None:
    with pytest.raises(LocalProtocolError, match="in state"):
        send()


def test_after_a_local_violation_the_machine_is_in_error_and_sends_nothing() -> None:
    responder = _allowed_get()
    with pytest.raises(LocalProtocolError):
        responder.send_catalog(Catalog(()))
    assert responder.state is State.ERROR
    with pytest.raises(LocalProtocolError, match="violation: Cannot send CATALOG"):
        responder.send_data(b"content that was allowed a moment ago")
    with pytest.raises(ProtocolError, match="in ERROR"):
        responder.receive_data(b"", True)


def test_after_the_peers_violation_the_machine_is_in_error_and_takes_nothing() -> None:
    server = ServerAuth(SERVER.peer_id, NONCE)
    with pytest.raises(ProtocolError, match="must be silent"):
        server.receive_data(encode(Hello()) + encode(Proof.sign(CLIENT, SERVER.peer_id, NONCE)))
    assert server.state is State.ERROR
    with pytest.raises(ProtocolError, match="no more input: it is in ERROR"):
        server.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="in ERROR after this violation: The peer sent"):
        server.challenge()  # the answer a well-behaved HELLO would get


def test_a_requester_that_saw_garbage_stays_in_error() -> None:
    requester = Requester()
    requester.send_request(CatalogRequest())
    with pytest.raises(ProtocolError, match="type 0x13"):
        requester.receive_data(encode(MemberPart(b"not a header")))
    with pytest.raises(ProtocolError, match="in ERROR"):
        requester.receive_data(encode(ResponseHeader("allowed")))  # now too late


def test_a_proof_that_fails_puts_the_server_in_error() -> None:
    server = ServerAuth(SERVER.peer_id, NONCE)
    server.receive_data(encode(Hello()))
    server.challenge()
    forged = Proof(CLIENT.peer_id, bytes(64))
    with pytest.raises(ProtocolError, match="replayed, relayed or forged"):
        server.receive_data(encode(forged))
    with pytest.raises(ProtocolError, match="in ERROR"):
        server.receive_data(encode(Proof.sign(CLIENT, SERVER.peer_id, NONCE)), True)


def test_the_client_may_not_end_the_authentication_before_its_proof() -> None:
    server = ServerAuth(SERVER.peer_id, NONCE)
    with pytest.raises(ProtocolError, match="middle of the exchange"):
        server.receive_data(encode(Hello()), True)
    assert server.state is State.ERROR


def test_a_members_reader_that_saw_a_bad_part_stays_in_error() -> None:
    reader = MembersReader(2)
    with pytest.raises(ProtocolError, match="unknown flags"):
        reader.feed(bytes([0x13, 0, 0, 0, 1, 0x04]))
    with pytest.raises(ProtocolError, match="in ERROR"):
        reader.feed(encode(MemberPart(b"x", last=True)))
    with pytest.raises(ProtocolError, match="in ERROR"):
        reader.finish()


def test_a_paths_channel_that_saw_garbage_stays_in_error() -> None:
    channel = PathsChannel()
    with pytest.raises(ProtocolError):
        channel.receive_data(encode(Hello()))
    with pytest.raises(ProtocolError, match="in ERROR"):
        channel.receive_data(encode(Candidates((("192.0.2.7", 4433),))))
    with pytest.raises(LocalProtocolError, match="in ERROR"):
        channel.send(Candidates(()))


def test_a_refusal_may_go_before_the_request_has_come() -> None:
    responder = Responder()
    wire = responder.send_header(ResponseHeader("busy", "too many requests"))
    requester = _requester_for(GetRequest(bytes(32), ChunkRanges.all()))
    assert requester.receive_data(wire, True) == [
        ResponseHeader("busy", "too many requests"),
        StreamEnded(),
    ]


@pytest.mark.parametrize(
    "make",
    [
        lambda: ResponseHeader("error", "x" * MAX_HEADER_BYTES),
        lambda: ResponseHeader("error", "a terminal escape \x1b[2J"),
        lambda: CatalogEntry("", bytes(32), "blob", 1),
        lambda: CatalogEntry("name", bytes(31), "blob", 1),
        lambda: GetRequest(bytes(32), ChunkRanges()),
    ],
)
def test_invalid_messages_cannot_be_made(make: Callable[[], object]) -> None:
    with pytest.raises(LocalProtocolError):
        make()


@pytest.mark.parametrize(
    ("status", "error"),
    [
        ("denied", AccessDeniedError),
        ("not_found", NotFoundError),
        ("busy", TransferError),
        ("error", TransferError),
    ],
)
def test_a_refusal_raises_the_error_it_means(status: str, error: type[Exception]) -> None:
    with pytest.raises(error, match="the reason"):
        ResponseHeader(status, "the reason").raise_for_status()  # type: ignore[arg-type]


def test_allowed_raises_nothing() -> None:
    ResponseHeader("allowed").raise_for_status()


@settings(max_examples=20)
@given(st.integers(1, 3))
def test_a_catalog_claiming_more_entries_than_bytes_is_refused_early(extra: int) -> None:
    body = (10**6 + extra).to_bytes(4, "big")
    with pytest.raises(ProtocolError, match="more entries than bytes"):
        decode(struct.pack(">BI", 0x12, len(body)) + body)
