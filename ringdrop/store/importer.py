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

__all__ = ["ImportedCollection", "import_bytes", "import_directory", "import_file"]

# A batch is committed when its inline bytes (held in memory until then) or its file count
# reach these; the last batch is committed with the collection itself.
# A commit costs one sync (milliseconds); 8,192 staged files cost ~10 MiB of memory beyond
# their bytes, so a folder of 100,000 small files imports in ~40 MiB more than the walk.
_BATCH_FILES = 8192
_BATCH_BYTES = 16 << 20


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
) -> ImportedCollection:
    folder = folder.absolute()
    scan = scan_directory(folder, exclude)
    # Receivers refuse a larger collection: say so before hashing anything.
    check_size(encoded_size(f.name for f in scan.files), len(scan.files))
    meter = Meter(sum(f.size for f in scan.files), progress, passes=blobs.passes(mode))
    entries: list[Entry] = []
    batch: list[Staged] = []
    batch_bytes = 0
    protected: list[int] = []
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
            batch.append(staged)
            batch_bytes += staged.size
            if len(batch) >= _BATCH_FILES or batch_bytes >= _BATCH_BYTES:
                with db.transaction() as conn:
                    state.commit_all(conn, layout, batch)
                    protected += lease.add(conn, [s.root for s in batch], "blob")
                batch, batch_bytes = [], 0
        collection = Collection(tuple(entries))
        encoded = blobs.stage_bytes(layout, collection.encode())
        batch.append(encoded)
        with db.transaction() as conn:
            state.commit_all(conn, layout, batch)
            info = blobs.get_blob(conn, encoded.root)
            assert info is not None
            new_tag = tags.set_tag(
                conn,
                tag or tags.default_tag_name(info.root),
                info.root,
                "collection",
                display_name or folder.name,
            )
            _drop_temp_tags(conn, protected)
        protected = []
    finally:
        tree.close()
        for s in batch:
            s.discard()
        if protected:
            with db.transaction() as conn:
                _drop_temp_tags(conn, protected)
    return ImportedCollection(info, collection, new_tag, tuple(scan.skipped), scan.excluded)


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
