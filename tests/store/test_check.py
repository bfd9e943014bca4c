"""The store check: every complete blob re-verified; corrupt, missing and changed ones reported."""

from __future__ import annotations

import os
from pathlib import Path

from ringdrop.store import Store
from tests.files import random_file

SIZE = 100_000


def test_a_healthy_store_checks_clean(store: Store, tmp_path: Path) -> None:
    store.import_bytes(os.urandom(SIZE))
    store.import_bytes(b"small")
    random_file(tmp_path / "ref", SIZE)
    store.import_file(tmp_path / "ref", mode="reference")
    seen: list[int] = []
    report = store.check(progress=lambda done, total: seen.append(done))
    assert report.ok
    assert report.checked == 3
    assert seen[-1] == 2 * SIZE + 5


def test_a_flipped_byte_is_reported_corrupt(store: Store) -> None:
    info, _ = store.import_bytes(os.urandom(SIZE))
    with store.layout.blob_data(info.root).open("r+b") as f:
        f.seek(50_000)
        f.write(b"\x00\x00")
    [problem] = store.check().problems
    assert (problem.root, problem.kind) == (info.root, "corrupt")
    assert "16384 of 100000 bytes" in problem.message


def test_a_damaged_outboard_is_reported_corrupt(store: Store) -> None:
    info, _ = store.import_bytes(os.urandom(SIZE))
    store.layout.blob_outboard(info.root).write_bytes(b"\x00" * 64)
    assert [p.kind for p in store.check().problems] == ["corrupt"]


def test_a_deleted_file_is_reported_missing(store: Store) -> None:
    info, _ = store.import_bytes(os.urandom(SIZE))
    store.layout.blob_data(info.root).unlink()
    assert [p.kind for p in store.check().problems] == ["missing"]


def test_a_changed_reference_is_reported_changed(store: Store, tmp_path: Path) -> None:
    random_file(tmp_path / "ref", SIZE)
    store.import_file(tmp_path / "ref", mode="reference")
    with (tmp_path / "ref").open("ab") as f:
        f.write(b"appended")
    assert [p.kind for p in store.check().problems] == ["changed"]


def test_corrupt_inline_bytes_are_reported(store: Store) -> None:
    info, _ = store.import_bytes(b"small blob")
    with store.db.transaction() as conn:
        conn.execute("UPDATE blobs SET data = ? WHERE root = ?", (b"small blub", info.root))
    assert [p.kind for p in store.check().problems] == ["corrupt"]
