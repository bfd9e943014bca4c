"""Importing files (copy and reference mode) and serving them through the validated encoder."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ringdrop.bao import ChunkRanges, Encoder, outboard_from_bytes
from ringdrop.errors import IntegrityError, NotFoundError, StoreError
from ringdrop.store import INLINE_MAX, Store
from tests.files import files_under, random_file

from .helpers import read_all

BIG = 200_000


def drain(encoder: Encoder) -> None:
    while encoder.read(1 << 16):
        pass


def test_copy_import_stores_the_file_and_serves_it(store: Store, tmp_path: Path) -> None:
    data = random_file(tmp_path / "a.bin", BIG)
    info, _ = store.import_file(tmp_path / "a.bin")
    assert info.root == outboard_from_bytes(data)[0]
    assert (info.size, info.location) == (BIG, "file")
    (tmp_path / "a.bin").unlink()
    assert read_all(store, info.root) == data


def test_import_tags_by_root_and_keeps_the_file_name_for_display(
    store: Store, tmp_path: Path
) -> None:
    random_file(tmp_path / "a.bin", BIG)
    info, tag = store.import_file(tmp_path / "a.bin")
    assert (tag.name, tag.root, tag.display_name, tag.format) == (
        info.root.hex(),
        info.root,
        "a.bin",
        "blob",
    )


def test_two_files_with_the_same_name_keep_separate_tags(store: Store, tmp_path: Path) -> None:
    random_file(tmp_path / "one" / "report.pdf", BIG)
    random_file(tmp_path / "two" / "report.pdf", BIG)
    first, _ = store.import_file(tmp_path / "one" / "report.pdf")
    second, _ = store.import_file(tmp_path / "two" / "report.pdf")
    assert {t.root for t in store.tags()} == {first.root, second.root}


def test_importing_the_same_content_twice_keeps_one_blob(store: Store, tmp_path: Path) -> None:
    data = random_file(tmp_path / "a.bin", BIG)
    (tmp_path / "b.bin").write_bytes(data)
    store.import_file(tmp_path / "a.bin")
    store.import_file(tmp_path / "b.bin")
    assert len(store.blobs()) == 1
    assert len(files_under(store.path / "blobs")) == 2
    assert files_under(store.path / "tmp") == []


def test_small_files_live_inline_in_the_database(store: Store, tmp_path: Path) -> None:
    data = random_file(tmp_path / "small", INLINE_MAX)
    info, _ = store.import_file(tmp_path / "small")
    assert info.location == "inline"
    assert files_under(store.path / "blobs") == []
    assert read_all(store, info.root) == data


def test_an_empty_file_round_trips(store: Store, tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    info, _ = store.import_file(tmp_path / "empty")
    assert info.size == 0
    assert read_all(store, info.root) == b""


def test_import_reports_progress_up_to_the_size(store: Store, tmp_path: Path) -> None:
    random_file(tmp_path / "a.bin", BIG)
    seen: list[tuple[int, int]] = []
    store.import_file(tmp_path / "a.bin", progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (BIG, BIG)
    dones = [d for d, _ in seen]
    assert dones == sorted(dones)


def test_a_progress_callback_that_raises_cancels_the_import(store: Store, tmp_path: Path) -> None:
    random_file(tmp_path / "a.bin", BIG)

    def cancel(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        store.import_file(tmp_path / "a.bin", progress=cancel)
    assert store.blobs() == []
    assert files_under(store.path / "tmp") == []


def test_importing_a_missing_file_is_not_found(store: Store, tmp_path: Path) -> None:
    with pytest.raises(NotFoundError, match="nothing-here"):
        store.import_file(tmp_path / "nothing-here")


def test_importing_a_folder_as_a_file_is_refused(store: Store, tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="not a regular file"):
        store.import_file(tmp_path)


def test_reference_import_keeps_no_copy(store: Store, tmp_path: Path) -> None:
    data = random_file(tmp_path / "a.bin", BIG)
    info, _ = store.import_file(tmp_path / "a.bin", mode="reference")
    assert (info.location, info.source) == ("reference", tmp_path / "a.bin")
    assert [p.suffix for p in files_under(store.path / "blobs")] == [".obao"]
    assert read_all(store, info.root) == data


def test_reference_with_a_changed_byte_is_not_served(store: Store, tmp_path: Path) -> None:
    random_file(tmp_path / "a.bin", BIG)
    info, _ = store.import_file(tmp_path / "a.bin", mode="reference")
    with (tmp_path / "a.bin").open("r+b") as f:
        f.seek(BIG // 2)
        f.write(b"\x00" if f.read(1) != b"\x00" else b"\x01")
    with pytest.raises(IntegrityError, match="changed"):
        store.encoder(info.root)


def test_reference_changed_behind_an_unchanged_mtime_fails_in_the_encoder(
    store: Store, tmp_path: Path
) -> None:
    path = tmp_path / "a.bin"
    random_file(path, BIG)
    info, _ = store.import_file(path, mode="reference")
    before = path.stat()
    with path.open("r+b") as f:
        f.seek(BIG - 100)
        f.write(b"changed!")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    encoder = store.encoder(info.root, ChunkRanges.all())
    with pytest.raises(IntegrityError, match="chunk group 12"):
        drain(encoder)


def test_a_deleted_reference_is_not_found(store: Store, tmp_path: Path) -> None:
    random_file(tmp_path / "a.bin", BIG)
    info, _ = store.import_file(tmp_path / "a.bin", mode="reference")
    (tmp_path / "a.bin").unlink()
    with pytest.raises(NotFoundError, match="moved or deleted"):
        store.encoder(info.root)


def test_a_copy_replaces_a_reference_of_the_same_content(store: Store, tmp_path: Path) -> None:
    data = random_file(tmp_path / "a.bin", BIG)
    store.import_file(tmp_path / "a.bin", mode="reference")
    info, _ = store.import_file(tmp_path / "a.bin")
    (tmp_path / "a.bin").unlink()
    assert info.location == "file"
    assert read_all(store, info.root) == data


def test_a_file_changing_during_import_is_refused(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    random_file(path, BIG)

    def append(done: int, total: int) -> None:
        with path.open("ab") as f:
            f.write(b"more")

    with pytest.raises(IntegrityError, match="changed while it was being imported"):
        store.import_file(path, progress=append)
    assert store.blobs() == []


def test_import_bytes_stores_data_under_its_root(store: Store) -> None:
    data = os.urandom(BIG)
    info, tag = store.import_bytes(data, tag="mine", display_name="shown")
    assert (tag.name, tag.display_name) == ("mine", "shown")
    assert store.read_bytes(info.root) == data


def test_read_bytes_refuses_a_corrupt_stored_file(store: Store) -> None:
    info, _ = store.import_bytes(os.urandom(BIG))
    with store.layout.blob_data(info.root).open("r+b") as f:
        f.write(b"\xff\xfe")
    with pytest.raises(IntegrityError, match="corrupt"):
        store.read_bytes(info.root)


def test_an_unknown_root_is_not_found(store: Store) -> None:
    with pytest.raises(NotFoundError):
        store.encoder(bytes(32))
    assert store.blob(bytes(32)) is None
