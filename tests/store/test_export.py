"""Export: atomic, verified, no overwriting unless forced, space checked, never outside dest."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ringdrop.errors import DiskFullError, ExistsError, IntegrityError, UnsafePathError
from ringdrop.store import Store
from ringdrop.store.collection import MAGIC_V1
from tests.files import files_under, random_file

SIZE = 100_000


def entry(root: bytes, size: int, name: bytes) -> bytes:
    return root + size.to_bytes(8, "little") + len(name).to_bytes(2, "little") + name


def test_export_writes_the_blob_and_leaves_no_temporary_file(store: Store, tmp_path: Path) -> None:
    data = random_file(tmp_path / "a.bin", SIZE)
    info, _ = store.import_file(tmp_path / "a.bin")
    out = store.export(info.root, tmp_path / "out" / "copy.bin").path
    assert out.read_bytes() == data
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["copy.bin"]


def test_exports_of_one_content_to_two_names_in_one_folder_do_not_meet(
    store: Store, tmp_path: Path
) -> None:
    """The second export starts while the first is writing (from its progress callback):
    each has its own temporary file, so neither removes the other's."""
    data = random_file(tmp_path / "a.bin", 3 * 2**20)
    info, _ = store.import_file(tmp_path / "a.bin")
    with Store.open(tmp_path / "other") as other:
        other.import_file(tmp_path / "a.bin")
        second: list[Path] = []

        def start_the_second(done: int, total: int) -> None:
            if not second and 0 < done < total:
                second.append(other.export(info.root, tmp_path / "out" / "two.bin").path)

        first = store.export(info.root, tmp_path / "out" / "one.bin", progress=start_the_second)
    assert second, "the first export reported no progress before its end"
    assert first.path.read_bytes() == data
    assert second[0].read_bytes() == data
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["one.bin", "two.bin"]


def test_export_refuses_to_overwrite_unless_forced(store: Store, tmp_path: Path) -> None:
    data = random_file(tmp_path / "a.bin", SIZE)
    info, _ = store.import_file(tmp_path / "a.bin")
    (tmp_path / "taken").write_bytes(b"mine")
    with pytest.raises(ExistsError, match="already exists"):
        store.export(info.root, tmp_path / "taken")
    assert (tmp_path / "taken").read_bytes() == b"mine"
    store.export(info.root, tmp_path / "taken", existing="force")
    assert (tmp_path / "taken").read_bytes() == data


def test_export_checks_free_space_first(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    random_file(tmp_path / "a.bin", SIZE)
    info, _ = store.import_file(tmp_path / "a.bin")
    real = os.statvfs(tmp_path)

    class Tiny:
        f_bavail, f_frsize = 10, real.f_frsize

    monkeypatch.setattr("ringdrop.store.files.os.statvfs", lambda _: Tiny)
    with pytest.raises(DiskFullError, match=r"needs 97\.7 KiB but only .* is free"):
        store.export(info.root, tmp_path / "out.bin")
    assert not (tmp_path / "out.bin").exists()


def test_export_of_corrupt_content_writes_nothing(store: Store, tmp_path: Path) -> None:
    random_file(tmp_path / "a.bin", SIZE)
    info, _ = store.import_file(tmp_path / "a.bin")
    with store.layout.blob_data(info.root).open("r+b") as f:
        f.write(b"rot")
    with pytest.raises(IntegrityError):
        store.export(info.root, tmp_path / "out" / "a.bin")
    assert list((tmp_path / "out").iterdir()) == []


def test_export_reports_progress(store: Store, tmp_path: Path) -> None:
    random_file(tmp_path / "a.bin", SIZE)
    info, _ = store.import_file(tmp_path / "a.bin")
    seen: list[tuple[int, int]] = []
    store.export(info.root, tmp_path / "o", progress=lambda d, t: seen.append((d, t)))
    assert seen[-1] == (SIZE, SIZE)


def test_collection_export_refuses_an_existing_folder_or_replaces_it_whole(
    store: Store, tmp_path: Path
) -> None:
    random_file(tmp_path / "src" / "a", 10)
    random_file(tmp_path / "src" / "sub" / "b", SIZE)
    imported = store.import_directory(tmp_path / "src")
    random_file(tmp_path / "out" / "sub" / "b", 5)
    random_file(tmp_path / "out" / "mine", 5)
    with pytest.raises(ExistsError, match="already exists"):
        store.export_collection(imported.info.root, tmp_path / "out")
    assert not (tmp_path / "out" / "a").exists()
    store.export_collection(imported.info.root, tmp_path / "out", existing="force")
    assert (tmp_path / "out" / "sub" / "b").stat().st_size == SIZE
    assert not (tmp_path / "out" / "mine").exists(), "force replaces the folder, not its files"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ringdrop-")]


def test_collection_export_does_not_follow_a_planted_symlink(store: Store, tmp_path: Path) -> None:
    random_file(tmp_path / "src" / "sub" / "payload", SIZE)
    imported = store.import_directory(tmp_path / "src")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").symlink_to(tmp_path / "elsewhere")
    store.export_collection(imported.info.root, tmp_path / "out", existing="force")
    assert list((tmp_path / "elsewhere").iterdir()) == []
    assert not (tmp_path / "out" / "sub").is_symlink()
    assert (tmp_path / "out" / "sub" / "payload").stat().st_size == SIZE


@pytest.mark.parametrize("name", [b"../escaped", b"/tmp/absolute", b"a/../../escaped"])
def test_a_hostile_collection_is_refused_and_writes_nothing(
    store: Store, tmp_path: Path, name: bytes
) -> None:
    member, _ = store.import_bytes(b"payload")
    hostile = MAGIC_V1 + (1).to_bytes(4, "little") + entry(member.root, 7, name)
    collection, _ = store.import_bytes(hostile, format="collection")
    (tmp_path / "dest").mkdir()
    with pytest.raises(UnsafePathError):
        store.export_collection(collection.root, tmp_path / "dest" / "got")
    assert files_under(tmp_path / "dest") == []
    assert not (tmp_path / "escaped").exists()
    assert not Path("/tmp/absolute").exists()
