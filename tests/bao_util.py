"""Helpers for tests of verified streaming: whole streams and independent oracles."""

from __future__ import annotations

from ringdrop.bao import GROUP_SIZE, ChunkRanges, Encoder, outboard_from_bytes


def encode(data: bytes, ranges: ChunkRanges, piece: int = 1 << 16) -> bytes:
    """The full response stream for `ranges` of in-memory `data`."""
    root, outboard = outboard_from_bytes(data)
    encoder = Encoder(data, outboard, root, len(data), ranges)
    pieces = []
    while piece_bytes := encoder.read(piece):
        pieces.append(piece_bytes)
    assert encoder.done
    return b"".join(pieces)


def expected_chunks(ranges: ChunkRanges, size: int) -> set[int]:
    """Chunk numbers a response for `ranges` must deliver, by bao's rule that anything at or
    past the end of the blob asks for the last chunk."""
    if size == 0:
        return set()
    last = -(-size // 1024) - 1
    wanted: set[int] = set()
    for start, end in ranges:
        stop = last + 1 if end is None else min(end, last + 1)
        wanted.update(range(start, stop))
        if end is None or end > last:
            wanted.add(last)
    return wanted


def group_of_byte(data: bytes, stream: bytes, position: int) -> int:
    """For a full-range stream of random `data`: the chunk group the item at `position` of the
    stream belongs to. A leaf's own group; for a parent, the first leaf after it in pre-order,
    which is the first group under that parent."""
    groups = -(-len(data) // GROUP_SIZE)
    starts = [
        (stream.index(data[g * GROUP_SIZE : (g + 1) * GROUP_SIZE], 8), g) for g in range(groups - 1)
    ]
    # The last leaf may be a few bytes only, too short to find by content: it ends the stream.
    starts.append((len(stream) - (len(data) - (groups - 1) * GROUP_SIZE), groups - 1))
    starts.sort()
    for start, group in starts:
        if position < start + GROUP_SIZE:
            return group
    raise AssertionError("position past the last leaf")
