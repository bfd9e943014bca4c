"""Fuzzing the wire protocol (ringdrop/protocol.py): whole frames, the frame reader, the members
encoding, and every stream machine fed hostile bytes in hostile pieces. Nothing but
`ProtocolError` may come out, a machine that raised is in ERROR for good, and memory stays a
bounded multiple of what was fed."""

from __future__ import annotations

from functools import partial

import nacl.signing
from hypothesis import given
from hypothesis import strategies as st

from ringdrop.bao import ChunkRanges
from ringdrop.errors import ProtocolError, TicketError
from ringdrop.identity import Identity, PeerId
from ringdrop.protocol import (
    MAX_CANDIDATES,
    NONCE_BYTES,
    AboutRequest,
    Candidates,
    Catalog,
    CatalogEntry,
    CatalogRequest,
    Challenge,
    ClientAuth,
    GetRequest,
    HaveRequest,
    Hello,
    Info,
    MemberPart,
    MemberSelection,
    MembersReader,
    MembersRequest,
    Message,
    PathsChannel,
    Proof,
    Provider,
    Request,
    Requester,
    Responder,
    ResponseHeader,
    RingsRequest,
    ServerAuth,
    State,
    _FrameReader,
    decode,
    encode,
)
from tests.fuzz.common import fuzz, peak_memory, within

CLIENT = Identity(nacl.signing.SigningKey(b"c" * 32))
SERVER = Identity(nacl.signing.SigningKey(b"s" * 32))
FRAME_TYPES = [0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x20]

hashes = st.binary(min_size=32, max_size=32)
ranges = st.lists(st.integers(0, 1 << 20), min_size=1, max_size=6, unique=True).map(
    lambda bounds: ChunkRanges(
        [(a, b) for a, b in zip(sorted(bounds)[::2], [*sorted(bounds)[1::2], None], strict=False)]
    )
)
text = st.text(
    st.characters(blacklist_categories=("Cc", "Cs")), max_size=40
)  # what the protocol's text fields allow


@st.composite
def members_requests(draw: st.DrawFn) -> MembersRequest:
    indices = draw(st.lists(st.integers(0, (1 << 32) - 1), min_size=1, max_size=8, unique=True))
    selections = tuple(MemberSelection(i, draw(ranges)) for i in sorted(indices))
    return MembersRequest(draw(hashes), selections)


requests: st.SearchStrategy[Request] = st.one_of(
    st.builds(GetRequest, hashes, ranges), members_requests(), st.just(CatalogRequest())
)
addresses = st.one_of(st.ip_addresses(v=4).map(str), st.ip_addresses(v=6).map(str)).flatmap(
    lambda host: st.tuples(st.just(host), st.integers(1, 65535))
)
peers = st.sampled_from([CLIENT.peer_id, SERVER.peer_id])
manifest_bytes = st.lists(st.binary(min_size=1, max_size=64), max_size=16).map(tuple)
relays = st.one_of(st.none(), text.filter(bool))
reach = st.lists(addresses, max_size=8).map(tuple)
ring_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(RingsRequest, manifest_bytes),
    st.builds(AboutRequest, hashes),
    st.builds(
        HaveRequest,
        hashes,
        relays,
        reach,
        st.lists(st.tuples(peers, st.integers(0, (1 << 64) - 1)), max_size=4).map(tuple),
    ),
    st.builds(
        Info,
        manifest_bytes,
        st.lists(st.builds(Provider, peers, relays, reach), max_size=4).map(tuple),
    ),
)
messages: st.SearchStrategy[Message] = st.one_of(
    ring_messages,
    st.just(Hello()),
    st.builds(Challenge, st.binary(min_size=NONCE_BYTES, max_size=NONCE_BYTES)),
    st.just(Proof(CLIENT.peer_id, bytes(64))),
    requests,
    st.builds(
        ResponseHeader, st.sampled_from(["allowed", "denied", "not_found", "busy", "error"]), text
    ),
    st.builds(
        Catalog,
        st.lists(
            st.builds(
                CatalogEntry,
                text.filter(bool),
                hashes,
                st.sampled_from(["blob", "collection"]),
                st.integers(0, (1 << 64) - 1),
            ),
            max_size=4,
        ).map(tuple),
    ),
    st.builds(MemberPart, st.binary(max_size=64), st.booleans()),
    st.builds(Candidates, st.lists(addresses, max_size=MAX_CANDIDATES).map(tuple)),
)


