"""`Store`: the data directory as one object — the API the node, transfer and CLI layers use."""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, cast

import apsw

from ringdrop.bao import ChunkRanges, Encoder
from ringdrop.errors import IntegrityError, NotFoundError
from ringdrop.store import batch, importer, state
from ringdrop.store.blobs import (
    BlobInfo,
    ImportMode,
    check_reference,
    get_blob,
    list_blobs,
    open_encoder,
    read_blob,
    source_stamp,
)
from ringdrop.store.collection import Collection
from ringdrop.store.db import Database, Migration
from ringdrop.store.export import (
    EXPORT_BATCH,
    ExportResult,
    OnExisting,
    export_blob,
    export_collection,
    finish_export,
    read_collection,
)
from ringdrop.store.importer import DEFAULT_BATCH, ImportBatch, ImportedCollection
from ringdrop.store.layout import Layout, default_data_dir
from ringdrop.store.partial import PartialBlob, PartialInfo
from ringdrop.store.progress import ProgressFn
from ringdrop.store.schema import MIGRATIONS, drop_old_journals
from ringdrop.store.tags import (
    Format,
    Lease,
    Tag,
    TempTag,
    delete_tag,
    get_tag,
    list_tagged_blobs,
    list_tags,
    set_tag,
)
from ringdrop.store.translate import translated, translating

if TYPE_CHECKING:
    from ringdrop.store.check import CheckReport
    from ringdrop.store.gc import GcReport

__all__ = ["Store"]


