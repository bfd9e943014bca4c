"""Exports that hand the store's file over instead of copying it, metadata restored on export,
numbered names, and exports interrupted at any point (in-process and by SIGKILL)."""

from __future__ import annotations

import json
import os
import random
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest

from ringdrop.errors import IntegrityError, NotFoundError, StoreError
from ringdrop.store import ImportedCollection, Store
from ringdrop.store.collection import Collection
from ringdrop.store.schema import MIGRATIONS as STORE_MIGRATIONS
from tests.ci import skip_unless_ci
from tests.files import mounted, random_file, tree

from .helpers import kill, read_all, read_line, spawn

SIZE = 300_000


def no_leftovers(folder: Path) -> bool:
    return not [p for p in folder.iterdir() if p.name.startswith(".ringdrop-")]


def test_a_handed_over_file_is_the_stores_own_data_file(store: Store, tmp_path: Path) -> None:
    data = random_file(tmp_path / "a.bin", SIZE)
    info, _ = store.import_file(tmp_path / "a.bin")
    inode = store.layout.blob_data(info.root).stat().st_ino
    result = store.export(info.root, tmp_path / "out.bin", keep=False)
    assert result.path.stat().st_ino == inode, "moved, not copied"
    assert (result.moved, result.copied) == (SIZE, 0)
    assert result.path.stat().st_nlink == 1
    assert not store.layout.blob_data(info.root).exists()
    blob = store.blob(info.root)
    assert blob is not None
    assert blob.location == "reference"
    assert blob.source == tmp_path / "out.bin"
    assert read_all(store, info.root) == data, "re-sharing serves it from the exported file"
    assert store.check().ok
    assert no_leftovers(tmp_path)


def test_an_edited_handed_over_file_is_reported_and_not_served(
    store: Store, tmp_path: Path
) -> None:
    random_file(tmp_path / "a.bin", SIZE)
    info, _ = store.import_file(tmp_path / "a.bin")
    out = store.export(info.root, tmp_path / "out.bin", keep=False).path
    with out.open("r+b") as f:
        f.seek(1000)
        f.write(b"edited")
    with pytest.raises(IntegrityError, match="changed"):
        store.encoder(info.root)
    moved = out.with_name("moved.bin")
    out.rename(moved)
    with pytest.raises(NotFoundError, match="moved or deleted"):
        store.encoder(info.root)
    moved.rename(out)
    report = store.check()
    assert report.ok, "the user's own copy, edited: not damage to the store"
    assert [(c.root, c.path, c.how) for c in report.changed] == [(info.root, out, "edited")]
    assert store.blob(info.root) is None
    assert store.forget_broken_references([info.root]) == 0


def test_keep_leaves_the_store_its_own_copy(store: Store, tmp_path: Path) -> None:
    data = random_file(tmp_path / "a.bin", SIZE)
    info, _ = store.import_file(tmp_path / "a.bin")
    result = store.export(info.root, tmp_path / "out.bin", keep=True)
    assert result.path.read_bytes() == data
    assert result.path.stat().st_ino != store.layout.blob_data(info.root).stat().st_ino
    blob = store.blob(info.root)
    assert blob is not None
    assert blob.location == "file"


