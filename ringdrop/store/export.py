"""Exporting blobs and collections to the user's folders: verified, atomic, never outside `dest`.

Each file is written to a temporary name in its target folder, made durable, hashed again and
only then renamed into place, so a reader never sees half a file and corrupt store content never
lands under a real name. Folders are walked with `openat` and O_NOFOLLOW from the destination, so
a symbolic link planted inside it cannot redirect a write elsewhere.

A folder's small files (those inline in the database, hashed in memory before they are written)
go in batches: the batch's temporary files are written, then one `syncfs` makes them all durable,
then they are renamed into place. That gives each file the guarantee a per-file fsync gave — its
real name appears only after its content is on disk — at one sync per batch instead of one per
file (a sync costs milliseconds; a small file's write, microseconds).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import apsw

from ringdrop.bao import create_outboard, outboard_from_bytes
from ringdrop.errors import IntegrityError, NotFoundError, StoreError, UnsafePathError
from ringdrop.store import blobs
from ringdrop.store.batch import complete_roots
from ringdrop.store.blobs import BlobInfo, Location
from ringdrop.store.collection import Collection, Entry
from ringdrop.store.db import Database
from ringdrop.store.files import copy_fd, ensure_free_space, write_all
from ringdrop.store.layout import Layout
from ringdrop.store.names import validate_name
from ringdrop.store.progress import Meter, ProgressFn

__all__ = ["export_blob", "export_collection", "read_collection"]

_COLLECTION_LIMIT = 1 << 30
# Files exported per batch, and folders held open per batch (each an open descriptor).
_BATCH_FILES = 2048
_BATCH_FOLDERS = 256
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
        # Every member must be here before anything is written; their bytes are read later,
        # a batch at a time, so memory stays bounded for any number of files.
        _require_complete(conn, [e.root for e in collection.entries])
    targets = [dest.joinpath(*validate_name(e.name).split("/")) for e in collection.entries]
    if not force:
        taken = [t for t in targets if os.path.lexists(t)]
        if taken:
            more = f" and {len(taken) - 1} more" if len(taken) > 1 else ""
            raise StoreError(f"refusing to overwrite {taken[0]}{more}: already there")
    dest.mkdir(parents=True, exist_ok=True)
    ensure_free_space(dest, collection.total_size, f"exporting to {dest}")
    meter = Meter(collection.total_size, progress, passes=2)
    entries = collection.entries
    with _open_dir(dest) as base:
        start = 0
        while start < len(entries):
            end = _batch_end(entries, start)
            with db.snapshot() as conn:
                sources = _sources(conn, layout, [e.root for e in entries[start:end]])
            _export_batch(
                layout, base, dest, entries[start:end], sources, targets[start:end], force, meter
            )
            start = end
    return targets


def _require_complete(conn: apsw.Connection, roots: list[bytes]) -> None:
    present = complete_roots(conn, roots)
    absent = next((r for r in roots if r not in present), None)
    if absent is not None:
        raise NotFoundError(f"blob {absent.hex()} is not in the store (or not complete yet)")


def _batch_end(entries: Sequence[Entry], start: int) -> int:
    """The end of the batch from `start`: at most _BATCH_FILES files in _BATCH_FOLDERS folders."""
    folders: set[str] = set()
    end = start
    while end < len(entries) and end - start < _BATCH_FILES:
        folder = entries[end].name.rpartition("/")[0]
        if folder not in folders and len(folders) == _BATCH_FOLDERS:
            break
        folders.add(folder)
        end += 1
    return end


def _export_batch(
    layout: Layout,
    base: int,
    dest: Path,
    entries: Sequence[Entry],
    sources: list[_Source],
    targets: list[Path],
    force: bool,
    meter: Meter,
) -> None:
    """Writes one batch: large files one by one as `_write_file` does; small ones unsynced
    under temporary names, then one sync for them all, then their real names."""
    folders: dict[str, int] = {}
    written: list[tuple[int, str, str, Path]] = []
    placed = 0
    try:
        for entry, source, target in zip(entries, sources, targets, strict=True):
            folder_name, _, name = entry.name.rpartition("/")
            folder = folders.get(folder_name)
            if folder is None:
                folder = folders[folder_name] = _open_subfolder(
                    base, folder_name.split("/") if folder_name else [], dest
                )
            if source.data is None:
                _write_file(layout, folder, name, target, source, force=force, meter=meter)
                continue
            written.append((folder, _write_unsynced(folder, source, meter), name, target))
        _sync_written(written)
        for folder, tmp, name, target in written:
            _put_in_place(folder, tmp, name, target, force=force)
            placed += 1
    finally:
        for folder, tmp, _, _ in written[placed:]:
            with contextlib.suppress(OSError):
                os.unlink(tmp, dir_fd=folder)
        for fd in folders.values():
            os.close(fd)


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


def _sources(conn: apsw.Connection, layout: Layout, roots: Sequence[bytes]) -> list[_Source]:
    """`_source` of each of `roots` (at most a few thousand), read in one query."""
    wanted = list(dict.fromkeys(roots))
    marks = ",".join("?" * len(wanted))
    query = f"SELECT root, size, location, source, source_mtime_ns, data FROM blobs WHERE root IN ({marks})"  # noqa: S608, E501 - only placeholders
    rows = conn.execute(query, wanted)
    found: dict[bytes, _Source] = {}
    for root, size, location, source, mtime_ns, data in rows:
        info = BlobInfo(
            bytes(cast(bytes, root)),
            cast(int, size),
            cast(Location, location),
            None if source is None else Path(cast(str, source)),
        )
        if info.location == "inline":
            found[info.root] = _Source(info, bytes(cast(bytes, data)), None)
        elif info.location == "reference":
            blobs.check_reference(info, cast(int | None, mtime_ns))
            found[info.root] = _Source(info, None, info.source)
        else:
            found[info.root] = _Source(info, None, layout.blob_data(info.root))
    absent = next((r for r in wanted if r not in found), None)
    if absent is not None:
        raise NotFoundError(f"blob {absent.hex()} is not in the store (or not complete yet)")
    return [found[root] for root in roots]


@contextlib.contextmanager
def _open_dir(path: Path) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield fd
    finally:
        os.close(fd)


def _open_subfolder(base: int, parts: list[str], dest: Path) -> int:
    """The folder `parts` below `base` (a new descriptor), created as needed, never through a
    symbolic link."""
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
    except BaseException:
        os.close(fd)
        raise
    return fd


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


def _write_unsynced(folder: int, source: _Source, meter: Meter) -> str:
    """Writes a small file's checked bytes under a new temporary name in `folder`, not synced
    (`_sync_written` does that for the batch); returns the name."""
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
        finally:
            os.close(fd)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp, dir_fd=folder)
        raise
    return tmp


def _sync_written(written: Sequence[tuple[int, str, str, Path]]) -> None:
    """Makes the batch's temporary files durable: one `syncfs` per file system they are on
    (one, unless a folder below the destination is a mount point), else an fsync each."""
    if not written:
        return
    if _SYNCFS is not None:
        devices = {os.fstat(folder).st_dev: folder for folder in {w[0] for w in written}}
        for folder in devices.values():
            if _SYNCFS(folder) != 0:
                raise OSError(ctypes.get_errno(), "could not sync the exported files")
        return
    for folder, tmp, _, _ in written:
        fd = os.open(tmp, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _rename_noreplace(folder: int, tmp: str, name: str) -> bool:
    """Renames `tmp` to `name` in `folder` unless `name` exists (FileExistsError); False where
    the system or the file system cannot (then nothing happened)."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(folder, os.fsencode(tmp), folder, os.fsencode(name), _RENAME_NOREPLACE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), name)


def _libc_function(
    name: str, *argtypes: type[ctypes._SimpleCData[Any]]
) -> Callable[..., int] | None:
    """A libc function the os module lacks (Linux's syncfs, renameat2); None elsewhere."""
    try:
        function = getattr(ctypes.CDLL(None, use_errno=True), name)
    except (AttributeError, OSError):
        return None
    function.argtypes = list(argtypes)
    function.restype = ctypes.c_int
    return function  # type: ignore[no-any-return]


_RENAME_NOREPLACE = 1
_SYNCFS: Callable[[int], int] | None = _libc_function("syncfs", ctypes.c_int)
_RENAMEAT2: Callable[[int, bytes, int, bytes, int], int] | None = _libc_function(
    "renameat2", ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint
)


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
    # renameat2(RENAME_NOREPLACE) and link() fail if the name exists, which makes "refuse to
    # overwrite" race-free; the rename is one directory update instead of two.
    try:
        if _rename_noreplace(folder, tmp, name):
            return
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