class Store:
    """A data directory: complete blobs, downloads in progress, collections, tags.

    `migrations` default to the store's own tables; a node's data directory also holds the access
    layer's, so it is opened with `ringdrop.access.MIGRATIONS`.

    Any number of processes may open the same directory. Each Store owns one database connection;
    share it between threads freely (transactions are serialised) but use each PartialBlob from
    one thread at a time. Close it (or use `with`) to release its temp tags promptly; if the
    process dies they are released anyway. `import_batch` says how much of a folder's import
    is committed at a time, `export_batch` how many of its members an export reads at a time.
    """

    def __init__(
        self,
        path: Path,
        migrations: Sequence[Migration] = MIGRATIONS,
        *,
        import_batch: ImportBatch = DEFAULT_BATCH,
        export_batch: int = EXPORT_BATCH,
    ) -> None:
        self.path = path
        self._import_batch = import_batch
        self._export_batch = export_batch
        self.layout = Layout(path)
        with translated(f"could not open the data directory {path}"):
            self.layout.create()
        self.db = Database(self.layout.db, migrations)
        drop_old_journals(self.db, self.layout.root)
        self._lease = Lease(self.db, self.layout)

    @classmethod
    def open(cls, path: str | os.PathLike[str] | None = None) -> Store:
        """Opens (creating if needed) the data directory at `path`, by default ~/.ringdrop."""
        return cls(Path(path) if path is not None else default_data_dir())

    def close(self) -> None:
        with translated("could not close the data directory"):
            self._lease.close()
            self.db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- importing ----------------------------------------------------------------------------

    @translating("could not import the file")
    def import_file(
        self,
        path: str | os.PathLike[str],
        *,
        mode: ImportMode = "copy",
        tag: str | None = None,
        display_name: str | None = None,
        progress: ProgressFn | None = None,
    ) -> tuple[BlobInfo, Tag]:
        """Hashes the file into the store and tags it (by default, by its root's hex).

        mode "copy" keeps a copy in the store; "reference" serves the file where it is and
        refuses to serve it once its size or mtime changes (and the encoder checks every byte).
        `progress(done, total)` gets bytes of the file, over the copy and the hashing together.
        """
        return importer.import_file(
            self.db,
            self.layout,
            Path(path),
            mode=mode,
            tag=tag,
            display_name=display_name,
            progress=progress,
        )

    @translating("could not import the data")
    def import_bytes(
        self,
        data: bytes,
        *,
        tag: str | None = None,
        display_name: str | None = None,
        format: Format = "blob",
    ) -> tuple[BlobInfo, Tag]:
        """Stores `data` as a blob and tags it."""
        return importer.import_bytes(
            self.db, self.layout, data, tag=tag, display_name=display_name, format=format
        )

    @translating("could not import the folder")
    def import_directory(
        self,
        path: str | os.PathLike[str],
        *,
        mode: ImportMode = "copy",
        tag: str | None = None,
        display_name: str | None = None,
        progress: ProgressFn | None = None,
        exclude: Sequence[str] = (),
    ) -> ImportedCollection:
        """Imports every regular file below `path` as a collection, tagged as a whole.

        Symbolic links and other non-files are skipped and listed; empty folders are not kept.
        Files that gitignore-style `exclude` patterns or the folder's `.ringdropignore` match are
        left out and counted. Each file's mtime and executable bit are recorded.
        Raises UnsafePathError before doing any work if a name cannot be shared safely.
        """
        return importer.import_directory(
            self.db,
            self.layout,
            self._lease,
            Path(path),
            mode=mode,
            tag=tag,
            display_name=display_name,
            progress=progress,
            exclude=exclude,
            batch=self._import_batch,
        )

    # -- reading ------------------------------------------------------------------------------

    def blob(self, root: bytes) -> BlobInfo | None:
        """The complete blob `root`, or None."""
        with self.db.snapshot() as conn:
            return get_blob(conn, root)

    def blobs(self) -> list[BlobInfo]:
        with self.db.snapshot() as conn:
            return list_blobs(conn)

    @translating("could not read the blob")
    def encoder(self, root: bytes, ranges: ChunkRanges | None = None) -> Encoder:
        """The verified response stream for `ranges` (default: all) of the complete blob `root`.

        Raises NotFoundError if the blob (or its file) is gone, IntegrityError if a referenced
        file changed; the encoder itself raises IntegrityError on any byte that does not match.
        """
        with self.db.snapshot() as conn:
            return open_encoder(
                conn, self.layout, root, ChunkRanges.all() if ranges is None else ranges
            )

    @translating("could not read the blob")
    def read_bytes(self, root: bytes, limit: int = 64 << 20) -> bytes:
        """The content of a small complete blob, verified against its root."""
        with self.db.snapshot() as conn:
            return read_blob(conn, self.layout, root, limit)

    @translating("could not read the collection")
    def collection(self, root: bytes) -> Collection:
        """The collection stored as blob `root`, with every name validated."""
        with self.db.snapshot() as conn:
            return read_collection(conn, self.layout, root)

    def complete_roots(self, roots: Iterable[bytes]) -> set[bytes]:
        """Those of `roots` that are complete in the store (one query per few thousand)."""
        with self.db.snapshot() as conn:
            return batch.complete_roots(conn, roots)

    @translating("could not read the blobs")
    def encoders(self, wanted: Sequence[tuple[bytes, ChunkRanges]]) -> list[Encoder | None]:
        """`encoder()` for many `(root, ranges)` in one read transaction; None for a blob that
        is gone or whose referenced file changed."""
        with self.db.snapshot() as conn:
            return batch.open_encoders(conn, self.layout, wanted)

    # -- downloading --------------------------------------------------------------------------

    @translating("could not store the received files")
    def commit_small(self, items: Sequence[tuple[bytes, bytes]]) -> None:
        """Verifies and stores many small blobs `(root, data)` in one transaction: all of them
        durable, or (after a crash, or IntegrityError) none. See `batch.commit_small`."""
        batch.commit_small(self.db, items)

    def partial(self, root: bytes, size: int | None = None) -> PartialBlob:
        """Opens (or starts) the download of `root`, exclusively, protected from GC.

        `size` is the size a sender claims, if known; a different size recorded but never
        proven resets the download, one that was proven raises IntegrityError.
        """
        return PartialBlob(self.db, self.layout, self._lease, root, size)

    def partials(self) -> list[PartialInfo]:
        with self.db.snapshot() as conn:
            rows = conn.execute("SELECT root, size, size_proven FROM partials ORDER BY root")
            return [
                PartialInfo(bytes(cast(bytes, r)), cast(int | None, s), bool(p)) for r, s, p in rows
            ]

    # -- tags ---------------------------------------------------------------------------------

    def set_tag(
        self,
        name: str,
        root: bytes,
        *,
        format: Format = "blob",
        display_name: str | None = None,
    ) -> Tag:
        """Creates or repoints tag `name`; the root need not be in the store yet."""
        with self.db.transaction() as conn:
            return set_tag(conn, name, root, format, display_name)

    def tag(self, name: str) -> Tag | None:
        with self.db.snapshot() as conn:
            return get_tag(conn, name)

    def tags(self) -> list[Tag]:
        with self.db.snapshot() as conn:
            return list_tags(conn)

    def tagged_blobs(self) -> list[tuple[Tag, int]]:
        """Each tag whose root is a complete blob, with the blob's size; newest first."""
        with self.db.snapshot() as conn:
            return list_tagged_blobs(conn)

    def delete_tag(self, name: str) -> None:
        """Deletes tag `name` (NotFoundError if there is none); GC may then reclaim its root."""
        with self.db.transaction() as conn:
            delete_tag(conn, name)

    @translating("could not protect the content")
    def temp_tag(self, root: bytes, format: Format = "blob") -> TempTag:
        """Protects `root` from GC until released or until this process exits."""
        return self._lease.temp_tag(root, format)

    @translating("could not check the content")
    def is_reference_to(self, root: bytes, path: Path) -> bool:
        """Whether blob `root` holds `path` unchanged: a reference to it whose size and mtime
        are as recorded, or inline bytes equal to the file's."""
        return self.are_references_to([(root, path)])

    @translating("could not check the content")
    def are_references_to(self, pairs: Iterable[tuple[bytes, Path]]) -> bool:
        """Whether every `(root, path)` is as `is_reference_to` says, in one read transaction;
        stops at the first that is not."""
        with self.db.snapshot() as conn:
            return all(_holds(conn, root, path) for root, path in pairs)

    @translating("could not check the content")
    def forget_broken_references(self, roots: Sequence[bytes]) -> int:
        """Drops the blobs among `roots` that are references to a file that was moved, deleted
        or changed, so that a download fetches them again; returns how many it dropped.

        The references are read in one snapshot and their files looked at outside any
        transaction; only those found broken are checked again, and dropped, under the write
        lock (a get runs this over every member: 100,000 of them must not hold it for a second).
        """
        with self.db.snapshot() as conn:
            references = batch.references(conn, roots)
        broken = [info.root for info, stamp in references if not _unchanged(info, stamp)]
        if not broken:
            return 0
        dropped = 0
        with self.db.transaction() as conn:
            for root in broken:
                info = get_blob(conn, root)
                if info is None or info.location != "reference":
                    continue
                if _unchanged(info, source_stamp(conn, root)):
                    continue  # received or shared again meanwhile
                state.delete(conn, self.layout, root)
                dropped += 1
        return dropped

    # -- maintenance --------------------------------------------------------------------------

    @translating("could not collect garbage")
    def gc(self) -> GcReport:
        """Deletes blobs and downloads that no tag or temp tag keeps, and stray files."""
        from ringdrop.store.gc import collect_garbage  # maintenance: not loaded to start

        return collect_garbage(self.db, self.layout)

    @translating("could not check the store")
    def check(self, progress: ProgressFn | None = None) -> CheckReport:
        """Re-verifies every complete blob; reports what is missing, corrupt or changed."""
        from ringdrop.store.check import check_store  # maintenance: not loaded to start

        return check_store(self.db, self.layout, progress)

    # -- exporting ----------------------------------------------------------------------------

    @translating("could not export")
    def export(
        self,
        root: bytes,
        dest: str | os.PathLike[str],
        *,
        existing: OnExisting = "refuse",
        keep: bool = True,
        progress: ProgressFn | None = None,
        mtime_ns: int | None = None,
        executable: bool = False,
    ) -> ExportResult:
        """Writes blob `root` to the file `dest` (atomically, verified or handed over); an
        existing `dest` is refused, overwritten or kept beside (`existing`). Without `keep`, the
        store's own copy is handed over (see export.py) and the blob becomes a reference to
        the exported file. Checks free space first, for what must be copied. The file gets
        `mtime_ns` (if given) and, with `executable`, the x bits the umask allows."""
        return export_blob(
            self.db,
            self.layout,
            root,
            Path(dest),
            existing=existing,
            keep=keep,
            progress=progress,
            mtime_ns=mtime_ns,
            executable=executable,
        )

    @translating("could not export")
    def export_collection(
        self,
        root: bytes,
        dest: str | os.PathLike[str],
        *,
        existing: OnExisting = "refuse",
        keep: bool = True,
        progress: ProgressFn | None = None,
    ) -> ExportResult:
        """Writes the files of collection `root` into the folder `dest`, built under a
        temporary name and renamed into place; never outside it. As `export` otherwise."""
        return export_collection(
            self.db,
            self.layout,
            root,
            Path(dest),
            existing=existing,
            keep=keep,
            progress=progress,
            per_read=self._export_batch,
        )

    @translating("could not finish an interrupted export")
    def finish_export(self, root: bytes) -> Path | None:
        """Completes an export of `root` that a crash interrupted; returns its path if the
        content was already in place there."""
        return finish_export(self.db, self.layout, root)


def _unchanged(info: BlobInfo, stamp: int | None) -> bool:
    """Whether a reference blob's source still has its recorded size and mtime."""
    try:
        check_reference(info, stamp)
    except (NotFoundError, IntegrityError):
        return False
    return True


def _holds(conn: apsw.Connection, root: bytes, path: Path) -> bool:
    """`Store.is_reference_to`, in the caller's transaction."""
    match state.load(conn, root):
        case state.Inline(data):
            try:
                return path.read_bytes() == data
            except OSError:
                return False
        case state.Reference(size, source, mtime_ns) if source == path:
            return _unchanged(BlobInfo(root, size, "reference", source), mtime_ns)
        case _:
            return False
