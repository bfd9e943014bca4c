"""Exporting blobs and collections to the user's folders: verified, atomic, never outside `dest`.

Each file is written to a temporary name in its target folder, fsynced, hashed again and only
then renamed into place, so a reader never sees half a file and corrupt store content never lands
under a real name. Folders are walked with `openat` and O_NOFOLLOW from the destination, so a
symbolic link planted inside it cannot redirect a write elsewhere.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import apsw

from ringdrop.bao import create_outboard, outboard_from_bytes
from ringdrop.errors import IntegrityError, NotFoundError, StoreError, UnsafePathError
from ringdrop.store import blobs
from ringdrop.store.blobs import BlobInfo
from ringdrop.store.collection import Collection
from ringdrop.store.db import Database
from ringdrop.store.files import copy_fd, ensure_free_space, write_all
from ringdrop.store.layout import Layout
from ringdrop.store.names import validate_name
from ringdrop.store.progress import Meter, ProgressFn

__all__ = ["export_blob", "export_collection", "read_collection"]

_COLLECTION_LIMIT = 1 << 30
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.ENOSYS}


@dataclass(frozen=True)
class _Source:
    """Where a blob's bytes come from when it is exported."""

    info: BlobInfo
    data: bytes | None
    path: Path | None


def export_blob(
    db: Database,
    layout: Layout,
    root: bytes,
    dest: Path,
    *,
    force: bool,
    progress: ProgressFn | None,
) -> Path:
    """Writes blob `root` to the file `dest` and returns its path."""
    with db.snapshot() as conn:
        source = _source(conn, layout, root)
    dest = dest.absolute()
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not force and os.path.lexists(dest):
        raise StoreError(f"refusing to overwrite {dest}: it already exists")
    ensure_free_space(dest.parent, source.info.size, f"exporting to {dest}")
    meter = Meter(source.info.size, progress, passes=2)
    with _open_dir(dest.parent) as folder:
        _write_file(layout, folder, dest.name, dest, source, force=force, meter=meter)
    return dest


def export_collection(
    db: Database,
    layout: Layout,
    root: bytes,
    dest: Path,
    *,
    force: bool,
    progress: ProgressFn | None,
) -> list[Path]:
    """Writes every file of collection `root` below the folder `dest`; returns their paths."""
    dest = dest.absolute()
    with db.snapshot() as conn:
        collection = read_collection(conn, layout, root)
        sources = [_source(conn, layout, e.root) for e in collection.entries]
    targets = [dest.joinpath(*validate_name(e.name).split("/")) for e in collection.entries]
    if not force:
        taken = [t for t in targets if os.path.lexists(t)]
        if taken:
            more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
            raise StoreError(f"refusing to overwrite {taken[0]}{more}: already there")
    dest.mkdir(parents=True, exist_ok=True)
    ensure_free_space(dest, collection.total_size, f"exporting to {dest}")
    meter = Meter(collection.total_size, progress, passes=2)
    with _open_dir(dest) as base:
        for entry, source, target in zip(collection.entries, sources, targets, strict=True):
            *folders, name = entry.name.split("/")
            with _subfolder(base, folders, dest) as folder:
                _write_file(layout, folder, name, target, source, force=force, meter=meter)
    return targets


def read_collection(conn: apsw.Connection, layout: Layout, root: bytes) -> Collection:
    """The collection stored as blob `root`, verified and with every name checked."""
    return Collection.decode(blobs.read_blob(conn, layout, root, _COLLECTION_LIMIT))


def _source(conn: apsw.Connection, layout: Layout, root: bytes) -> _Source:
    info = blobs.get_blob(conn, root)
    if info is None:
        raise NotFoundError(f"blob {root.hex()} is not in the store (or not complete yet)")
    if info.location == "inline":
        return _Source(info, blobs.inline_data(conn, root), None)
    if info.location == "reference":
        blobs.check_reference(info, blobs.source_stamp(conn, root))
        return _Source(info, None, info.source)
    return _Source(info, None, layout.blob_data(root))


@contextlib.contextmanager
def _open_dir(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


@contextlib.contextmanager
def _subfolder(base: int, parts: list[str], dest: Path) -> Iterator[int]:
    """The folder `parts` below `base`, created as needed, never through a symbolic link."""
    fd = os.dup(base)
    try:
        for i, part in enumerate(parts):
            with contextlib.suppress(FileExistsError):
                os.mkdir(part, 0o777, dir_fd=fd)
            try:
                child = os.open(
                    part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd
                )
            except OSError as e:
                if e.errno not in (errno.ELOOP, errno.ENOTDIR):
                    raise
                where = dest.joinpath(*parts[: i + 1])
                raise UnsafePathError(
                    f"{where} is a symbolic link or a file, not a folder; refusing to write "
                    "through it"
                ) from None
            os.close(fd)
            fd = child
        yield fd
    finally:
        os.close(fd)


def _write_file(
    layout: Layout,
    folder: int,
    name: str,
    shown: Path,
    source: _Source,
    *,
    force: bool,
    meter: Meter,
) -> None:
    tmp = f".ringdrop-{secrets.token_hex(8)}.part"
    fd = os.open(
        tmp,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o644,
        dir_fd=folder,
    )
    try:
        try:
            _fill(fd, source, meter)
            os.fsync(fd)
        finally:
            os.close(fd)
        _verify(layout, shown.parent / tmp, source, meter)
        _put_in_place(folder, tmp, name, shown, force=force)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=folder)
        raise


def _fill(fd: int, source: _Source, meter: Meter) -> None:
    if source.data is not None:
        root, _ = outboard_from_bytes(source.data)
        if root != source.info.root:
            raise IntegrityError(f"the stored content of blob {source.info.hex} is corrupt")
        write_all(fd, source.data)
        meter.add(2 * source.info.size)
        return
    assert source.path is not None
    src = os.open(source.path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        copy_fd(src, fd, source.info.size, meter.add)
    except EOFError:
        raise IntegrityError(
            f"{source.path} is shorter than blob {source.info.hex}; it changed or is damaged"
        ) from None
    finally:
        os.close(src)


def _verify(layout: Layout, written: Path, source: _Source, meter: Meter) -> None:
    """Hashes the written file again: what lands under the real name matches the root."""
    if source.data is not None:
        return
    scratch = layout.new_staging().outboard
    try:
        root, _ = create_outboard(written, scratch, meter.native())
    finally:
        scratch.unlink(missing_ok=True)
    if root != source.info.root:
        raise IntegrityError(
            f"blob {source.info.hex} does not match its root ({source.path} changed or is "
            "damaged); nothing was exported"
        )


def _put_in_place(folder: int, tmp: str, name: str, shown: Path, *, force: bool) -> None:
    if force:
        try:
            os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
        except IsADirectoryError:
            raise StoreError(f"cannot overwrite {shown}: it is a folder") from None
        return
    # link() fails if the name exists, which makes "refuse to overwrite" race-free.
    try:
        os.link(tmp, name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
    except FileExistsError:
        raise StoreError(f"refusing to overwrite {shown}: it already exists") from None
    except OSError as e:
        if e.errno not in _NO_HARD_LINKS:
            raise
        # File systems without hard links (FAT, some network shares): check, then rename.
        if os.path.lexists(shown):
            raise StoreError(f"refusing to overwrite {shown}: it already exists") from None
        os.rename(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
        return
    os.unlink(tmp, dir_fd=folder)
