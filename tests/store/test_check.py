"""The store check: every complete blob re-verified; corrupt, missing and changed ones reported."""

from __future__ import annotations

import os
from pathlib import Path

from ringdrop.store import ChangedReference, CheckReport, Store
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


def test_a_changed_reference_is_not_damage_and_is_forgotten(store: Store, tmp_path: Path) -> None:
    random_file(tmp_path / "ref", SIZE)
    info, _ = store.import_file(tmp_path / "ref", mode="reference")
    with (tmp_path / "ref").open("ab") as f:
        f.write(b"appended")
    report = store.check()
    assert report.ok
    assert report.changed == (ChangedReference(info.root, tmp_path / "ref", "edited"),)
    assert store.blob(info.root) is None
    assert store.check() == CheckReport(0, (), ())


def test_a_deleted_reference_is_not_damage_and_is_forgotten(store: Store, tmp_path: Path) -> None:
    random_file(tmp_path / "ref", SIZE)
    info, _ = store.import_file(tmp_path / "ref", mode="reference")
    (tmp_path / "ref").unlink()
    report = store.check()
    assert (report.ok, report.changed) == (
        True,
        (ChangedReference(info.root, tmp_path / "ref", "gone"),),
    )


def test_a_reference_edited_with_its_time_put_back_is_found_by_its_bytes(
    store: Store, tmp_path: Path
) -> None:
    random_file(tmp_path / "ref", SIZE)
    store.import_file(tmp_path / "ref", mode="reference")
    before = (tmp_path / "ref").stat()
    with (tmp_path / "ref").open("r+b") as f:
        f.seek(50_000)
        f.write(b"\x00\x00")
    os.utime(tmp_path / "ref", ns=(before.st_atime_ns, before.st_mtime_ns))
    report = store.check()
    assert (report.ok, [c.how for c in report.changed]) == (True, ["edited"])


def test_a_damaged_outboard_of_an_intact_reference_is_the_stores_damage(
    store: Store, tmp_path: Path
) -> None:
    random_file(tmp_path / "ref", SIZE)
    info, _ = store.import_file(tmp_path / "ref", mode="reference")
    store.layout.blob_outboard(info.root).write_bytes(b"\x00" * 64)
    report = store.check()
    assert ([p.kind for p in report.problems], report.changed) == (["corrupt"], ())
    assert store.blob(info.root) is not None


def test_corrupt_inline_bytes_are_reported(store: Store) -> None:
    info, _ = store.import_bytes(b"small blob")
    with store.db.transaction() as conn:
        conn.execute("UPDATE blobs SET data = ? WHERE root = ?", (b"small blub", info.root))
    assert [p.kind for p in store.check().problems] == ["corrupt"]
