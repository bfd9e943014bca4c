"""Complete blobs: hashing content into staged blobs, and reading them back.

An import is staged outside any transaction (copied and hashed under tmp/, holding a lock that
tells GC it is alive), then committed by `state.commit_staged`: files renamed into blobs/ and the
row inserted in one write transaction. Every rename into blobs/ and every unlink from it happens
under SQLite's write lock, so GC and imports of the same root never interleave."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, cast

import apsw

from ringdrop.bao import (
    GROUP_SIZE,
    ChunkRanges,
    Encoder,
    create_outboard,
    outboard_from_bytes,
)
from ringdrop.errors import IntegrityError, NotFoundError, StoreError
from ringdrop.store.files import FileLock, copy_fd, write_synced
from ringdrop.store.layout import Layout, StagingPaths
from ringdrop.store.progress import Meter

__all__ = [
    "INLINE_MAX",
    "BlobInfo",
    "ImportMode",
    "Location",
    "Staged",
    "check_reference",
    "claim_paths",
    "get_blob",
    "inline_data",
    "list_blobs",
    "open_encoder",
    "passes",
    "pend_deletes",
    "read_blob",
    "source_stamp",
    "stage_bytes",
    "stage_file",
    "stage_open_file",
]

INLINE_MAX = GROUP_SIZE
"""Blobs up to one chunk group have no outboard and live inline in the database."""

Location = Literal["inline", "file", "reference"]
ImportMode = Literal["copy", "reference"]


@dataclass(frozen=True)
class BlobInfo:
    """A complete blob: where its bytes are and how many there are."""

    root: bytes
    size: int
    location: Location
    source: Path | None = None
    """The user's file a 'reference' blob is served from."""

    @property
    def hex(self) -> str:
        return self.root.hex()


@dataclass
class Staged:
    """A blob hashed and ready to commit: inline bytes, or files under tmp/ held by `lock`."""

    root: bytes
    size: int
    location: Location
    data: bytes | None = None
    paths: StagingPaths | None = None
    lock: FileLock | None = None
    source: Path | None = None
    source_mtime_ns: int | None = None

    def discard(self) -> None:
        """Deletes what is left of the staged files and lets go of them."""
        if self.paths is not None and self.lock is not None and self.lock.held:
            self.paths.data.unlink(missing_ok=True)
            self.paths.outboard.unlink(missing_ok=True)
            self.lock.release(unlink=True)


def stage_bytes(layout: Layout, data: bytes) -> Staged:
    """Hashes in-memory content (a collection, a small file) into a staged blob."""
    root, outboard = outboard_from_bytes(data)
    if len(data) <= INLINE_MAX:
        return Staged(root, len(data), "inline", data=data)
    staged = _new_staging(layout, root, len(data))
    try:
        assert staged.paths is not None
        write_synced(staged.paths.data, data, new=True)
        write_synced(staged.paths.outboard, outboard, new=True)
    except BaseException:
        staged.discard()
        raise
    return staged


def stage_file(layout: Layout, path: str | Path, mode: ImportMode, meter: Meter) -> Staged:
    """Hashes the file at `path` (a link there is followed: the caller named it), read through
    one open descriptor: see `stage_open_file`."""
    # O_NONBLOCK: opening a FIFO must not hang (it is refused below); no effect on files.
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return stage_open_file(layout, fd, path, mode, meter)
    finally:
        os.close(fd)


