"""Partial blobs: verified writes, durable progress, resume, size claims, promotion."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ringdrop.bao import GROUP_SIZE, ChunkRanges, outboard_from_bytes, valid_ranges
from ringdrop.errors import DiskFullError, IntegrityError, StoreError
from ringdrop.store import Store
from ringdrop.store.layout import PartialPaths
from ringdrop.store.partial import decode_bitfield

from .helpers import read_all, stream_of

SIZE = 40 * GROUP_SIZE + 1000
GROUPS = 41
CHUNKS = -(-SIZE // 1024)


def feed(writer: object, stream: bytes, piece: int = 10_000) -> None:
    from ringdrop.store import PartialWriter

    assert isinstance(writer, PartialWriter)
    for at in range(0, len(stream), piece):
        writer.write(stream[at : at + piece])


def written(store: Store, ranges: ChunkRanges | None = None) -> tuple[bytes, PartialPaths]:
    """A download of SIZE random bytes with `ranges` of them (default: all) written and closed:
    its root and its files."""
    root, stream = stream_of(os.urandom(SIZE), ranges)
    with store.partial(root, SIZE) as partial:
        feed(partial.writer(ranges), stream)
        return root, partial.paths


def groups(first: int, end: int) -> ChunkRanges:
    return ChunkRanges.groups(first, end)


def test_a_whole_download_promotes_to_a_complete_tagged_blob(store: Store) -> None:
    data = os.urandom(SIZE)
    root, stream = stream_of(data)
    with store.partial(root) as partial:
        writer = partial.writer()
        feed(writer, stream)
        writer.finish()
        assert partial.complete
        assert partial.size == SIZE
        assert partial.size_proven
        info = partial.promote(tag=root.hex(), display_name="x.bin")
    assert (info.size, info.location) == (SIZE, "file")
    assert read_all(store, root) == data
    assert store.tag(root.hex()) is not None
    assert store.partials() == []
    assert sorted(p.name for p in (store.path / "partial").iterdir()) == []


def test_verified_writes_report_the_chunks_they_cover(store: Store) -> None:
    data = os.urandom(SIZE)
    root, stream = stream_of(data, groups(0, 2))
    with store.partial(root, SIZE) as partial:
        got = partial.writer(groups(0, 2)).write(stream)
        assert got == groups(0, 2)
        assert partial.valid() == groups(0, 2)
        assert partial.missing() == ChunkRanges([(32, CHUNKS)])


def test_progress_survives_closing_and_the_rest_is_fetched_on_resume(store: Store) -> None:
    data = os.urandom(SIZE)
    root, first = stream_of(data, groups(0, 10))
    with store.partial(root, SIZE) as partial:
        feed(partial.writer(groups(0, 10)), first)
    with store.partial(root) as partial:
        assert partial.valid() == groups(0, 10)
        assert partial.size == SIZE
        missing = partial.missing()
        _, rest = stream_of(data, missing)
        writer = partial.writer(missing)
        feed(writer, rest)
        writer.finish()
        partial.promote()
    assert read_all(store, root) == data


def test_a_first_stripe_with_the_chunk_that_proves_the_size_is_written(store: Store) -> None:
    # A provider's first stripe asks for the size too: a chunk past the end, which the sender
    # answers with the last chunk and the parents inside its group (no outboard slot of their own).
    data = os.urandom(8 * GROUP_SIZE)
    ranges = groups(0, 2) | ChunkRanges([(1 << 40, None)])
    root, stream = stream_of(data, ranges)
    with store.partial(root, len(data)) as partial:
        feed(partial.writer(ranges), stream)
        assert partial.size_proven
        last = len(data) // 1024
        assert partial.valid() == groups(0, 2) | ChunkRanges([(last - 1, last)])


def test_the_bitfield_holds_only_what_was_flushed(store: Store) -> None:
    data = os.urandom(SIZE)
    root, stream = stream_of(data, groups(0, 8))
    with store.partial(root, SIZE) as partial:
        writer = partial.writer(groups(0, 8), flush_bytes=1 << 40, flush_interval=1e9)
        writer.write(stream[: len(stream) // 2])
        writer.flush()
        flushed = partial.valid()
        writer.write(stream[len(stream) // 2 :])
        on_disk = decode_bitfield(partial.paths.bitfield.read_bytes(), SIZE)
        assert on_disk == flushed
        assert flushed != groups(0, 8)


def test_closing_a_finished_writer_does_not_write_the_bitfield_again(store: Store) -> None:
    # finish() made everything durable and recorded it; the promotion that follows deletes the
    # bitfield, so writing, syncing and renaming a new one at close would be wasted.
    root, stream = stream_of(os.urandom(SIZE))
    with store.partial(root, SIZE) as partial:
        writer = partial.writer()
        feed(writer, stream)
        writer.finish()
        recorded = partial.paths.bitfield.stat().st_ino
        partial.close_writer()
        assert partial.paths.bitfield.stat().st_ino == recorded
        assert decode_bitfield(partial.paths.bitfield.read_bytes(), SIZE) == partial.valid()
        partial.promote()
    assert store.blob(root) is not None


def test_closing_a_writer_records_what_it_wrote_since_its_last_flush(store: Store) -> None:
    data = os.urandom(SIZE)
    root, stream = stream_of(data, groups(0, 8))
    with store.partial(root, SIZE) as partial:
        writer = partial.writer(groups(0, 8), flush_bytes=1 << 40, flush_interval=1e9)
        writer.write(stream[: len(stream) // 2])
        writer.flush()
        writer.write(stream[len(stream) // 2 :])
        partial.close_writer()
        assert decode_bitfield(partial.paths.bitfield.read_bytes(), SIZE) == groups(0, 8)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda bitfield: bitfield.write_bytes(bitfield.read_bytes()[:-3]), id="torn"),
        pytest.param(Path.unlink, id="missing"),
    ],
)
def test_a_damaged_bitfield_is_rebuilt_from_the_data(
    store: Store, damage: Callable[[Path], object]
) -> None:
    root, paths = written(store, groups(3, 7))
    damage(paths.bitfield)
    with store.partial(root) as partial:
        assert partial.valid() == groups(3, 7)


def test_a_bitfield_past_the_end_of_the_data_file_is_not_trusted(store: Store) -> None:
    root, paths = written(store)
    os.truncate(paths.data, 5 * GROUP_SIZE)
    with store.partial(root) as partial:
        assert partial.valid() == groups(0, 5)


def test_an_unproven_size_is_reset_when_a_sender_claims_another(store: Store) -> None:
    data = os.urandom(SIZE)
    root, stream = stream_of(data, groups(0, 4))
    with store.partial(root, SIZE + 5 * GROUP_SIZE) as partial:
        assert partial.size == SIZE + 5 * GROUP_SIZE
        feed(partial.writer(groups(0, 4)), stream)
        assert partial.size == SIZE
        assert partial.valid() == groups(0, 4)
        assert partial.paths.data.stat().st_size == SIZE


def test_a_proven_size_cannot_be_contradicted(store: Store) -> None:
    data = os.urandom(SIZE)
    ends = ChunkRanges([(0, 16), (SIZE // 1024, None)])
    root, stream = stream_of(data, ends)
    with store.partial(root) as partial:
        feed(partial.writer(ends), stream)
        assert partial.size_proven
    with pytest.raises(IntegrityError, match="proven"):
        store.partial(root, SIZE + 1)
    with store.partial(root) as partial:
        with pytest.raises(IntegrityError, match="proven"):
            partial.writer().write((SIZE + 1).to_bytes(8, "little"))
        assert partial.valid() == ChunkRanges([(0, 16), (GROUPS * 16 - 16, CHUNKS)])


def test_a_lying_stream_keeps_what_verified_and_marks_nothing_else(store: Store) -> None:
    data = os.urandom(SIZE)
    root, stream = stream_of(data)
    forged = bytearray(stream)
    forged[len(stream) // 2] ^= 1
    with store.partial(root) as partial:
        writer = partial.writer()
        with pytest.raises(IntegrityError):
            feed(writer, bytes(forged))
        with pytest.raises(IntegrityError, match="already failed"):
            writer.write(b"more")
        partial.flush()
        kept = partial.valid()
        assert not kept.is_empty()
        assert kept != ChunkRanges.all().complement(0)
        checked = valid_ranges(partial.paths.data, partial.paths.outboard, root, SIZE)
        assert kept - checked == ChunkRanges()


def test_promoting_data_that_does_not_hash_to_the_root_resets(store: Store) -> None:
    root, paths = written(store)
    with paths.data.open("r+b") as f:
        f.write(b"rot")
    with store.partial(root) as partial, pytest.raises(IntegrityError, match="starts over"):
        partial.promote()
    with store.partial(root) as partial:
        assert partial.valid() == ChunkRanges()
        assert partial.size is None


def test_a_partial_is_held_by_one_opener_at_a_time(store: Store, tmp_path: Path) -> None:
    root, _ = stream_of(os.urandom(SIZE))
    with (
        store.partial(root),
        Store.open(store.path) as other,
        pytest.raises(StoreError, match="being downloaded"),
    ):
        other.partial(root)
    with Store.open(store.path) as other, other.partial(root):
        pass


def test_a_complete_blob_cannot_be_downloaded_again(store: Store) -> None:
    info, _ = store.import_bytes(os.urandom(SIZE))
    with pytest.raises(StoreError, match="already complete"):
        store.partial(info.root)


@pytest.mark.parametrize("size", [0, 1, GROUP_SIZE])
def test_small_downloads_end_up_inline(store: Store, size: int) -> None:
    data = os.urandom(size)
    root, stream = stream_of(data)
    with store.partial(root) as partial:
        writer = partial.writer()
        writer.write(stream)
        writer.finish()
        info = partial.promote()
    assert info.location == "inline"
    assert read_all(store, root) == data


def test_discard_deletes_the_download(store: Store) -> None:
    data = os.urandom(SIZE)
    root, stream = stream_of(data, groups(0, 3))
    with store.partial(root, SIZE) as partial:
        feed(partial.writer(groups(0, 3)), stream)
        partial.discard()
    assert store.partials() == []
    assert list((store.path / "partial").iterdir()) == []


def test_an_incomplete_download_cannot_be_promoted(store: Store) -> None:
    root, stream = stream_of(os.urandom(SIZE), groups(0, 3))
    with store.partial(root, SIZE) as partial:
        feed(partial.writer(groups(0, 3)), stream)
        with pytest.raises(StoreError, match="not complete"):
            partial.promote()


def test_a_size_that_cannot_fit_on_the_disk_is_refused(store: Store) -> None:
    root, _ = stream_of(os.urandom(SIZE))
    with pytest.raises(DiskFullError, match="free"):
        store.partial(root, 1 << 60)


def test_partials_lists_downloads_in_progress(store: Store) -> None:
    root, _ = stream_of(os.urandom(SIZE))
    with store.partial(root, SIZE):
        pass
    [info] = store.partials()
    assert (info.root, info.size, info.size_proven) == (root, SIZE, False)


def test_a_download_verified_in_one_sitting_keeps_its_tree_and_the_data_is_not_hashed_again(
    store: Store,
) -> None:
    data = os.urandom(SIZE)
    root, stream = stream_of(data)
    with store.partial(root) as partial:
        feed(partial.writer(), stream)
        tree = partial.paths.outboard.stat().st_ino
        partial.promote()
    # The download's own outboard became the blob's: renamed, not rebuilt.
    assert store.layout.blob_outboard(root).stat().st_ino == tree
    assert store.layout.blob_outboard(root).read_bytes() == outboard_from_bytes(data)[1]
    assert read_all(store, root) == data
    assert store.check().ok


def test_a_tree_that_does_not_chain_to_the_root_is_rebuilt_from_the_data(store: Store) -> None:
    data = os.urandom(SIZE)
    root, stream = stream_of(data)
    with store.partial(root) as partial:
        feed(partial.writer(), stream)
        partial.close_writer()
        with partial.paths.outboard.open("r+b") as f:
            f.seek(64 * 7)
            f.write(b"junk")
        tree = partial.paths.outboard.stat().st_ino
        partial.promote()
    assert store.layout.blob_outboard(root).stat().st_ino != tree
    assert store.layout.blob_outboard(root).read_bytes() == outboard_from_bytes(data)[1]
    assert read_all(store, root) == data
    assert store.check().ok
