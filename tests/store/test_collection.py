"""Collections: folders imported as blobs, their encoding, and round trips through export."""

from __future__ import annotations

import contextlib
import os
import struct
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringdrop.errors import StoreError, UnsafePathError
from ringdrop.store import Collection, Entry, Store
from ringdrop.store.collection import (
    MAGIC,
    MAGIC_V1,
    MAX_COLLECTION_BYTES,
    MAX_COLLECTION_ENTRIES,
    check_size,
    encoded_size,
)
from ringdrop.store.importer import ImportBatch
from tests.files import files_under, tree

from .helpers import SAFE_PART


def make_tree(root: Path) -> dict[str, bytes]:
    content = {
        "README": b"read me",
        "empty.txt": b"",
        "docs/nested/deep/notes.md": os.urandom(30_000),
        "docs/ünïcödé ファイル.txt": "grüße".encode(),
        "big.bin": os.urandom(100_000),
        "a b/c d.txt": b"spaces",
    }
    for name, data in content.items():
        path = root.joinpath(*name.split("/"))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return content


def encode_raw(entries: list[tuple[bytes, int, bytes]]) -> bytes:
    """A version 1 collection, as ringdrop wrote before entries had metadata."""
    parts = [MAGIC_V1, struct.pack("<I", len(entries))]
    for root, size, name in entries:
        parts += [struct.pack("<32sQH", root, size, len(name)), name]
    return b"".join(parts)


def test_a_tree_round_trips_through_import_and_export(store: Store, tmp_path: Path) -> None:
    content = make_tree(tmp_path / "src")
    imported = store.import_directory(tmp_path / "src")
    assert [e.name for e in imported.collection.entries] == sorted(
        content, key=lambda n: n.encode()
    )
    assert imported.tag.format == "collection"
    assert imported.tag.display_name == "src"
    store.export_collection(imported.info.root, tmp_path / "out")
    assert tree(tmp_path / "out") == content


def test_a_reference_import_of_a_tree_round_trips(store: Store, tmp_path: Path) -> None:
    content = make_tree(tmp_path / "src")
    imported = store.import_directory(tmp_path / "src", mode="reference")
    store.export_collection(imported.info.root, tmp_path / "out")
    assert tree(tmp_path / "out") == content


def test_the_same_tree_always_gives_the_same_root(store: Store, tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    first = store.import_directory(tmp_path / "src")
    second = store.import_directory(tmp_path / "src")
    assert first.info.root == second.info.root


def test_the_collection_can_be_read_back_from_the_store(store: Store, tmp_path: Path) -> None:
    make_tree(tmp_path / "src")
    imported = store.import_directory(tmp_path / "src")
    assert store.collection(imported.info.root) == imported.collection


def test_symlinks_are_skipped_and_reported(store: Store, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "outside").write_bytes(b"secret")
    (tmp_path / "src" / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "src" / "dirlink").symlink_to(tmp_path)
    (tmp_path / "src" / "real").write_bytes(b"real")
    imported = store.import_directory(tmp_path / "src")
    assert [e.name for e in imported.collection.entries] == ["real"]
    assert imported.skipped == ("dirlink", "link")


def test_empty_folders_are_not_kept(store: Store, tmp_path: Path) -> None:
    (tmp_path / "src" / "empty" / "deeper").mkdir(parents=True)
    (tmp_path / "src" / "file").write_bytes(b"x")
    imported = store.import_directory(tmp_path / "src")
    store.export_collection(imported.info.root, tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["file"]


@pytest.mark.parametrize("name", ["back\\slash", "esc\x1b[2J", "new\nline", "bidi\u202etxt.exe"])
def test_a_hostile_file_name_refuses_the_import(store: Store, tmp_path: Path, name: str) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / name).write_bytes(b"x")
    with pytest.raises(UnsafePathError):
        store.import_directory(tmp_path / "src")
    assert store.blobs() == []


def test_a_name_that_is_not_utf8_refuses_the_import(store: Store, tmp_path: Path) -> None:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / os.fsdecode(b"latin1-\xe9")).write_bytes(b"x")
    with pytest.raises(UnsafePathError, match="UTF-8"):
        store.import_directory(tmp_path / "src")