def stage_open_file(
    layout: Layout, fd: int, path: str | Path, mode: ImportMode, meter: Meter
) -> Staged:
    """Hashes the file open as `fd`, found at `path`: copied under tmp/, or (reference mode)
    left where it is. Every byte is read through `fd`, never by name, so a name swapped for
    something else meanwhile is never read.

    Either way the file must not change while it is read; if its size or mtime moves (or, for a
    reference, its path comes to name another file), the import fails rather than record a hash
    of a moving target.
    """
    before = os.fstat(fd)
    if not stat.S_ISREG(before.st_mode):
        raise StoreError(f"{path} is not a regular file")
    size = before.st_size
    if size <= INLINE_MAX:
        # Small files are copied into the database even in reference mode: the outboard
        # would be empty and serving them costs nothing.
        # Read one byte more than expected to notice a file that grew.
        data = os.pread(fd, size + 1, 0)
        if len(data) != size:
            raise _moved(path)
        meter.add(size * passes(mode))
        root, _ = outboard_from_bytes(data)
        return Staged(root, size, "inline", data=data)
    elif mode == "reference":
        staged = _stage_reference(layout, fd, Path(path).absolute(), size, meter)
    else:
        staged = _stage_copy(layout, path, fd, size, meter)
    # A reference is served through its path, so the path must still name the file read.
    after = os.stat(path) if mode == "reference" else os.fstat(fd)
    if (after.st_dev, after.st_ino, after.st_size, after.st_mtime_ns) != (
        before.st_dev,
        before.st_ino,
        size,
        before.st_mtime_ns,
    ):
        staged.discard()
        raise _moved(path)
    if staged.location == "reference":
        staged.source_mtime_ns = before.st_mtime_ns
    return staged