@st.composite
def mangled(draw: st.DrawFn, wire: bytes) -> bytes:
    """`wire` with some bytes changed, cut short, or followed by more."""
    data = bytearray(wire)
    for _ in range(draw(st.integers(0, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    cut = draw(st.integers(0, len(data)))
    return bytes(data[:cut]) + draw(st.binary(max_size=16))


def pieces(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(c, len(data)) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@fuzz
@given(st.binary(max_size=2048))
def test_decoding_any_bytes_gives_a_message_or_a_protocol_error(data: bytes) -> None:
    result, peak = peak_memory(lambda: decode(data))
    assert isinstance(result, ProtocolError | Message)
    assert within(peak, len(data))


@fuzz
@given(st.sampled_from(FRAME_TYPES), st.binary(max_size=2048))
def test_decoding_a_frame_of_any_known_type_and_body(kind: int, body: bytes) -> None:
    frame = bytes([kind]) + len(body).to_bytes(4, "big") + body
    result, peak = peak_memory(lambda: decode(frame))
    assert isinstance(result, ProtocolError | Message)
    assert within(peak, len(frame))


@fuzz
@given(messages)
def test_every_message_round_trips(message: Message) -> None:
    assert decode(encode(message)) == message


@fuzz
@given(messages.flatmap(lambda m: mangled(encode(m))))
def test_a_mangled_message_decodes_or_is_a_protocol_error(frame: bytes) -> None:
    result, peak = peak_memory(lambda: decode(frame))
    assert isinstance(result, ProtocolError | Message)
    assert within(peak, len(frame))


@fuzz
@given(
    members_requests().flatmap(lambda r: mangled(encode(r)[5:])),
)
def test_a_mangled_members_encoding_is_a_request_or_a_protocol_error(body: bytes) -> None:
    frame = bytes([0x10]) + len(body).to_bytes(4, "big") + body
    result = peak_memory(lambda: decode(frame))[0]
    assert isinstance(result, ProtocolError | Request)
    if isinstance(result, MembersRequest):
        indices = [m.index for m in result.members]
        assert indices == sorted(set(indices))
        assert all(0 <= i < 1 << 32 for i in indices)


@fuzz
@given(ring_messages.flatmap(lambda m: mangled(encode(m)[5:]).map(lambda b: (encode(m)[0], b))))
def test_a_mangled_ring_request_or_info_is_a_message_or_a_protocol_error(
    kind_body: tuple[int, bytes],
) -> None:
    kind, body = kind_body
    frame = bytes([kind]) + len(body).to_bytes(4, "big") + body
    result, peak = peak_memory(lambda: decode(frame))
    assert isinstance(result, ProtocolError | Message)
    assert within(peak, len(frame))


@fuzz
@given(
    st.binary(max_size=4096),
    st.lists(st.integers(0, 4096), max_size=8),
    st.sets(st.sampled_from(FRAME_TYPES), min_size=1),
)
def test_the_frame_reader_cuts_frames_or_refuses_a_bad_head(
    data: bytes, cuts: list[int], allowed: set[int]
) -> None:
    def read() -> list[tuple[int, bytes]]:
        reader = _FrameReader()
        frames = []
        for piece in pieces(data, cuts):
            reader.feed(piece)
            while (found := reader.next_frame(allowed)) is not None:
                frames.append(found)
        return frames

    result, peak = peak_memory(read)
    assert within(peak, len(data))
    if isinstance(result, list):
        assert all(kind in allowed for kind, _ in result)
        assert sum(5 + len(body) for _, body in result) <= len(data)
    else:
        assert isinstance(result, ProtocolError)


def requester_waiting() -> Requester:
    machine = Requester()
    machine.send_request(GetRequest(bytes(32), ChunkRanges.all()))
    return machine


def members_requester_waiting() -> Requester:
    machine = Requester()
    machine.send_request(MembersRequest(bytes(32), (MemberSelection(0, ChunkRanges.all()),)))
    return machine


def client_auth_waiting() -> ClientAuth:
    machine = ClientAuth(CLIENT, SERVER.peer_id)
    machine.hello()
    return machine


MACHINES = {
    "client auth": client_auth_waiting,
    "server auth": lambda: ServerAuth(SERVER.peer_id, bytes(NONCE_BYTES)),
    "requester (get)": requester_waiting,
    "requester (members)": members_requester_waiting,
    "requester (catalog)": lambda: _catalog_requester(),
    "responder": Responder,
}


def _catalog_requester() -> Requester:
    machine = Requester()
    machine.send_request(CatalogRequest())
    return machine


# Bytes a machine may well expect, so that the fuzzer gets past the first frame.
plausible = st.one_of(
    st.binary(max_size=512),
    messages.map(encode),
    messages.flatmap(lambda m: mangled(encode(m))),
    st.lists(messages.map(encode), max_size=4).map(b"".join),
)


@fuzz
@given(
    st.sampled_from(sorted(MACHINES)),
    st.lists(st.tuples(plausible, st.booleans()), max_size=6),
)
def test_a_stream_machine_takes_any_bytes_or_errs_for_good(
    name: str, inputs: list[tuple[bytes, bool]]
) -> None:
    machine = MACHINES[name]()
    fed = 0
    for data, end in inputs:
        fed += len(data)
        result, peak = peak_memory(partial(machine.receive_data, data, end))
        assert within(peak, fed)
        if isinstance(result, ProtocolError):
            assert machine.state is State.ERROR
            again = peak_memory(lambda: machine.receive_data(b"\x01", False))[0]
            assert isinstance(again, ProtocolError)
            return
        assert isinstance(result, list)
        if end:
            break


@fuzz
@given(st.lists(plausible, max_size=6))
def test_the_paths_channel_takes_candidates_or_errs_for_good(inputs: list[bytes]) -> None:
    channel = PathsChannel()
    for data in inputs:
        result = peak_memory(partial(channel.receive_data, data))[0]
        if isinstance(result, ProtocolError):
            assert channel.state is State.ERROR
            return
        assert isinstance(result, list)
        assert all(len(c.addresses) <= MAX_CANDIDATES for c in result)


parts = st.builds(MemberPart, st.binary(max_size=64), st.booleans()).map(encode)


@fuzz
@given(
    st.integers(1, 5),
    st.lists(st.one_of(parts, parts.flatmap(mangled), st.binary(max_size=64)), max_size=10),
    st.lists(st.integers(0, 1024), max_size=6),
)
def test_the_members_reader_cuts_parts_or_errs_for_good(
    count: int, frames: list[bytes], cuts: list[int]
) -> None:
    reader = MembersReader(count)
    body = b"".join(frames)
    fed = 0
    for piece in pieces(body, cuts):
        fed += len(piece)
        result, peak = peak_memory(partial(reader.feed, piece))
        assert within(peak, fed)
        if isinstance(result, ProtocolError):
            assert reader.state is State.ERROR
            return
        assert isinstance(result, list)
        assert all(0 <= m.position < count for m in result)
    outcome = peak_memory(reader.finish)[0]
    assert outcome is None or isinstance(outcome, ProtocolError)


@fuzz
@given(st.integers(0, 0xFFFFFFFF), st.sampled_from(FRAME_TYPES))
def test_a_frame_head_claiming_any_length_holds_no_more_than_was_sent(
    length: int, kind: int
) -> None:
    head = bytes([kind]) + length.to_bytes(4, "big")
    for make in MACHINES.values():
        machine = make()
        result, peak = peak_memory(partial(machine.receive_data, head + b"x" * 100))
        assert isinstance(result, ProtocolError | list)
        assert within(peak, len(head) + 100)


def is_key(raw: bytes) -> bool:
    try:
        PeerId(raw)
    except TicketError:
        return False
    return True


def test_a_proof_naming_a_key_that_is_not_ed25519_is_a_protocol_error() -> None:
    not_a_key = next(bytes([i]) * 32 for i in range(256) if not is_key(bytes([i]) * 32))
    frame = bytes([0x03]) + (96).to_bytes(4, "big") + not_a_key + bytes(64)
    assert isinstance(peak_memory(lambda: decode(frame))[0], ProtocolError)
