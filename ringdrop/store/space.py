"""Free space: how much room a receive, a download and an export need on which file system, and
the refusal, before the work starts, when it is not there. Every check of free space is here."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from ringdrop.bao import outboard_size
from ringdrop.errors import DiskFullError
from ringdrop.store.blobs import BlobInfo
from ringdrop.store.files import human_size

__all__ = [
    "check_download",
    "check_export",
    "check_partial",
    "check_receive",
    "export_needs",
    "same_file_system",
]


def check_receive(
    data_dir: Path, dest: Path, size: int, *, started: bool, keep: bool, name: str
) -> None:
    """Fails before anything is fetched when receiving `size` bytes (the sender's word) into
    `dest` cannot fit, asking each file system for what the receive will write there.

    The download goes to the data directory: all of it, or nothing more once it has `started`
    (what it still lacks is checked with real sizes by `check_download` and `check_partial`).
    The export needs nothing more on the same file system, where the store's files are handed
    over, unless `keep`; on another one, the whole size. `check_export` checks again with the
    real sizes.
    """
    download = 0 if started else size
    folder = _existing_folder(dest.absolute().parent)
    if same_file_system(folder, data_dir):
        _ensure(folder, download + (size if keep else 0), f"receiving {name}")
        return
    _ensure(data_dir, download, f"downloading {name}")
    _ensure(folder, size, f"writing {name}")


def check_download(data_dir: Path, sizes: Iterable[int], name: str) -> None:
    """The members a folder's download still lacks, by their verified sizes, fit in the data
    directory."""
    _ensure(data_dir, sum(sizes), f"downloading {name}")


def check_partial(folder: Path, size: int, verified: int, root: bytes) -> None:
    """A download of `size` bytes of which `verified` are here can grow to its size: the data
    it lacks, and its outboard."""
    _ensure(folder, size - verified + outboard_size(size), f"downloading {root.hex()}")


def check_export(store: Path, infos: Sequence[BlobInfo], dest: Path, *, keep: bool) -> None:
    """The blobs `infos`, exported to `dest`, fit in its folder (`store` is the folder of the
    store's files)."""
    folder = dest.parent
    _ensure(folder, export_needs(store, infos, folder, keep=keep), f"exporting to {dest}")


def export_needs(store: Path, infos: Sequence[BlobInfo], folder: Path, *, keep: bool) -> int:
    """Free space an export into `folder` needs: what it must copy rather than hand over. A
    store file on the same file system is handed over unless `keep` (once, for a root that
    appears twice); inline blobs, references and everything on another file system are
    written."""
    same = same_file_system(folder, store)
    seen: set[bytes] = set()
    needed = 0
    for info in infos:
        handed_over = info.location == "file" and same and not keep and info.root not in seen
        seen.add(info.root)
        needed += 0 if handed_over else info.size
    return needed


def same_file_system(a: Path, b: Path) -> bool:
    """Whether a file under `a` can be hard-linked under `b`."""
    return os.stat(a).st_dev == os.stat(b).st_dev


def _ensure(folder: Path, needed: int, what: str) -> None:
    """Raises DiskFullError if `folder`'s file system lacks `needed` bytes."""
    st = os.statvfs(folder)
    free = st.f_bavail * st.f_frsize
    if needed > free:
        raise DiskFullError(
            f"{what} needs {human_size(needed)} but only {human_size(free)} is free in {folder}"
        )


def _existing_folder(path: Path) -> Path:
    """`path`, or the nearest folder above it that exists (where the receive will create it)."""
    while not path.exists():
        path = path.parent
    return path
