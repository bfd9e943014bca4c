"""The native verified-streaming core: hashing, outboards, encoder, decoder, valid_ranges."""

from __future__ import annotations

import errno
import os
import platform
import random
import subprocess
import sys
from pathlib import Path

import blake3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringdrop.bao import (
    GROUP_SIZE,
    ChunkRanges,
    Decoder,
    Encoder,
    create_outboard,
    group_count,
    outboard_from_bytes,
    outboard_size,
    valid_ranges,
)
from ringdrop.errors import IntegrityError
from tests.bao_util import encode, expected_chunks, group_of_byte
from tests.files import pseudo_random

EDGE_SIZES = [0, 1, 1023, 1024, 1025, 16383, 16384, 16385, 32768, 32769, 3 * 2**20 + 5]


def decode_all(
    root: bytes, ranges: ChunkRanges, stream: bytes, cuts: list[int]
) -> dict[int, memoryview]:
    decoder = Decoder(root, ranges)
    leaves: dict[int, memoryview] = {}
    previous = 0
    for cut in [*sorted(cuts), len(stream)]:
        for offset, data in decoder.feed(stream[previous:cut]):
            leaves[offset] = data
        previous = cut
    decoder.finish()
    return leaves


@pytest.mark.parametrize("size", EDGE_SIZES)
def test_root_of_bytes_is_blake3(size: int) -> None:
    data = pseudo_random(size)
    root, outboard = outboard_from_bytes(data)
    assert root == blake3.blake3(data).digest()
    assert len(outboard) == outboard_size(size)


@pytest.mark.parametrize("size", EDGE_SIZES)
def test_file_outboard_matches_memory_outboard(tmp_path: Path, size: int) -> None:
    data = pseudo_random(size, seed=1)
    (tmp_path / "data").write_bytes(data)
    root, hashed = create_outboard(tmp_path / "data", tmp_path / "obao")
    assert (root, hashed) == (blake3.blake3(data).digest(), size)
    assert (tmp_path / "obao").read_bytes() == outboard_from_bytes(data)[1]


@settings(max_examples=60, deadline=None)
@given(size=st.integers(min_value=0, max_value=300_000), seed=st.integers(0, 2**32))
def test_root_of_random_sizes_is_blake3(size: int, seed: int) -> None:
    data = pseudo_random(size, seed)
    assert outboard_from_bytes(data)[0] == blake3.blake3(data).digest()


@pytest.mark.parametrize(
    ("size", "groups", "outboard"),
    [(0, 0, 0), (1, 1, 0), (16384, 1, 0), (16385, 2, 64), (10 * 16384, 10, 9 * 64)],
)
def test_geometry(size: int, groups: int, outboard: int) -> None:
    assert group_count(size) == groups
    assert outboard_size(size) == outboard


def test_progress_is_reported_to_the_end(tmp_path: Path) -> None:
    size = 150 * 2**20
    with open(tmp_path / "data", "wb") as f:
        f.truncate(size)
    calls: list[tuple[int, int]] = []
    create_outboard(tmp_path / "data", tmp_path / "obao", lambda d, t: calls.append((d, t)))
    assert calls[-1] == (size, size)
    assert len(calls) >= 3
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)


def test_progress_callback_that_raises_stops_hashing(tmp_path: Path) -> None:
    with open(tmp_path / "data", "wb") as f:
        f.truncate(100 * 2**20)

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        create_outboard(tmp_path / "data", tmp_path / "obao", stop)


def test_missing_file_raises_file_not_found_naming_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as failure:
        create_outboard(tmp_path / "nope", tmp_path / "obao")
    assert str(failure.value.filename) == str(tmp_path / "nope")


def test_a_full_disk_under_the_decoder_names_the_data_file() -> None:
    blob = pseudo_random(3 * GROUP_SIZE)
    decoder = Decoder(blake3.blake3(blob).digest(), ChunkRanges.all(), data="/dev/full")
    with pytest.raises(OSError, match="No space left") as failure:
        decoder.write(encode(blob, ChunkRanges.all()))
    assert failure.value.errno == errno.ENOSPC
    assert failure.value.filename == "/dev/full"