def _stage_copy(layout: Layout, path: str | Path, src: int, size: int, meter: Meter) -> Staged:
    staged = _new_staging(layout, None, size)
    assert staged.paths is not None
    try:
        dst = os.open(staged.paths.data, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            copy_fd(src, dst, size, meter.add)
        except EOFError:
            raise _moved(path) from None
        finally:
            os.close(dst)
        # The hash is taken of the copy, so the root describes exactly what is stored.
        staged.root, hashed = create_outboard(
            staged.paths.data, staged.paths.outboard, meter.native()
        )
        if hashed != size:
            raise _moved(path)
    except BaseException:
        staged.discard()
        raise
    return staged


def _stage_reference(layout: Layout, fd: int, path: Path, size: int, meter: Meter) -> Staged:
    staged = _new_staging(layout, None, size)
    assert staged.paths is not None
    staged.location = "reference"
    staged.source = path
    try:
        # The native module opens a path: this one reopens the file `fd` is (Linux's proc),
        # whatever `path` names by now.
        opened = f"/proc/self/fd/{fd}"
        staged.root, hashed = create_outboard(opened, staged.paths.outboard, meter.native())
        if hashed != size:
            raise _moved(path)
    except BaseException:
        staged.discard()
        raise
    return staged


def _new_staging(layout: Layout, root: bytes | None, size: int) -> Staged:
    paths = layout.new_staging()
    lock = FileLock(paths.lock)
    lock.acquire(blocking=True)
    return Staged(root or bytes(32), size, "file", paths=paths, lock=lock)


def passes(mode: ImportMode) -> int:
    """How many times an import reads each byte: copy, then hash; or hash only."""
    return 2 if mode == "copy" else 1


def _moved(path: str | Path) -> IntegrityError:
    return IntegrityError(f"{path} changed while it was being imported; try again when it is still")


def claim_paths(conn: apsw.Connection, layout: Layout, paths: Iterable[Path]) -> None:
    """Finishes any pending delete of `paths` before something new takes them.

    Must run inside the write transaction that then creates the files.
    """
    for path in paths:
        rel = layout.relative(path)
        conn.execute("DELETE FROM pending_deletes WHERE path = ?", (rel,))
        if conn.changes():
            path.unlink(missing_ok=True)


def pend_deletes(conn: apsw.Connection, layout: Layout, paths: Iterable[Path]) -> None:
    """Records `paths` to be unlinked once the caller's write transaction has committed (by
    whoever next runs GC or needs the path: see `claim_paths`)."""
    conn.executemany(
        "INSERT OR IGNORE INTO pending_deletes (path) VALUES (?)",
        [(layout.relative(p),) for p in paths],
    )


_SELECT = "SELECT root, size, location, source FROM blobs"


def get_blob(conn: apsw.Connection, root: bytes) -> BlobInfo | None:
    row = conn.execute(_SELECT + " WHERE root = ?", (root,)).fetchone()
    return None if row is None else _info(row)


def list_blobs(conn: apsw.Connection) -> list[BlobInfo]:
    return [_info(row) for row in conn.execute(_SELECT + " ORDER BY root")]


def _info(row: tuple[object, ...]) -> BlobInfo:
    root, size, location, source = row
    return BlobInfo(
        root=bytes(cast(bytes, root)),
        size=cast(int, size),
        location=cast(Location, location),
        source=None if source is None else Path(cast(str, source)),
    )


def source_stamp(conn: apsw.Connection, root: bytes) -> int | None:
    row = conn.execute("SELECT source_mtime_ns FROM blobs WHERE root = ?", (root,)).fetchone()
    return None if row is None else cast(int | None, row[0])


def inline_data(conn: apsw.Connection, root: bytes) -> bytes:
    row = conn.execute("SELECT data FROM blobs WHERE root = ?", (root,)).fetchone()
    if row is None or row[0] is None:
        raise NotFoundError(f"blob {root.hex()} is not in the store")
    return bytes(cast(bytes, row[0]))


def check_reference(info: BlobInfo, mtime_ns: int | None) -> None:
    """Raises unless a reference blob's source still has its recorded size and mtime."""
    assert info.source is not None
    try:
        st = info.source.stat()
    except FileNotFoundError:
        raise NotFoundError(
            f"{info.source} was moved or deleted after ringdrop recorded it; share or receive "
            "it again",
            kind="source",
        ) from None
    if (st.st_size, st.st_mtime_ns) != (info.size, mtime_ns):
        raise IntegrityError(
            f"{info.source} changed after ringdrop recorded it (size or modification time "
            "differ); it will not be served until it is shared or received again"
        )


def open_encoder(
    conn: apsw.Connection, layout: Layout, root: bytes, ranges: ChunkRanges
) -> Encoder:
    """An encoder for `ranges` of the complete blob `root`, reading from wherever it lives.

    The encoder checks every byte against the root as it goes, so a file changed on disk
    raises IntegrityError instead of sending wrong bytes.
    """
    info = get_blob(conn, root)
    if info is None:
        raise NotFoundError(f"blob {root.hex()} is not in the store")
    if info.location == "inline":
        return Encoder(inline_data(conn, root), b"", root, info.size, ranges)
    outboard = layout.blob_outboard(root)
    if info.location == "reference":
        check_reference(info, source_stamp(conn, root))
        assert info.source is not None
        return _encoder(info.source, outboard, info, ranges)
    return _encoder(layout.blob_data(root), outboard, info, ranges)


def _encoder(data: Path, outboard: Path, info: BlobInfo, ranges: ChunkRanges) -> Encoder:
    try:
        return Encoder(data, outboard, info.root, info.size, ranges)
    except FileNotFoundError as e:
        raise NotFoundError(
            f"the stored file {e.filename} of blob {info.hex} is missing: the store is damaged",
            kind="stored-file",
        ) from None


def read_blob(conn: apsw.Connection, layout: Layout, root: bytes, limit: int) -> bytes:
    """The whole content of a complete blob of at most `limit` bytes, verified against its root."""
    info = get_blob(conn, root)
    if info is None:
        raise NotFoundError(f"blob {root.hex()} is not in the store")
    if info.size > limit:
        raise StoreError(f"blob {info.hex} has {info.size} bytes, more than the {limit} expected")
    if info.location == "inline":
        return inline_data(conn, root)
    if info.location == "reference":
        check_reference(info, source_stamp(conn, root))
        assert info.source is not None
        path = info.source
    else:
        path = layout.blob_data(root)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFoundError(f"the file {path} of blob {info.hex} is missing") from None
    if len(data) != info.size or outboard_from_bytes(data)[0] != root:
        raise IntegrityError(f"the stored content of blob {info.hex} is corrupt ({path})")
    return data
