"""ChunkRanges: set algebra against a model, the wire encoding, and the group bitfield."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringdrop.bao import ChunkRanges
from ringdrop.errors import ProtocolError

UNIVERSE = 300

bounded = st.lists(st.tuples(st.integers(0, UNIVERSE - 1), st.integers(1, 40)), max_size=6).map(
    lambda rs: ChunkRanges([(s, min(s + n, UNIVERSE)) for s, n in rs])
)

any_ranges = st.lists(
    st.tuples(st.integers(0, 2**40), st.one_of(st.none(), st.integers(1, 2**20))), max_size=6
).map(lambda rs: ChunkRanges([(s, None if n is None else s + n) for s, n in rs]))


def model(ranges: ChunkRanges) -> set[int]:
    return {c for start, end in ranges for c in range(start, UNIVERSE if end is None else end)}


@given(bounded, bounded)
def test_set_algebra_matches_python_sets(a: ChunkRanges, b: ChunkRanges) -> None:
    assert model(a | b) == model(a) | model(b)
    assert model(a & b) == model(a) & model(b)
    assert model(a - b) == model(a) - model(b)
    assert a | b == b | a
    assert a & b == b & a


@given(bounded, st.integers(0, UNIVERSE * 1024))
def test_complement_and_byte_count(a: ChunkRanges, size: int) -> None:
    chunks = -(-size // 1024)
    assert model(a.complement(size)) == set(range(chunks)) - model(a)
    covered = sum(min((c + 1) * 1024, size) - c * 1024 for c in model(a) if c < chunks)
    assert a.byte_count(size) == covered


@given(any_ranges)
def test_wire_encoding_round_trips(a: ChunkRanges) -> None:
    assert ChunkRanges.from_bytes(a.to_bytes()) == a


@given(st.binary(max_size=64))
def test_decoding_arbitrary_bytes_gives_ranges_or_protocol_error(data: bytes) -> None:
    try:
        ranges = ChunkRanges.from_bytes(data)
    except ProtocolError:
        return
    assert ranges.to_bytes() == data


def test_wire_encoding_is_compact() -> None:
    assert ChunkRanges.all().to_bytes() == b"\x00"
    assert ChunkRanges().to_bytes() == b""
    assert len(ChunkRanges([(1000, 2000), (5000, None)]).to_bytes()) == 6


@pytest.mark.parametrize(
    ("data", "reason"),
    [(b"\x05\x00", "empty range"), (b"\x80", "truncated"), (b"\x85\x00", "non-minimal")],
)
def test_malformed_wire_ranges_are_protocol_errors(data: bytes, reason: str) -> None:
    with pytest.raises(ProtocolError, match=reason):
        ChunkRanges.from_bytes(data)


def test_wire_ranges_past_64_bits_are_refused() -> None:
    huge = b"\xff" * 9 + b"\x01"
    with pytest.raises(ProtocolError, match="64 bits"):
        ChunkRanges.from_bytes(huge + huge)


@settings(max_examples=300)
@given(st.integers(0, 100 * 16384), st.data())
def test_bitfield_round_trips_whole_groups(size: int, data: st.DataObject) -> None:
    groups = -(-size // 16384)
    chosen = data.draw(st.sets(st.integers(0, max(0, groups - 1)), max_size=groups))
    chosen = {g for g in chosen if g < groups}
    ranges = ChunkRanges([(g * 16, g * 16 + 16) for g in chosen])
    bits = ranges.to_bitfield(size)
    assert len(bits) == -(-groups // 8)
    back = ChunkRanges.from_bitfield(bits, size)
    assert back == ranges & ChunkRanges([(0, -(-size // 1024))])


def test_bitfield_counts_a_short_last_group_covered_to_the_end() -> None:
    size = 2 * 16384 + 3000
    ranges = ChunkRanges([(32, 35)])
    assert ranges.to_bitfield(size) == b"\x04"
    assert ChunkRanges([(32, 34)]).to_bitfield(size) == b"\x00"


def test_bitfield_ignores_partly_covered_groups() -> None:
    assert ChunkRanges([(3, 40)]).to_bitfield(10 * 16384) == b"\x02\x00"


def test_bitfield_of_the_wrong_length_is_refused() -> None:
    with pytest.raises(ValueError, match="bitfield"):
        ChunkRanges.from_bitfield(b"\x00\x00", 16384)


def test_reversed_range_is_refused() -> None:
    with pytest.raises(ValueError, match="ends before"):
        ChunkRanges([(5, 2)])


def test_iteration_and_repr() -> None:
    ranges = ChunkRanges([(5, 9), (1, 3), (20, None)])
    assert list(ranges) == [(1, 3), (5, 9), (20, None)]
    assert len(ranges) == 3
    assert repr(ranges) == "ChunkRanges([(1, 3), (5, 9), (20, None)])"
    assert ChunkRanges.all().is_all()
    assert ChunkRanges().is_empty()
    assert hash(ChunkRanges([(1, 2)])) == hash(ChunkRanges([(1, 2)]))