def test_an_outboard_that_cannot_grow_is_named() -> None:
    blob = pseudo_random(3 * GROUP_SIZE)
    decoder = Decoder(blake3.blake3(blob).digest(), ChunkRanges.all(), outboard="/dev/full")
    # A device cannot be truncated to the outboard's size.
    with pytest.raises(OSError, match="Invalid argument") as failure:
        decoder.feed(encode(blob, ChunkRanges.all()))
    assert failure.value.errno == errno.EINVAL
    assert failure.value.filename == "/dev/full"


def test_read_errors_name_the_file_in_every_reader(tmp_path: Path) -> None:
    blob = pseudo_random(3 * GROUP_SIZE)
    (tmp_path / "d").write_bytes(blob)
    root, size = create_outboard(tmp_path / "d", tmp_path / "o")
    folder = tmp_path / "folder"
    folder.mkdir()
    # A folder opens for reading, and every read of it fails with EISDIR.
    with pytest.raises(IsADirectoryError) as failure:
        valid_ranges(tmp_path / "d", folder, root, size)
    assert failure.value.filename == str(folder)
    with pytest.raises(IsADirectoryError) as failure:
        valid_ranges(folder, tmp_path / "o", root, size)
    assert failure.value.filename == str(folder)
    with pytest.raises(IsADirectoryError) as failure:
        Encoder(folder, tmp_path / "o", root, size, ChunkRanges.all()).read()
    assert failure.value.filename == str(folder)