def test_a_folder_is_handed_over_member_by_member_with_its_metadata(
    store: Store, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    content = {
        "run.sh": b"#!/bin/sh\necho hi\n" + os.urandom(SIZE),
        "docs/a.txt": os.urandom(SIZE),
        "docs/copy-of-a.txt": b"",
        "small.txt": b"inline",
    }
    content["docs/copy-of-a.txt"] = content["docs/a.txt"]
    for name, data in content.items():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
    (src / "run.sh").chmod(0o755)
    (src / "docs" / "a.txt").chmod(0o600)
    when = 1_500_000_000_123_456_789
    for name in content:
        os.utime(src / name, ns=(when, when))
    imported = store.import_directory(src)
    inodes = {e.name: store.layout.blob_data(e.root).stat().st_ino for e in
              imported.collection.entries if e.size > 16384}  # fmt: skip
    result = store.export_collection(imported.info.root, tmp_path / "got", keep=False)
    out = result.path
    assert out == tmp_path / "got"
    assert tree(out) == content
    assert (out / "run.sh").stat().st_ino == inodes["run.sh"]
    a, copy = (out / "docs" / "a.txt").stat(), (out / "docs" / "copy-of-a.txt").stat()
    assert {a.st_ino, copy.st_ino} & {inodes["docs/a.txt"]}, "one of the two was handed over"
    assert a.st_ino != copy.st_ino, "editing one copy must not change the other"
    for name in content:
        assert (out / name).stat().st_mtime_ns == when, name
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((out / "run.sh").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((out / "docs" / "a.txt").stat().st_mode) == 0o666 & ~umask
    assert store.check().ok
    assert no_leftovers(tmp_path)
    assert list(store.layout.blobs.rglob("*.data")) == []


def test_an_old_collection_without_metadata_still_exports(store: Store, tmp_path: Path) -> None:
    member, _ = store.import_bytes(b"old content")
    old = Collection.decode(
        b"RDCOLL\x00\x01" + (1).to_bytes(4, "little") + member.root + (11).to_bytes(8, "little")
        + (5).to_bytes(2, "little") + b"a.txt"
    )  # fmt: skip
    assert old.entries[0].mtime_ns is None
    info, _ = store.import_bytes(
        b"RDCOLL\x00\x01" + (1).to_bytes(4, "little") + member.root + (11).to_bytes(8, "little")
        + (5).to_bytes(2, "little") + b"a.txt",
        format="collection",
    )  # fmt: skip
    before = time.time_ns()
    out = store.export_collection(info.root, tmp_path / "old").path
    assert (out / "a.txt").read_bytes() == b"old content"
    assert (out / "a.txt").stat().st_mtime_ns >= before - 10**9


def test_rename_writes_numbered_names(store: Store, tmp_path: Path) -> None:
    data = random_file(tmp_path / "src" / "report.pdf", SIZE)
    info, _ = store.import_file(tmp_path / "src" / "report.pdf")
    (tmp_path / "report.pdf").write_bytes(b"mine")
    first = store.export(info.root, tmp_path / "report.pdf", existing="rename").path
    second = store.export(info.root, tmp_path / "report.pdf", existing="rename").path
    assert (first.name, second.name) == ("report (1).pdf", "report (2).pdf")
    assert first.read_bytes() == second.read_bytes() == data
    assert (tmp_path / "report.pdf").read_bytes() == b"mine"
    folder = store.import_directory(tmp_path / "src")
    again = store.export_collection(folder.info.root, tmp_path / "src", existing="rename").path
    assert again.name == "src (1)"
    assert tree(again) == {"report.pdf": data}


@pytest.fixture
def two_files(store: Store, tmp_path: Path) -> ImportedCollection:
    """`src`, a folder of two files, imported."""
    random_file(tmp_path / "src" / "a.bin", SIZE)
    random_file(tmp_path / "src" / "b.bin", SIZE)
    return store.import_directory(tmp_path / "src")


def interrupted(*args: object, **kwargs: object) -> NoReturn:
    raise KeyboardInterrupt


def export_stopped_at(step: str, store: Store, root: bytes, dest: Path) -> None:
    """Exports `root` to `dest`, with Ctrl-C in place of the export's function `step`."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(f"ringdrop.store.export.{step}", interrupted)
        with pytest.raises(KeyboardInterrupt):
            store.export_collection(root, dest, keep=False)


def test_an_export_stopped_after_the_rename_is_finished_by_the_next(
    store: Store, two_files: ImportedCollection, tmp_path: Path
) -> None:
    imported = two_files
    export_stopped_at("_release", store, imported.info.root, tmp_path / "got")
    assert tree(tmp_path / "got") == tree(tmp_path / "src"), "in place, whole"
    with pytest.raises(StoreError, match="already exists"):
        store.export_collection(imported.info.root, tmp_path / "got", keep=False)
    assert store.finish_export(imported.info.root) is None, "the failed call finished it"
    for entry in imported.collection.entries:
        blob = store.blob(entry.root)
        assert blob is not None
        assert blob.location == "reference"
    assert store.check().ok
    assert list(store.layout.blobs.rglob("*.data")) == []


def test_an_export_stopped_before_the_rename_leaves_nothing_in_the_way(
    store: Store, two_files: ImportedCollection, tmp_path: Path
) -> None:
    imported = two_files
    export_stopped_at("_rename_new", store, imported.info.root, tmp_path / "got")
    assert not (tmp_path / "got").exists()
    assert no_leftovers(tmp_path)
    store.export_collection(imported.info.root, tmp_path / "got", keep=False)
    assert tree(tmp_path / "got") == tree(tmp_path / "src")


def test_an_export_interrupted_under_an_older_version_is_finished_from_its_journal_file(
    tmp_path: Path,
) -> None:
    """Before step 9 of the schema the journal was a file, exports/<root hex>.json; opening the
    store takes it into the database, and the next export finishes what it describes."""
    random_file(tmp_path / "src" / "a.bin", SIZE)
    random_file(tmp_path / "src" / "b.bin", SIZE)
    dest = tmp_path / "got"
    with Store(tmp_path / "store", STORE_MIGRATIONS[:1]) as store:  # as an older version had it
        imported = store.import_directory(tmp_path / "src")
        # What the older version left when killed right after the rename: the store's files
        # linked under the real name, the store not yet told, the journal a file.
        dest.mkdir()
        for entry in imported.collection.entries:
            os.link(store.layout.blob_data(entry.root), dest / entry.name)
    root = imported.info.root
    journal = tmp_path / "store" / "exports" / f"{root.hex()}.json"
    journal.parent.mkdir()
    record = {
        "target": str(dest),
        "temp": str(tmp_path / f".ringdrop-{root.hex()[:16]}-00000000.part"),
        "old": None,
        "handover": [[e.root.hex(), e.name] for e in imported.collection.entries],
    }
    journal.write_text(json.dumps(record))

    with Store.open(tmp_path / "store") as store:
        assert not journal.parent.exists(), "taken into the database, the file goes"
        assert store.finish_export(root) == dest
        for entry in imported.collection.entries:
            blob = store.blob(entry.root)
            assert blob is not None
            assert (blob.location, blob.source) == ("reference", dest / entry.name)
        assert list(store.layout.blobs.rglob("*.data")) == []
        assert store.check().ok
        assert store.finish_export(root) is None, "finished once"
    assert tree(dest) == tree(tmp_path / "src")


# Where a kill lands for certain: half the files in the temporary folder, all of them in but the
# small ones not yet synced, the journal written but nothing renamed, the result renamed but the
# store not yet told.
KILL_POINTS = ["_fill_one:30", "_sync_small", "_rename_new", "_release"]


@pytest.mark.slow
@pytest.mark.parametrize("keep", [False, True])
def test_a_killed_export_is_finished_by_the_next_without_force(tmp_path: Path, keep: bool) -> None:
    """SIGKILL at known points of a folder export, then at random instants; each time, the next
    export (or the journal it finds) completes it, the store stays whole, and nothing is left
    in the way."""
    rng = random.Random(15 + keep)
    src = tmp_path / "src"
    for i in range(60):
        random_file(src / f"d{i % 4}" / f"f{i}.bin", rng.choice([100, 20_000, 200_000]))
    expected = tree(src)
    # About how long the whole export takes here (fsyncs included), so random kills land
    # anywhere in it, now and then after it (the known points are what must be interrupted).
    most = 1.2 if keep else 0.4
    for iteration, point in enumerate([*KILL_POINTS, *[None] * 8]):
        store_path = tmp_path / f"store{iteration}"
        with Store.open(store_path) as store:
            root = store.import_directory(src).info.root
        dest = tmp_path / f"got{iteration}"
        mode = "keep" if keep else "move"
        if point is None:
            proc = spawn("export", store_path, root.hex(), dest, mode)
            time.sleep(rng.uniform(0, most))
        else:
            proc = spawn("export", store_path, root.hex(), dest, mode, point)
            stopped = read_line(proc)
            assert stopped == f"at {point.partition(':')[0]}\n", (point, stopped)
        lines = kill(proc)
        with Store.open(store_path) as store:
            finished = store.finish_export(root)
            if finished is None and "exported" not in lines:
                assert not dest.exists(), "a result under the real name must be whole"
                store.export_collection(root, dest, keep=keep)
            assert tree(dest) == expected, point
            assert no_leftovers(tmp_path)
            report = store.check()
            assert report.ok, report.problems
            for blob in store.blobs():
                assert read_all(store, blob.root) is not None


@pytest.fixture
def reflink_fs(tmp_path: Path) -> Iterator[Path]:
    """An XFS file system in a loop-mounted image (XFS has reflinks); skipped where the tools
    or the permission to mount are missing."""
    if shutil.which("mkfs.xfs") is None:
        skip_unless_ci("mkfs.xfs is not installed (xfsprogs)")
    image, mount = tmp_path / "xfs.img", tmp_path / "xfs"
    with image.open("wb") as f:
        f.truncate(320 << 20)
    mount.mkdir()
    made = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(image)], capture_output=True)
    if made.returncode != 0:
        skip_unless_ci(f"mkfs.xfs failed: {made.stderr.decode().strip()}")
    with mounted(mount, "-o", "loop", str(image)):
        yield mount


def test_where_the_file_system_clones_the_store_keeps_its_copy_for_free(
    reflink_fs: Path,
) -> None:
    size = 32 << 20
    data = random_file(reflink_fs / "src" / "big.bin", size)
    with Store.open(reflink_fs / "store") as store:
        info, _ = store.import_file(reflink_fs / "src" / "big.bin")
        (reflink_fs / "src" / "big.bin").unlink()
        before = os.statvfs(reflink_fs)
        result = store.export(info.root, reflink_fs / "out.bin", keep=False)
        after = os.statvfs(reflink_fs)
        assert (result.moved, result.copied) == (size, 0)
        assert result.path.read_bytes() == data
        blob = store.blob(info.root)
        assert blob is not None
        assert blob.location == "file", "the store keeps its own copy: edits cannot touch it"
        assert result.path.stat().st_ino != store.layout.blob_data(info.root).stat().st_ino
        used = (before.f_bfree - after.f_bfree) * before.f_frsize
        assert used < size // 8, f"a clone shares the data's extents ({used} bytes used)"
        with result.path.open("r+b") as f:
            f.write(b"edited")
        assert store.check().ok
        assert read_all(store, info.root) == data


def test_a_folder_exported_where_the_file_system_clones_is_cloned_member_by_member(
    reflink_fs: Path,
) -> None:
    size = 8 << 20
    src = reflink_fs / "src"
    for name in ("a.bin", "sub/b.bin", "sub/deeper/c.bin"):
        random_file(src / name, size)
    random_file(src / "small.txt", 100)  # inline: written out from the database
    expected = tree(src)
    with Store.open(reflink_fs / "store") as store:
        imported = store.import_directory(src)
        shutil.rmtree(src)
        before = os.statvfs(reflink_fs)
        result = store.export_collection(imported.info.root, reflink_fs / "out", keep=False)
        after = os.statvfs(reflink_fs)
        assert (result.moved, result.copied) == (3 * size, 100)
        assert tree(result.path) == expected
        used = (before.f_bfree - after.f_bfree) * before.f_frsize
        assert used < size // 2, f"clones share the data's extents ({used} bytes used)"
        for entry in imported.collection.entries:
            blob = store.blob(entry.root)
            assert blob is not None
            if blob.location == "inline":
                continue
            assert blob.location == "file", "the store keeps its own copies"
            exported = result.path / entry.name
            assert exported.stat().st_ino != store.layout.blob_data(entry.root).stat().st_ino
        assert store.check().ok


def test_forcing_an_export_over_the_file_a_reference_names_keeps_it_served(
    store: Store, tmp_path: Path
) -> None:
    data = random_file(tmp_path / "a.bin", SIZE)
    info, _ = store.import_file(tmp_path / "a.bin")
    out = store.export(info.root, tmp_path / "out.bin", keep=False).path
    store.export(info.root, out, existing="force", keep=False)
    assert out.read_bytes() == data
    assert store.check().ok
    assert read_all(store, info.root) == data
