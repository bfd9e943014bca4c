"""Members requests: many members of a collection on one stream, as PART frames."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringdrop.bao import ChunkRanges
from ringdrop.errors import LocalProtocolError, ProtocolError
from ringdrop.protocol import (
    MAX_REQUEST_BYTES,
    Data,
    MemberData,
    MemberPart,
    MemberSelection,
    MembersReader,
    MembersRequest,
    Requester,
    Responder,
    ResponseHeader,
    StreamEnded,
    decode,
    encode,
)

ROOT = bytes(range(32))
ALL = ChunkRanges.all()

selections = (
    st.lists(
        st.tuples(st.integers(0, 2**20), st.sampled_from([ALL, ChunkRanges([(3, 9), (20, None)])])),
        min_size=1,
        max_size=30,
        unique_by=lambda t: t[0],
    )
    .map(sorted)
    .map(lambda pairs: tuple(MemberSelection(i, r) for i, r in pairs))
)


@given(selections)
def test_a_members_request_survives_its_encoding(members: tuple[MemberSelection, ...]) -> None:
    request = MembersRequest(ROOT, members)
    assert decode(encode(request)) == request


def test_a_whole_member_costs_three_bytes_so_thousands_fit_in_one_request() -> None:
    request = MembersRequest(ROOT, tuple(MemberSelection(i, ALL) for i in range(20_000)))
    frame = encode(request)
    assert len(frame) == 5 + 2 + 32 + 3 * 20_000 <= 5 + MAX_REQUEST_BYTES


@pytest.mark.parametrize(
    "members",
    [
        (),
        (MemberSelection(2, ALL), MemberSelection(2, ALL)),
        (MemberSelection(3, ALL), MemberSelection(1, ALL)),
    ],
)
def test_a_members_request_lists_at_least_one_member_in_increasing_order(
    members: tuple[MemberSelection, ...],
) -> None:
    with pytest.raises(LocalProtocolError):
        MembersRequest(ROOT, members)


def test_a_member_selection_asks_for_some_chunks() -> None:
    with pytest.raises(LocalProtocolError):
        MemberSelection(0, ChunkRanges())


@pytest.mark.parametrize(
    "tail",
    [
        b"",  # no selection
        b"\x00\x05\x00",  # ranges cut short
        b"\x80\x00\x01\x00",  # a gap not in its shortest form
        b"\x00\x00",  # empty ranges
        b"\xff\xff\xff\xff\x7f\x01\x00",  # an index past 2**32
    ],
)
def test_a_malformed_members_request_is_the_peers_fault(tail: bytes) -> None:
    body = bytes([1, 2]) + ROOT + tail
    with pytest.raises(ProtocolError):
        decode(bytes([0x10]) + len(body).to_bytes(4, "big") + body)


def test_the_requester_hands_an_allowed_members_body_on_as_data() -> None:
    requester, responder = Requester(), Responder()
    request = MembersRequest(ROOT, (MemberSelection(0, ALL), MemberSelection(4, ALL)))
    (received,) = responder.receive_data(requester.send_request(request), end_stream=True)[:1]
    assert received == request
    header = responder.send_header(ResponseHeader("allowed"))
    body = responder.send_data(encode(MemberPart(b"abc", last=True)))
    events = requester.receive_data(header + body, end_stream=True)
    assert events[0] == ResponseHeader("allowed")
    assert events[1] == Data(encode(MemberPart(b"abc", last=True)))
    assert events[2] == StreamEnded()


def _body(*parts: MemberPart) -> bytes:
    return b"".join(encode(part) for part in parts)


@given(st.data())
def test_the_reader_cuts_members_out_of_any_fragmentation(data: st.DataObject) -> None:
    body = _body(
        MemberPart(b"first", last=True),
        MemberPart(b"sec"),
        MemberPart(b"ond", last=True),
        MemberPart(missing=True, last=True),
        MemberPart(b"", last=True),
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(body)), max_size=10)))
    reader = MembersReader(4)
    events: list[MemberData] = []
    for start, end in zip([0, *cuts], [*cuts, len(body)], strict=True):
        events += reader.feed(body[start:end])
    reader.finish()
    assert reader.done
    joined: dict[int, bytes] = {}
    for event in events:
        joined[event.position] = joined.get(event.position, b"") + event.data
    assert joined == {0: b"first", 1: b"second", 2: b"", 3: b""}
    assert [e.position for e in events if e.last] == [0, 1, 2, 3]
    assert [e.position for e in events if e.missing] == [2]


def test_a_body_that_ends_before_its_last_member_is_a_protocol_error() -> None:
    reader = MembersReader(2)
    reader.feed(_body(MemberPart(b"x", last=True), MemberPart(b"y")))
    with pytest.raises(ProtocolError):
        reader.finish()


def test_a_part_after_the_last_member_is_a_protocol_error() -> None:
    reader = MembersReader(1)
    with pytest.raises(ProtocolError):
        reader.feed(_body(MemberPart(b"x", last=True), MemberPart(b"y", last=True)))


@pytest.mark.parametrize(
    "frame",
    [
        bytes([0x11, 0, 0, 0, 1, 0]),  # a RESPONSE inside the body
        bytes([0x13, 0, 0, 0, 1, 0x04]),  # unknown flag
        bytes([0x13, 0, 0, 0, 2, 0x02, 0x41]),  # missing, with bytes
        bytes([0x13, 0, 0, 0, 0]),  # no flags byte
        bytes([0x13, 0x7F, 0, 0, 0]),  # longer than allowed: refused from its head
    ],
)
def test_a_bad_part_is_a_protocol_error(frame: bytes) -> None:
    with pytest.raises(ProtocolError):
        MembersReader(3).feed(frame)


def test_a_reader_is_for_at_least_one_member() -> None:
    with pytest.raises(LocalProtocolError):
        MembersReader(0)
