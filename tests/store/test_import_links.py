"""A folder whose entries change between the scan and the read: a file or a folder swapped for
a symbolic link (a local user who can write into a shared folder, aiming at a secret elsewhere)
is refused, naming it, and nothing of the link's target enters the store.

The swap happens at a real point of the import: the progress callback it calls after reading
the first file, so the second is swapped after the scan and before it is opened."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ringdrop.bao import outboard_from_bytes
from ringdrop.errors import IntegrityError, UnsafePathError
from ringdrop.store import ImportMode, Store
from tests.files import pseudo_random, write

SECRET = pseudo_random(40_000, seed=1)  # more than one chunk group: a file blob, not inline
SECRET_ROOT = outboard_from_bytes(SECRET)[0]


def swap_for_link(path: Path, target: Path) -> None:
    """Replaces `path` (a file or a folder) by a symbolic link to `target`, atomically."""
    link = path.with_name(path.name + ".link")
    link.symlink_to(target)
    if path.is_dir():
        path.rename(path.with_name(path.name + ".old"))
    os.replace(link, path)


def once(action: Callable[[], None]) -> Callable[[int, int], None]:
    """A progress callback that runs `action` the first time it is called."""
    done = False

    def progress(_done: int, _total: int) -> None:
        nonlocal done
        if not done:
            done = True
            action()

    return progress


def nothing_of_the_secret(store: Store) -> bool:
    return store.blob(SECRET_ROOT) is None and all(t.root != SECRET_ROOT for t in store.tags())


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    return write(tmp_path / "home" / ".ssh" / "id_ed25519", SECRET)


@pytest.mark.parametrize("mode", ["copy", "reference"])
def test_a_file_swapped_for_a_link_after_the_scan_is_refused(
    store: Store, tmp_path: Path, secret: Path, mode: ImportMode
) -> None:
    folder = tmp_path / "shared"
    write(folder / "a.txt", b"read first")
    victim = write(folder / "b.txt", pseudo_random(len(SECRET), seed=2))

    with pytest.raises(UnsafePathError, match=r"b\.txt"):
        store.import_directory(
            folder, mode=mode, progress=once(lambda: swap_for_link(victim, secret))
        )

    assert victim.is_symlink()  # the swap happened, and was refused
    assert nothing_of_the_secret(store)
    assert store.tags() == []


@pytest.mark.parametrize("mode", ["copy", "reference"])
def test_a_folder_swapped_for_a_link_after_the_scan_is_refused(
    store: Store, tmp_path: Path, secret: Path, mode: ImportMode
) -> None:
    folder = tmp_path / "shared"
    write(folder / "a.txt", b"read first")
    write(folder / "keys" / "id_ed25519", pseudo_random(len(SECRET), seed=3))

    with pytest.raises(UnsafePathError, match="keys"):
        store.import_directory(
            folder,
            mode=mode,
            progress=once(lambda: swap_for_link(folder / "keys", secret.parent)),
        )

    assert (folder / "keys").is_symlink()
    assert nothing_of_the_secret(store)


def test_a_file_replaced_by_another_after_the_scan_is_refused(
    store: Store, tmp_path: Path, secret: Path
) -> None:
    folder = tmp_path / "shared"
    write(folder / "a.txt", b"read first")
    victim = write(folder / "b.txt", b"scanned")
    stranger = write(tmp_path / "other.txt", b"not scanned")

    with pytest.raises(IntegrityError, match=r"b\.txt"):
        store.import_directory(folder, progress=once(lambda: os.replace(stranger, victim)))

    assert store.tags() == []


def test_a_link_named_on_its_own_is_shared_as_the_file_it_names(
    store: Store, tmp_path: Path, secret: Path
) -> None:
    # The user chose the link: it is followed, once, when the import opens it.
    link = tmp_path / "key-link"
    link.symlink_to(secret)
    info, _ = store.import_file(link)
    assert info.root == SECRET_ROOT


@pytest.mark.parametrize("mode", ["copy", "reference"])
def test_a_single_file_swapped_for_a_link_during_its_import_is_not_read_through_it(
    store: Store, tmp_path: Path, secret: Path, mode: ImportMode
) -> None:
    original = pseudo_random(20 << 20, seed=4)  # several 8 MiB copy buffers: progress between
    path = write(tmp_path / "report.pdf", original)
    progress = once(lambda: swap_for_link(path, secret))
    if mode == "copy":
        # Everything is read from the file opened first: what is stored is that file.
        info, _ = store.import_file(path, mode=mode, progress=progress)
        assert info.root == outboard_from_bytes(original)[0]
    else:
        # A reference is served by its name, which no longer names the file that was read.
        with pytest.raises(IntegrityError, match=r"report\.pdf"):
            store.import_file(path, mode=mode, progress=progress)
    assert path.is_symlink()
    assert nothing_of_the_secret(store)