def test_importing_a_file_as_a_folder_is_refused(store: Store, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with pytest.raises(StoreError, match="not a folder"):
        store.import_directory(tmp_path / "f")


def test_import_progress_counts_every_file(store: Store, tmp_path: Path) -> None:
    content = make_tree(tmp_path / "src")
    seen: list[tuple[int, int]] = []
    store.import_directory(tmp_path / "src", progress=lambda d, t: seen.append((d, t)))
    total = sum(len(v) for v in content.values())
    assert seen[-1] == (total, total)


@pytest.mark.parametrize(
    ("entries", "error"),
    [
        ([(bytes(32), 1, b"../evil")], UnsafePathError),
        ([(bytes(32), 1, b"/etc/passwd")], UnsafePathError),
        ([(bytes(32), 1, b"a\x00b")], UnsafePathError),
        ([(bytes(32), 1, b"\xff\xfe")], UnsafePathError),
        ([(bytes(32), 1, b"b"), (bytes(32), 1, b"a")], StoreError),
        ([(bytes(32), 1, b"a"), (bytes(32), 1, b"a")], StoreError),
        ([(bytes(32), 1, b"a"), (bytes(32), 1, b"a/b")], StoreError),
    ],
)
def test_decoding_refuses_bad_entries(
    entries: list[tuple[bytes, int, bytes]], error: type[Exception]
) -> None:
    with pytest.raises(error):
        Collection.decode(encode_raw(entries))


@pytest.mark.parametrize(
    "data",
    [b"", MAGIC, b"NOTACOLL\x00\x00\x00\x00", encode_raw([(bytes(32), 1, b"a")])[:-1]],
)
def test_decoding_refuses_malformed_bytes(data: bytes) -> None:
    with pytest.raises(StoreError):
        Collection.decode(data)


def test_decoding_refuses_trailing_bytes() -> None:
    with pytest.raises(StoreError, match="after its last entry"):
        Collection.decode(encode_raw([(bytes(32), 1, b"a")]) + b"\x00")


def test_a_collection_of_more_than_a_million_files_is_refused_before_its_entries_are_read() -> None:
    claim = MAGIC + struct.pack("<I", MAX_COLLECTION_ENTRIES + 1) + bytes(51) * 1000
    tracemalloc.start()
    try:
        with pytest.raises(StoreError, match="1,000,000"):
            Collection.decode(claim)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 * 1024


def test_a_count_the_bytes_cannot_hold_is_refused_at_once() -> None:
    with pytest.raises(StoreError, match="more than its bytes can hold"):
        Collection.decode(MAGIC + struct.pack("<I", 100_000) + bytes(51) * 10)


def test_a_collection_larger_than_the_limit_is_refused_by_its_size() -> None:
    with pytest.raises(StoreError, match="bytes long"):
        check_size(MAX_COLLECTION_BYTES + 1)
    check_size(MAX_COLLECTION_BYTES, MAX_COLLECTION_ENTRIES)


ENTRIES = st.dictionaries(
    st.lists(SAFE_PART, min_size=1, max_size=3).map("/".join),
    st.tuples(
        st.binary(min_size=32, max_size=32),
        st.integers(0, (1 << 64) - 1),
        st.none() | st.integers(-(1 << 63), (1 << 63) - 1),
        st.booleans(),
    ),
    max_size=8,
)


@given(ENTRIES)
def test_encoding_round_trips(entries: dict[str, tuple[bytes, int, int | None, bool]]) -> None:
    names = set(entries)
    # A name may not also be a folder of another: drop such names for this property.
    files = [n for n in names if not any(o.startswith(n + "/") for o in names)]
    collection = Collection.of([Entry(n, *entries[n]) for n in files])
    assert Collection.decode(collection.encode()) == collection


@given(ENTRIES)
def test_the_size_checked_before_an_import_is_the_encodings(
    entries: dict[str, tuple[bytes, int, int | None, bool]],
) -> None:
    files = [n for n in entries if not any(o.startswith(n + "/") for o in entries)]
    collection = Collection.of([Entry(n, *entries[n]) for n in files])
    assert encoded_size(files) == len(collection.encode())


@given(st.binary(max_size=300))
def test_decoding_arbitrary_bytes_raises_only_store_errors(data: bytes) -> None:
    with contextlib.suppress(StoreError, UnsafePathError):
        Collection.decode(MAGIC + data)


@given(ENTRIES, st.data())
def test_decoding_a_mangled_encoding_raises_only_store_errors(
    entries: dict[str, tuple[bytes, int, int | None, bool]], data: st.DataObject
) -> None:
    names = [n for n in entries if not any(o.startswith(n + "/") for o in entries)]
    encoded = bytearray(Collection.of([Entry(n, *entries[n]) for n in names]).encode())
    at = data.draw(st.integers(0, len(encoded) - 1))
    encoded[at] = data.draw(st.integers(0, 255))
    with contextlib.suppress(StoreError, UnsafePathError):
        Collection.decode(bytes(encoded))


@pytest.fixture
def small_batches(tmp_path: Path) -> Iterator[Store]:
    """A store that commits a folder's import two files at a time."""
    with Store(tmp_path / "store", import_batch=ImportBatch(files=2)) as store:
        yield store


def test_members_committed_in_batches_survive_gc_during_the_import(
    small_batches: Store, tmp_path: Path
) -> None:
    content = make_tree(tmp_path / "src")
    protected: list[int] = []  # temp tags held at each step

    def collect(done: int, total: int) -> None:
        with small_batches.db.snapshot() as conn:
            count = conn.execute("SELECT count(*) FROM temp_tags").get
        assert isinstance(count, int)
        protected.append(count)
        small_batches.gc()

    imported = small_batches.import_directory(tmp_path / "src", progress=collect)
    assert max(protected) > 0, "no batch was committed before the collection"
    with small_batches.db.snapshot() as conn:
        assert conn.execute("SELECT count(*) FROM temp_tags").fetchall() == [(0,)]
    small_batches.gc()
    small_batches.export_collection(imported.info.root, tmp_path / "out")
    assert tree(tmp_path / "out") == content


def test_a_failed_folder_import_leaves_nothing_protected(
    small_batches: Store, tmp_path: Path
) -> None:
    make_tree(tmp_path / "src")
    calls = 0

    def fail_late(done: int, total: int) -> None:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        small_batches.import_directory(tmp_path / "src", progress=fail_late)
    small_batches.gc()
    assert small_batches.blobs() == []
    assert files_under(small_batches.path / "tmp") == []
