"""Imports of files, bytes and folders: hash, commit, and tag in one transaction.

A folder's files are committed in batches while the import runs (so memory stays bounded), each
batch under temp tags that keep GC off them until the collection and its tag are committed.

Small files are read and hashed one after another on the calling thread: measured, 10,000 files
of 1 to 4,096 bytes import in about 0.23 s (≈ 40,000 files/s, mostly the open and read calls), so
parallel hashing would buy little for small files; large ones hash in the native module with the
GIL released.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import apsw

from ringdrop.store import blobs, state, tags
from ringdrop.store.blobs import BlobInfo, ImportMode, Staged
from ringdrop.store.collection import (
    Collection,
    Entry,
    check_size,
    encoded_size,
    scan_directory,
)
from ringdrop.store.db import Database
from ringdrop.store.files import Tree
from ringdrop.store.layout import Layout
from ringdrop.store.progress import Meter, ProgressFn
from ringdrop.store.tags import Format, Lease, Tag

__all__ = ["ImportBatch", "ImportedCollection", "import_bytes", "import_directory", "import_file"]


@dataclass(frozen=True)
class ImportBatch:
    """When a folder import commits what it has staged: once the batch's file count or the
    bytes it has staged (the small files' held in memory until then) reach these; the last
    batch is committed with the collection itself. A commit costs one sync (milliseconds); 8,192
    staged files cost ~10 MiB of memory beyond their bytes, so a folder of 100,000 small files
    imports in ~40 MiB more than the walk."""

    files: int = 8192
    staged_bytes: int = 16 << 20


DEFAULT_BATCH = ImportBatch()


@dataclass(frozen=True)
class ImportedCollection:
    info: BlobInfo
    """The collection blob itself."""
    collection: Collection
    tag: Tag
    skipped: tuple[str, ...]
    """Names left out: symbolic links and other things that are not regular files."""
    excluded: int = 0
    """Files left out by an exclusion pattern or the folder's .ringdropignore."""


def import_file(
    db: Database,
    layout: Layout,
    path: Path,
    *,
    mode: ImportMode,
    tag: str | None,
    display_name: str | None,
    progress: ProgressFn | None,
) -> tuple[BlobInfo, Tag]:
    size = path.stat().st_size
    staged = blobs.stage_file(layout, path, mode, Meter(size, progress, passes=blobs.passes(mode)))
    return _commit_tagged(db, layout, staged, tag, display_name or path.name, "blob")


def import_bytes(
    db: Database,
    layout: Layout,
    data: bytes,
    *,
    tag: str | None,
    display_name: str | None,
    format: Format,
) -> tuple[BlobInfo, Tag]:
    staged = blobs.stage_bytes(layout, data)
    return _commit_tagged(db, layout, staged, tag, display_name, format)


def import_directory(
    db: Database,
    layout: Layout,
    lease: Lease,
    folder: Path,
    *,
    mode: ImportMode,
    tag: str | None,
    display_name: str | None,
    progress: ProgressFn | None,
    exclude: Sequence[str] = (),
    batch: ImportBatch = DEFAULT_BATCH,
) -> ImportedCollection:
    folder = folder.absolute()
    scan = scan_directory(folder, exclude)
    # Receivers refuse a larger collection: say so before hashing anything.
    check_size(encoded_size(f.name for f in scan.files), len(scan.files))
    meter = Meter(sum(f.size for f in scan.files), progress, passes=blobs.passes(mode))
    entries: list[Entry] = []
    staging = _Staging(db, layout, lease, batch)
    tree = Tree(folder, scan.folders)
    try:
        for file in scan.files:
            # Opened name by name without following links, and only if it is the file scanned.
            fd = tree.open_file(file.name, file.file_id)
            try:
                staged = blobs.stage_open_file(layout, fd, file.path, mode, meter)
            finally:
                os.close(fd)
            entries.append(
                Entry(file.name, staged.root, staged.size, file.mtime_ns, file.executable)
            )
            staging.add(staged)
        collection = Collection(tuple(entries))
        info, new_tag = staging.commit(collection, tag, display_name or folder.name)
    finally:
        tree.close()
        staging.close()
    return ImportedCollection(info, collection, new_tag, tuple(scan.skipped), scan.excluded)


class _Staging:
    """A folder import's staged files, committed a batch at a time under temp tags that keep
    GC off them until the collection and its tag are committed."""

    def __init__(self, db: Database, layout: Layout, lease: Lease, batch: ImportBatch) -> None:
        self._db = db
        self._layout = layout
        self._lease = lease
        self._batch = batch
        self._staged: list[Staged] = []
        self._bytes = 0
        self._protected: list[int] = []

    def add(self, staged: Staged) -> None:
        self._staged.append(staged)
        self._bytes += staged.size
        if len(self._staged) >= self._batch.files or self._bytes >= self._batch.staged_bytes:
            with self._db.transaction() as conn:
                state.commit_all(conn, self._layout, self._staged)
                self._protected += self._lease.add(conn, [s.root for s in self._staged], "blob")
            self._staged, self._bytes = [], 0

    def commit(
        self, collection: Collection, tag: str | None, display_name: str
    ) -> tuple[BlobInfo, Tag]:
        """Commits the last batch with the collection and its tag, in one transaction."""
        encoded = blobs.stage_bytes(self._layout, collection.encode())
        self._staged.append(encoded)
        with self._db.transaction() as conn:
            state.commit_all(conn, self._layout, self._staged)
            info = blobs.get_blob(conn, encoded.root)
            assert info is not None
            new_tag = tags.set_tag(
                conn, tag or tags.default_tag_name(info.root), info.root, "collection", display_name
            )
            _drop_temp_tags(conn, self._protected)
        self._protected = []
        return info, new_tag

    def close(self) -> None:
        """Discards what is staged and uncommitted; after a failure, lets GC have the batches
        committed so far."""
        for s in self._staged:
            s.discard()
        if self._protected:
            with self._db.transaction() as conn:
                _drop_temp_tags(conn, self._protected)


def _drop_temp_tags(conn: apsw.Connection, ids: list[int]) -> None:
    conn.executemany("DELETE FROM temp_tags WHERE id = ?", [(i,) for i in ids])


def _commit_tagged(
    db: Database,
    layout: Layout,
    staged: Staged,
    tag: str | None,
    display_name: str | None,
    format: Format,
) -> tuple[BlobInfo, Tag]:
    tags.check_format(format)
    try:
        with db.transaction() as conn:
            info = state.commit_staged(conn, layout, staged)
            new_tag = tags.set_tag(
                conn, tag or tags.default_tag_name(info.root), info.root, format, display_name
            )
    finally:
        staged.discard()
    return info, new_tag
