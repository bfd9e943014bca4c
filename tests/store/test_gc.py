"""Garbage collection: what tags, temp tags and downloads keep, and what it cleans up."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ringdrop.errors import StoreError
from ringdrop.store import Store
from tests.files import files_under, random_file

from .helpers import kill, read_all, spawn, stream_of

SIZE = 100_000


def test_tagged_content_is_kept_and_untagged_deleted(store: Store) -> None:
    kept, _ = store.import_bytes(os.urandom(SIZE), tag="keep")
    gone, _ = store.import_bytes(os.urandom(SIZE), tag="drop")
    store.delete_tag("drop")
    report = store.gc()
    assert (report.blobs_deleted, report.files_deleted) == (1, 2)
    assert report.bytes_freed >= SIZE
    assert store.blob(kept.root) is not None
    assert store.blob(gone.root) is None
    assert not store.layout.blob_data(gone.root).exists()


def test_collection_members_are_kept_through_the_collection_tag(
    store: Store, tmp_path: Path
) -> None:
    random_file(tmp_path / "src" / "a", SIZE)
    random_file(tmp_path / "src" / "sub" / "b", 10)
    imported = store.import_directory(tmp_path / "src")
    store.gc()
    members = [e.root for e in imported.collection.entries]
    assert all(store.blob(root) is not None for root in members)
    store.delete_tag(imported.tag.name)
    assert store.gc().blobs_deleted == 3
    assert store.blobs() == []


def test_temp_tags_protect_until_released(store: Store) -> None:
    info, _ = store.import_bytes(os.urandom(SIZE), tag="t")
    store.delete_tag("t")
    with store.temp_tag(info.root):
        store.gc()
        assert store.blob(info.root) is not None
    store.gc()
    assert store.blob(info.root) is None


def test_temp_tags_of_a_killed_process_are_dropped(store: Store) -> None:
    info, _ = store.import_bytes(os.urandom(SIZE), tag="t")
    store.delete_tag("t")
    holder = spawn("hold-temp-tag", store.path, info.root.hex())
    store.gc()
    assert store.blob(info.root) is not None
    kill(holder)
    assert store.gc().temp_tags_dropped == 1
    assert store.blob(info.root) is None
    assert list((store.path / "leases").iterdir()) == []


def test_a_download_in_progress_is_never_collected(store: Store) -> None:
    data = os.urandom(SIZE)
    root, stream = stream_of(data)
    with store.partial(root) as partial:
        partial.writer().write(stream[: len(stream) // 2])
        partial.flush()
        store.gc()
        _, rest = stream_of(data, partial.missing())
        writer = partial.writer()
        writer.write(rest)
        writer.finish()
        partial.promote(tag="got")
    assert read_all(store, root) == data


def test_a_download_held_by_another_process_is_never_collected(store: Store) -> None:
    root, _ = stream_of(os.urandom(SIZE))
    holder = spawn("hold-partial", store.path, root.hex(), SIZE)
    try:
        store.gc()
        assert [p.root for p in store.partials()] == [root]
    finally:
        kill(holder)
    store.gc()
    assert store.partials() == []
    assert list((store.path / "partial").iterdir()) == []


def test_an_abandoned_untagged_download_is_collected(store: Store) -> None:
    root, stream = stream_of(os.urandom(SIZE))
    with store.partial(root) as partial:
        partial.writer().write(stream[:50_000])
    assert store.gc().partials_deleted == 1
    assert list((store.path / "partial").iterdir()) == []


def test_a_tagged_download_survives_gc_for_resuming(store: Store) -> None:
    root, stream = stream_of(os.urandom(SIZE))
    store.set_tag("incoming", root)
    with store.partial(root) as partial:
        partial.writer().write(stream[:50_000])
    store.gc()
    assert [p.root for p in store.partials()] == [root]


def test_gc_never_deletes_the_file_behind_a_reference(store: Store, tmp_path: Path) -> None:
    data = random_file(tmp_path / "mine.bin", SIZE)
    _, tag = store.import_file(tmp_path / "mine.bin", mode="reference")
    store.delete_tag(tag.name)
    assert store.gc().blobs_deleted == 1
    assert (tmp_path / "mine.bin").read_bytes() == data
    assert files_under(store.path / "blobs") == []


def test_stray_files_from_a_crash_are_cleaned_up(store: Store) -> None:
    info, _ = store.import_bytes(os.urandom(SIZE), tag="keep")
    stray_blob = store.layout.blob_data(bytes(31) + b"\x01")
    stray_blob.parent.mkdir(exist_ok=True)
    stray_blob.write_bytes(b"orphan")
    staging = store.layout.new_staging()
    staging.data.write_bytes(b"half an import")
    stray_partial = store.layout.partial_paths(bytes(32))
    stray_partial.data.write_bytes(b"x")
    report = store.gc()
    assert report.files_deleted == 3
    assert files_under(store.path / "tmp") == []
    assert files_under(store.path / "partial") == []
    assert files_under(store.path / "blobs") == [
        store.layout.blob_data(info.root),
        store.layout.blob_outboard(info.root),
    ]


def test_deletes_recorded_before_a_crash_are_finished(store: Store) -> None:
    path = store.layout.blob_data(bytes(32))
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(b"was being deleted")
    with store.db.transaction() as conn:
        conn.execute("INSERT INTO pending_deletes VALUES (?)", (store.layout.relative(path),))
    store.gc()
    assert not path.exists()


def test_an_import_reclaims_a_path_whose_delete_was_pending(store: Store) -> None:
    data = os.urandom(SIZE)
    info, _ = store.import_bytes(data, tag="t")
    store.delete_tag("t")
    with store.db.transaction() as conn:
        conn.execute("DELETE FROM blobs WHERE root = ?", (info.root,))
        conn.executemany(
            "INSERT INTO pending_deletes VALUES (?)",
            [(store.layout.relative(store.layout.blob_data(info.root)),)],
        )
    store.import_bytes(data, tag="again")
    store.gc()
    assert store.read_bytes(info.root) == data


def test_gc_stops_if_a_tagged_collection_cannot_be_read(store: Store, tmp_path: Path) -> None:
    for i in range(400):
        random_file(tmp_path / "src" / f"file-{i:03d}", 10)
    imported = store.import_directory(tmp_path / "src")
    assert imported.info.location == "file"
    with store.layout.blob_data(imported.info.root).open("r+b") as f:
        f.write(b"rot")
    with pytest.raises(StoreError, match="nothing was deleted"):
        store.gc()
    assert len(store.blobs()) == 401