chunk_ranges = st.lists(
    st.tuples(st.integers(0, 400), st.one_of(st.none(), st.integers(1, 60))),
    max_size=5,
).map(lambda rs: ChunkRanges([(s, None if n is None else s + n) for s, n in rs]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.one_of(st.sampled_from(EDGE_SIZES[:-1]), st.integers(0, 400 * 1024)),
    ranges=chunk_ranges,
    seed=st.integers(0, 2**32),
    data=st.data(),
)
def test_round_trip_of_random_ranges_in_random_fragments(
    size: int, ranges: ChunkRanges, seed: int, data: st.DataObject
) -> None:
    blob = pseudo_random(size, seed)
    stream = encode(blob, ranges, piece=data.draw(st.integers(1, 70_000)))
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=20))
    leaves = decode_all(blake3.blake3(blob).digest(), ranges, stream, cuts)
    delivered: set[int] = set()
    for offset, piece in leaves.items():
        assert piece == blob[offset : offset + len(piece)]
        delivered.update(range(offset // 1024, -(-(offset + len(piece)) // 1024)))
    assert delivered >= expected_chunks(ranges, size)


def test_empty_blob_verifies_and_proves_its_size() -> None:
    stream = encode(b"", ChunkRanges.all())
    assert stream == bytes(8)
    decoder = Decoder(blake3.blake3(b"").digest(), ChunkRanges.all())
    assert [(offset, bytes(leaf)) for offset, leaf in decoder.feed(stream)] == [(0, b"")]
    decoder.finish()
    assert decoder.size_proven


def test_empty_blob_against_another_root_fails() -> None:
    with pytest.raises(IntegrityError):
        Decoder(blake3.blake3(b"x").digest(), ChunkRanges.all()).feed(bytes(8))


@settings(max_examples=200, deadline=None)
@given(size=st.integers(1, 200_000), seed=st.integers(0, 2**32), data=st.data())
def test_any_flipped_bit_is_rejected_naming_its_group(
    size: int, seed: int, data: st.DataObject
) -> None:
    blob = pseudo_random(size, seed)
    original = encode(blob, ChunkRanges.all())
    stream = bytearray(original)
    position = data.draw(st.integers(8, len(stream) - 1))
    stream[position] ^= 1 << data.draw(st.integers(0, 7))
    decoder = Decoder(blake3.blake3(blob).digest(), ChunkRanges.all())
    with pytest.raises(IntegrityError) as failure:
        decoder.feed(bytes(stream))
    assert failure.value.group == group_of_byte(blob, original, position)


def test_nothing_from_a_failing_group_is_returned() -> None:
    blob = pseudo_random(5 * GROUP_SIZE)
    stream = bytearray(encode(blob, ChunkRanges.all()))
    position = len(stream) - 100
    stream[position] ^= 0x80
    decoder = Decoder(blake3.blake3(blob).digest(), ChunkRanges.all())
    good = decoder.feed(bytes(stream[: position - GROUP_SIZE]))
    with pytest.raises(IntegrityError):
        decoder.feed(bytes(stream[position - GROUP_SIZE :]))
    assert all(offset + len(d) <= 4 * GROUP_SIZE for offset, d in good)
    with pytest.raises(IntegrityError):
        decoder.feed(b"")


@pytest.mark.parametrize("size", [0, 1000, 16384, 100_000])
def test_truncated_stream_is_rejected_at_finish(size: int) -> None:
    blob = pseudo_random(size)
    stream = encode(blob, ChunkRanges.all())
    root = blake3.blake3(blob).digest()
    for cut in sorted({0, 1, 7, 8, 9, len(stream) // 2, len(stream) - 1}):
        if cut >= len(stream):
            continue
        decoder = Decoder(root, ChunkRanges.all())
        decoder.feed(stream[:cut])
        with pytest.raises(IntegrityError):
            decoder.finish()


@pytest.mark.parametrize("size", [0, 1000, 100_000])
def test_trailing_bytes_are_rejected(size: int) -> None:
    blob = pseudo_random(size)
    stream = encode(blob, ChunkRanges.all())
    decoder = Decoder(blake3.blake3(blob).digest(), ChunkRanges.all())
    with pytest.raises(IntegrityError, match="after the end"):
        decoder.feed(stream + b"\0")


def test_trailing_bytes_in_a_later_fragment_are_rejected() -> None:
    blob = pseudo_random(50_000)
    stream = encode(blob, ChunkRanges.all())
    decoder = Decoder(blake3.blake3(blob).digest(), ChunkRanges.all())
    decoder.feed(stream)
    assert decoder.done
    with pytest.raises(IntegrityError):
        decoder.feed(b"x")


def test_wrong_root_is_rejected() -> None:
    blob = pseudo_random(100_000)
    with pytest.raises(IntegrityError):
        Decoder(blake3.blake3(b"other").digest(), ChunkRanges.all()).feed(
            encode(blob, ChunkRanges.all())
        )


@pytest.mark.parametrize("claimed", [0, 1, 99_999, 100_001, 200_000, 2**40])
def test_a_lie_about_the_size_is_caught(claimed: int) -> None:
    blob = pseudo_random(100_000)
    stream = encode(blob, ChunkRanges.all())
    decoder = Decoder(blake3.blake3(blob).digest(), ChunkRanges.all())

    def feed_and_finish() -> None:
        decoder.feed(claimed.to_bytes(8, "little") + stream[8:])
        decoder.finish()

    with pytest.raises(IntegrityError):
        feed_and_finish()
    assert not decoder.size_proven


def test_size_is_unproven_until_the_last_chunk_verifies() -> None:
    blob = pseudo_random(10 * GROUP_SIZE)
    ranges = ChunkRanges([(0, 16)])
    decoder = Decoder(blake3.blake3(blob).digest(), ranges)
    decoder.feed(encode(blob, ranges))
    decoder.finish()
    assert decoder.size == len(blob)
    assert not decoder.size_proven


def test_decoder_writes_data_and_outboard_files(tmp_path: Path) -> None:
    blob = pseudo_random(40 * GROUP_SIZE + 123)
    root, outboard = outboard_from_bytes(blob)
    stream = encode(blob, ChunkRanges.all())
    decoder = Decoder(root, ChunkRanges.all(), data=tmp_path / "d", outboard=tmp_path / "o")
    written = ChunkRanges()
    for i in range(0, len(stream), 50_000):
        written = written | decoder.write(stream[i : i + 50_000])
    decoder.finish()
    decoder.sync()
    assert written == ChunkRanges([(0, -(-len(blob) // 1024))])
    assert (tmp_path / "d").read_bytes() == blob
    assert (tmp_path / "o").read_bytes() == outboard
    assert valid_ranges(tmp_path / "d", tmp_path / "o", root, len(blob)) == written


def test_resumed_decode_fills_only_the_missing_groups(tmp_path: Path) -> None:
    blob = pseudo_random(20 * GROUP_SIZE)
    root = blake3.blake3(blob).digest()
    size = len(blob)
    first = ChunkRanges.groups(0, 7)
    d1 = Decoder(root, first, data=tmp_path / "d", outboard=tmp_path / "o")
    have = d1.write(encode(blob, first))
    missing = have.complement(size)
    stream = encode(blob, missing)
    assert len(stream) < size - 6 * GROUP_SIZE
    d2 = Decoder(root, missing, data=tmp_path / "d", outboard=tmp_path / "o")
    have = have | d2.write(stream)
    d2.finish()
    assert have.complement(size).is_empty()
    assert (tmp_path / "d").read_bytes() == blob


def test_a_resumed_decode_keeps_the_outboard_pairs_of_the_first(tmp_path: Path) -> None:
    blob = pseudo_random(40 * GROUP_SIZE + 5)
    root, outboard = outboard_from_bytes(blob)
    for ranges in (ChunkRanges.groups(3, 9), ChunkRanges.groups(3, 9).complement(len(blob))):
        decoder = Decoder(root, ranges, data=tmp_path / "d", outboard=tmp_path / "o")
        decoder.write(encode(blob, ranges))
        decoder.finish()
        decoder.sync()
    assert (tmp_path / "o").read_bytes() == outboard
    assert (tmp_path / "d").read_bytes() == blob


def test_valid_ranges_finds_the_damaged_groups(tmp_path: Path) -> None:
    blob = bytearray(pseudo_random(12 * GROUP_SIZE + 5))
    (tmp_path / "d").write_bytes(blob)
    root, size = create_outboard(tmp_path / "d", tmp_path / "o")
    blob[3 * GROUP_SIZE + 9] ^= 1
    blob[12 * GROUP_SIZE + 1] ^= 1
    (tmp_path / "d").write_bytes(blob)
    valid = valid_ranges(tmp_path / "d", tmp_path / "o", root, size)
    assert valid == ChunkRanges.groups(0, 12) - ChunkRanges.groups(3, 4)


def test_valid_ranges_of_a_short_partial_file(tmp_path: Path) -> None:
    blob = pseudo_random(8 * GROUP_SIZE)
    (tmp_path / "full").write_bytes(blob)
    root, size = create_outboard(tmp_path / "full", tmp_path / "o")
    (tmp_path / "d").write_bytes(blob[: 5 * GROUP_SIZE + 10])
    assert valid_ranges(tmp_path / "d", tmp_path / "o", root, size) == ChunkRanges.groups(0, 5)


def test_encoder_refuses_a_file_changed_on_disk(tmp_path: Path) -> None:
    blob = bytearray(pseudo_random(30 * GROUP_SIZE))
    path = tmp_path / "d"
    path.write_bytes(blob)
    root, size = create_outboard(path, tmp_path / "o")
    blob[17 * GROUP_SIZE + 4] ^= 4
    path.write_bytes(blob)
    encoder = Encoder(path, tmp_path / "o", root, size, ChunkRanges.all())
    emitted: list[bytes] = []

    def drain() -> None:
        while piece := encoder.read(GROUP_SIZE):
            emitted.append(piece)

    with pytest.raises(IntegrityError) as failure:
        drain()
    assert failure.value.group == 17
    assert blob[17 * GROUP_SIZE : 18 * GROUP_SIZE] not in b"".join(emitted)


def test_encoder_refuses_a_truncated_file(tmp_path: Path) -> None:
    blob = pseudo_random(30 * GROUP_SIZE)
    path = tmp_path / "d"
    path.write_bytes(blob)
    root, size = create_outboard(path, tmp_path / "o")
    with open(path, "r+b") as f:
        f.truncate(20 * GROUP_SIZE)
    encoder = Encoder(path, tmp_path / "o", root, size, ChunkRanges.all())

    def drain() -> None:
        while encoder.read():
            pass

    with pytest.raises(IntegrityError, match="changed on disk"):
        drain()


def test_an_encoder_that_failed_in_its_last_piece_never_ends_cleanly(tmp_path: Path) -> None:
    blob = bytearray(pseudo_random(300 * 1024))
    path = tmp_path / "d"
    path.write_bytes(blob)
    root, size = create_outboard(path, tmp_path / "o")
    blob[-1] ^= 1
    path.write_bytes(blob)
    encoder = Encoder(path, tmp_path / "o", root, size, ChunkRanges.all())
    with pytest.raises(IntegrityError, match="changed on disk"):
        encoder.read(1 << 20)  # the whole stream in one piece, the last leaf wrong
    # Not an end of stream (b""), which a sender would pass on as the whole content.
    assert not encoder.done
    with pytest.raises(IntegrityError, match="already failed"):
        encoder.read(1 << 20)


def test_encoder_reads_in_bounded_pieces(tmp_path: Path) -> None:
    path = tmp_path / "d"
    with open(path, "wb") as f:
        f.write(os.urandom(2**20))
    root, size = create_outboard(path, tmp_path / "o")
    encoder = Encoder(path, tmp_path / "o", root, size, ChunkRanges.all())
    sizes = []
    while piece := encoder.read(100_000):
        sizes.append(len(piece))
    assert max(sizes) < 100_000 + GROUP_SIZE + 64 * 20
    assert sum(sizes) == 8 + size + outboard_size(size)


def test_bad_root_length_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        Decoder(b"short", ChunkRanges.all())


def test_decoding_random_garbage_never_crashes() -> None:
    rng = random.Random(7)
    root = blake3.blake3(b"x" * 50_000).digest()
    for _ in range(200):
        decoder = Decoder(root, ChunkRanges.all())
        garbage = rng.randbytes(rng.randint(0, 3000))
        try:
            decoder.feed(garbage)
            decoder.finish()
        except IntegrityError:
            continue
        pytest.fail("garbage verified")


# Run in a process of its own: the allocator's parameters are the whole process's. glibc's
# mallinfo2 says whether a block is a mapping of its own (hblks) and what the heaps hold (arena).
_ALLOCATOR_PROBE = """
import ctypes, sys
from ringdrop.bao import keep_freed_memory

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
if sys.argv[1] == "keep" and not keep_freed_memory():
    sys.exit("keep_freed_memory() did nothing")
size = 8 << 20
before = libc.mallinfo2().hblks
block = libc.malloc(size)
mapped = libc.mallinfo2().hblks - before
libc.free(block)
print(mapped, libc.mallinfo2().arena >= size)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's allocator only")
def test_freed_buffers_stay_in_the_heap_for_the_next_ones() -> None:
    # glibc's defaults, whatever this environment sets.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_"))}

    def probe(mode: str) -> list[str]:
        run = subprocess.run(
            [sys.executable, "-c", _ALLOCATOR_PROBE, mode], capture_output=True, text=True, env=env
        )
        assert run.returncode == 0, run.stderr
        return run.stdout.split()

    # By default a block of 8 MiB is a mapping of its own, handed back when freed (the next
    # one's every page faults in again); kept, it comes from the heap, and stays there.
    assert probe("default") == ["1", "False"]
    assert probe("keep") == ["0", "True"]
