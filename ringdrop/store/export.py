"""Exporting blobs and collections to the user's folders: verified, atomic, never outside the
destination, and without copying the data when the store's file can be handed over.

How a stored file reaches the destination, best first:

- **clone** (FICLONE, btrfs/XFS/bcachefs): the export shares the store file's extents. The store
  keeps its own copy at no cost in space.
- **hand over** (same file system, unless `keep`): the store's verified data file is hard-linked
  into place, then the store's name for it is removed and the blob becomes a *reference* to the
  exported file, exactly as `share --reference` makes one: it is served from there while its
  size and mtime are unchanged, and the encoder still checks every byte against the root.
- **copy** (another file system, `keep`, or no hard links): written to the destination, fsynced
  and hashed again. Unless `keep`, the store's copy is then released the same way (the blob
  becomes a reference to the copy).

Inline blobs (≤ 16 KiB) are written out from the database; references are copied and verified.

Crash safety. Everything is built under a temporary name in the destination's folder —
`.ringdrop-<hash>-<name hash>.part`, a file or a folder holding the members — and put under the
real name by one rename (or hard link) at the end, so nothing half-written ever carries the final
name.
The store's data files are linked, never moved, until the result is in place: a process killed
before then leaves the store as it was and a temporary name that the next export of the same
content removes. Just before the final rename a journal (a row of the `exports` table) records
the target; the store's bookkeeping (blob → reference, data file pending deletion) follows, in
the transaction that deletes the row. An export that finds a journal finishes what it describes
first (`finish_export`), so a rerun never needs `--force` over its own result.

Folders are walked with `openat` and O_NOFOLLOW, so a symbolic link planted inside the
destination cannot redirect a write elsewhere. A single file is exported as a folder's member
is, by the same steps (`_export`); the system calls themselves are in `files.py`.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import shutil
import stat
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, cast

import apsw

from ringdrop.bao import create_outboard, outboard_from_bytes
from ringdrop.errors import (
    DestinationError,
    ExistsError,
    IntegrityError,
    NotFoundError,
    StoreError,
)
from ringdrop.store import batch, blobs, state
from ringdrop.store.blobs import BlobInfo
from ringdrop.store.collection import MAX_COLLECTION_BYTES, Collection, Entry
from ringdrop.store.db import Database
from ringdrop.store.files import (
    NO_HARD_LINKS,
    clone,
    copy_fd,
    create_new,
    fsync_dir,
    fsync_file,
    link,
    open_dir,
    remove_entry,
    set_metadata,
    subfolder,
    syncfs,
    write_all,
)
from ringdrop.store.layout import Layout
from ringdrop.store.progress import Meter, ProgressFn
from ringdrop.store.space import check_export

__all__ = [
    "EXPORT_BATCH",
    "ExportResult",
    "OnExisting",
    "export_blob",
    "export_collection",
    "finish_export",
    "free_name",
    "read_collection",
]

OnExisting = Literal["refuse", "force", "rename"]
"""What to do when the destination exists: refuse, overwrite it, or pick `name (1).ext`."""
How = Literal["cloned", "linked", "copied", "written"]
EXPORT_BATCH = 2048
"""Members of a folder exported per read transaction, unless the store is given another."""

# What the destination's file system says when it will not take what is written there.
_UNWRITABLE = {errno.EROFS: "the file system is read-only", errno.EACCES: "permission denied",
               errno.EPERM: "permission denied"}  # fmt: skip


@dataclass(frozen=True)
class ExportResult:
    """Where the content went and how its bytes got there."""

    path: Path
    moved: int
    """Bytes placed without copying them (cloned, or handed over from the store)."""
    copied: int
    """Bytes written: copies, and inline blobs."""


@dataclass(frozen=True)
class _Source:
    """Where a blob's bytes come from when it is exported."""

    info: BlobInfo
    data: bytes | None
    path: Path | None


@dataclass
class _Plan:
    """One export in progress: its temporary name, and the members the store hands over."""

    root: bytes
    temp: Path
    handover: list[tuple[bytes, str]] = field(default_factory=list)
    """(root, name below the target: "" for a single file) of blobs whose store entry is to
    name the result once it is in place: store files to release, references to renew."""
    moved: int = 0
    copied: int = 0
    can_clone: bool = True
    """False once the file system has said it cannot clone: not asked again per file."""
    unsynced: list[Path] = field(default_factory=list)
    """Small files written without an fsync each: one sync of their file system covers them
    all before the result is renamed into place."""


def export_blob(
    db: Database,
    layout: Layout,
    root: bytes,
    dest: Path,
    *,
    existing: OnExisting,
    keep: bool,
    progress: ProgressFn | None,
    mtime_ns: int | None = None,
    executable: bool = False,
) -> ExportResult:
    """Writes blob `root` to the file `dest` and returns where it went, with the modification
    time and executable bit given (its ticket's), as a folder's files get theirs."""
    finish_export(db, layout, root)
    with db.snapshot() as conn:
        source = _source(conn, layout, root)

    def build(parent: int, plan: _Plan, meter: Meter) -> None:
        # One member, placed as the temporary name itself; the result is that file, so its
        # name below the result is "".
        entry = Entry(plan.temp.name, root, source.info.size, mtime_ns, executable)
        how = _fill_one(layout, parent, plan, entry, source, keep, meter, shown=plan.temp.parent)
        _sync_small(parent, plan)
        _count(plan, source, how, hand_over=not keep, name="")

    return _export(db, layout, root, dest, [source], existing, keep, progress, build, folder=False)


def export_collection(
    db: Database,
    layout: Layout,
    root: bytes,
    dest: Path,
    *,
    existing: OnExisting,
    keep: bool,
    progress: ProgressFn | None,
    per_read: int = EXPORT_BATCH,
) -> ExportResult:
    """Writes the files of collection `root` into a new folder `dest`; returns where it went.

    Under `force`, an existing `dest`, file or folder, is replaced: the old one is removed
    only after the new one is complete and in place."""
    finish_export(db, layout, root)
    with db.snapshot() as conn:
        collection = read_collection(conn, layout, root)
        # Small files' bytes are read a batch at a time (_fill_folder): memory stays bounded
        # for any number of them.
        sources = [_source(conn, layout, e.root, load=False) for e in collection.entries]

    def build(parent: int, plan: _Plan, meter: Meter) -> None:
        os.mkdir(plan.temp.name, 0o777, dir_fd=parent)
        with open_dir(plan.temp) as base:
            _fill_folder(db, layout, base, plan, collection.entries, sources, keep, meter, per_read)
            _sync_small(base, plan)
            os.fsync(base)

    return _export(db, layout, root, dest, sources, existing, keep, progress, build, folder=True)


def _export(
    db: Database,
    layout: Layout,
    root: bytes,
    dest: Path,
    sources: Sequence[_Source],
    existing: OnExisting,
    keep: bool,
    progress: ProgressFn | None,
    build: Callable[[int, _Plan, Meter], None],
    *,
    folder: bool,
) -> ExportResult:
    """The crash-safe protocol of every export: `build` makes the result, file or folder, under
    its temporary name in `dest`'s folder (given open, with the plan and the meter); it is put
    under its real name once whole, and then the store hands over what the plan says."""
    dest = dest.absolute()
    with _writing_in(dest.parent):
        dest.parent.mkdir(parents=True, exist_ok=True)
        _check_existing(dest, existing)
        check_export(layout.blobs, [s.info for s in sources], dest, keep=keep)
        meter = Meter(sum(s.info.size for s in sources), progress, passes=2)
        plan = _Plan(root, dest.parent / _temp_name(root, dest))
        with open_dir(dest.parent) as parent:
            remove_entry(parent, plan.temp.name)
            try:
                build(parent, plan, meter)
                final = _place(db, plan, parent, dest, existing, is_folder=folder)
            except BaseException:
                with contextlib.suppress(OSError):
                    remove_entry(parent, plan.temp.name)
                raise
    _release(db, layout, plan, final)
    return ExportResult(final, plan.moved, plan.copied)


def read_collection(conn: apsw.Connection, layout: Layout, root: bytes) -> Collection:
    """The collection stored as blob `root`, verified and with every name checked."""
    return Collection.decode(blobs.read_blob(conn, layout, root, MAX_COLLECTION_BYTES))


def free_name(path: Path) -> Path:
    """`path` itself if nothing is there, else the first free `name (1).ext`, `name (2).ext`…"""
    n = 0
    while True:
        candidate = _numbered(path, n)
        if not os.path.lexists(candidate):
            return candidate
        n += 1


def finish_export(db: Database, layout: Layout, root: bytes) -> Path | None:
    """Completes an export of `root` that a crash interrupted, from its journal.

    Returns the path it finished (the content is there, whole), or None if there was nothing
    to finish or the interrupted export had not put anything in place (its temporary name is
    removed by the next export).
    """
    with db.snapshot() as conn:
        rows = conn.execute(
            "SELECT target, temp, old FROM exports WHERE root = ?", (root,)
        ).fetchall()
        handover = conn.execute(
            "SELECT root, name FROM export_handovers WHERE export = ?", (root,)
        ).fetchall()
    if not rows:
        return None
    target, temp = Path(str(rows[0][0])), Path(str(rows[0][1]))
    old = Path(str(rows[0][2])) if rows[0][2] is not None else None
    if not _placed(temp, target):
        if old is not None and os.path.lexists(old) and not os.path.lexists(target):
            os.rename(old, target)  # the user's own file, moved aside for --force: back it goes
        _drop_journal(db, root)
        return None
    with contextlib.suppress(FileNotFoundError):
        os.unlink(temp)  # a single file's temporary link, when the crash came right after
    if old is not None:
        _remove_any(old)
    plan = _Plan(root, temp, [(bytes(cast(bytes, r)), str(name)) for r, name in handover])
    _release(db, layout, plan, target)
    return target


# -- building the result under its temporary name ------------------------------------------------


def _fill_folder(
    db: Database,
    layout: Layout,
    base: int,
    plan: _Plan,
    entries: Sequence[Entry],
    sources: Sequence[_Source],
    keep: bool,
    meter: Meter,
    per_read: int,
) -> None:
    seen: set[bytes] = set()
    for start in range(0, len(entries), per_read):
        batch = _loaded(db, sources[start : start + per_read])
        for entry, source in zip(entries[start : start + per_read], batch, strict=True):
            # A root that appears twice is handed over once; its other appearances are copies,
            # so that editing one exported file cannot change another.
            first = entry.root not in seen
            seen.add(entry.root)
            how = _fill_one(
                layout, base, plan, entry, source, keep or not first, meter, shown=plan.temp
            )
            _count(plan, source, how, hand_over=first and not keep, name=entry.name)


def _loaded(db: Database, sources: Sequence[_Source]) -> list[_Source]:
    """`sources` with the bytes of the small (inline) ones read, in one read transaction (one
    query per 4096 of them)."""
    if all(s.info.location != "inline" or s.data is not None for s in sources):
        return list(sources)
    wanted = [s.info.root for s in sources if s.info.location == "inline" and s.data is None]
    with db.snapshot() as conn:
        data = batch.inline_data(conn, wanted)
    loaded = []
    for s in sources:
        if s.info.location == "inline" and s.data is None:
            if s.info.root not in data:
                raise NotFoundError(f"blob {s.info.root.hex()} is not in the store")
            s = _Source(s.info, data[s.info.root], None)
        loaded.append(s)
    return loaded


def _sync_small(base: int, plan: _Plan) -> None:
    """Makes the small files written unsynced durable: one `syncfs` of the file system they are
    on (all below `base`), else an fsync each."""
    if not plan.unsynced:
        return
    if syncfs(base):
        return
    for path in plan.unsynced:
        fsync_file(path)


def _fill_one(
    layout: Layout,
    base: int,
    plan: _Plan,
    entry: Entry,
    source: _Source,
    keep: bool,
    meter: Meter,
    *,
    shown: Path,
) -> How:
    """Puts one member in place below `base` (the folder `shown`), with its metadata."""
    *folders, name = entry.name.split("/")
    with subfolder(base, folders, shown) as folder:
        path = shown.joinpath(*entry.name.split("/"))
        how = _materialize(layout, plan, folder, name, path, source, keep, meter)
        set_metadata(folder, name, entry.mtime_ns, executable=entry.executable)
    return how


def _count(plan: _Plan, source: _Source, how: How, *, hand_over: bool, name: str) -> None:
    if how in ("cloned", "linked"):
        plan.moved += source.info.size
    else:
        plan.copied += source.info.size
    if hand_over and how in ("linked", "copied") and source.info.location == "file":
        plan.handover.append((source.info.root, name))
    elif source.info.location == "reference" and how == "copied":
        # Perhaps over the very file the reference names (--force): its stamp is renewed.
        plan.handover.append((source.info.root, name))


def _materialize(
    layout: Layout,
    plan: _Plan,
    folder: int,
    name: str,
    shown: Path,
    source: _Source,
    keep: bool,
    meter: Meter,
) -> How:
    """Creates the file `name` in `folder` with the blob's bytes, by the cheapest safe means.

    Written bytes are fsynced here; a clone or a link adds no data, and its metadata becomes
    durable with the folder's fsync before the result is renamed into place (file systems that
    journal metadata commit it in order)."""
    if source.data is not None:
        root, _ = outboard_from_bytes(source.data)
        if root != source.info.root:
            raise IntegrityError(f"the stored content of blob {source.info.hex} is corrupt")
        fd = create_new(folder, name)
        try:
            write_all(fd, source.data)
        finally:
            os.close(fd)
        plan.unsynced.append(shown)  # synced with the others before the result is placed
        meter.add(2 * source.info.size)
        return "written"
    assert source.path is not None
    if source.info.location == "file":
        if plan.can_clone:
            plan.can_clone = clone(source.path, folder, name)
            if plan.can_clone:
                meter.add(2 * source.info.size)
                return "cloned"
        if not keep and link(source.path, folder, name):
            meter.add(2 * source.info.size)
            return "linked"
    fd = create_new(folder, name)
    try:
        _copy(fd, source, meter)  # copy_fd ends with an fsync of fd
    finally:
        os.close(fd)
    _verify(layout, shown, source, meter)
    return "copied"


def _copy(fd: int, source: _Source, meter: Meter) -> None:
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
    """Hashes a copy again: what lands under the real name matches the root."""
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


# -- putting it in place -------------------------------------------------------------------------


def _check_existing(dest: Path, existing: OnExisting) -> None:
    if existing == "refuse" and os.path.lexists(dest):
        raise ExistsError(f"{dest} already exists", path=str(dest))


def _place(
    db: Database,
    plan: _Plan,
    parent: int,
    dest: Path,
    existing: OnExisting,
    *,
    is_folder: bool,
) -> Path:
    """Renames the temporary result to its real name; returns that name."""
    if existing == "force" and os.path.lexists(dest):
        _force_into(db, plan, parent, dest, is_folder=is_folder)
        fsync_dir(dest.parent)
        return dest
    n = 0
    while True:
        target = _numbered(dest, n) if existing == "rename" else dest
        _write_journal(db, plan, target, None)
        try:
            _rename_new(parent, plan.temp.name, target.name, is_folder=is_folder)
        except FileExistsError:
            _drop_journal(db, plan.root)
            if existing == "rename":
                n += 1
                continue
            raise ExistsError(f"{target} already exists", path=str(target)) from None
        fsync_dir(target.parent)
        return target


def _force_into(db: Database, plan: _Plan, parent: int, dest: Path, *, is_folder: bool) -> None:
    """--force: a file replaces a file atomically; anything else, an existing folder included,
    is moved aside once the new result is complete, and deleted once that is in place. A folder
    is replaced whole, as `rsync --delete` or removing it and copying would: files of the old
    one that the new one lacks do not survive to mix with it."""
    dest_is_folder = os.path.isdir(dest) and not os.path.islink(dest)
    if not is_folder and dest_is_folder:
        raise StoreError(f"cannot overwrite {dest}: it is a folder")
    if not is_folder:
        _write_journal(db, plan, dest, None)
        os.replace(plan.temp.name, dest.name, src_dir_fd=parent, dst_dir_fd=parent)
        return
    old = plan.temp.with_suffix(".old")
    _remove_any(old)
    _write_journal(db, plan, dest, old)
    os.rename(dest.name, old.name, src_dir_fd=parent, dst_dir_fd=parent)
    os.rename(plan.temp.name, dest.name, src_dir_fd=parent, dst_dir_fd=parent)
    _remove_any(old)


def _rename_new(parent: int, temp: str, name: str, *, is_folder: bool) -> None:
    """Renames `temp` to `name`, raising FileExistsError rather than replacing anything."""
    if not is_folder:
        # link() fails if the name exists, which makes "never overwrite" race-free.
        try:
            os.link(temp, name, src_dir_fd=parent, dst_dir_fd=parent, follow_symlinks=False)
        except OSError as e:
            if e.errno == errno.EEXIST or e.errno not in NO_HARD_LINKS:
                raise
        else:
            os.unlink(temp, dir_fd=parent)
            return
    # Folders (and file systems without hard links): check, then rename. rename() would replace
    # an empty folder that appeared in between; that loses nothing.
    try:
        os.lstat(name, dir_fd=parent)
    except FileNotFoundError:
        os.rename(temp, name, src_dir_fd=parent, dst_dir_fd=parent)
        return
    raise FileExistsError(errno.EEXIST, "exists", name)


def _write_journal(db: Database, plan: _Plan, target: Path, old: Path | None) -> None:
    with db.transaction() as conn:
        conn.execute("DELETE FROM exports WHERE root = ?", (plan.root,))
        conn.execute(
            "INSERT INTO exports (root, target, temp, old) VALUES (?, ?, ?, ?)",
            (plan.root, str(target), str(plan.temp), None if old is None else str(old)),
        )
        conn.executemany(
            "INSERT INTO export_handovers (export, root, name) VALUES (?, ?, ?)",
            [(plan.root, root, name) for root, name in plan.handover],
        )


def _drop_journal(db: Database, root: bytes) -> None:
    with db.transaction() as conn:
        conn.execute("DELETE FROM exports WHERE root = ?", (root,))


def _release(db: Database, layout: Layout, plan: _Plan, target: Path) -> None:
    """The result is in place: blobs handed over become references to it, and the store's own
    data files for them go. The journal goes in the transaction that does the first: a crash
    leaves both or neither."""
    if plan.handover:
        released: list[Path] = []
        with db.transaction() as conn:
            conn.execute("DELETE FROM exports WHERE root = ?", (plan.root,))
            for root, name in plan.handover:
                path = target.joinpath(*name.split("/")) if name else target
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    continue  # gone since: the store keeps what it has
                data = state.hand_over(conn, layout, root, path, st.st_mtime_ns)
                if data is not None:
                    released.append(data)
        with db.transaction() as conn:
            # Unlinked only while still pending: one that GC has already deleted may since
            # have been taken by a new import of the same content.
            blobs.claim_paths(conn, layout, released)
    else:
        _drop_journal(db, plan.root)


def _placed(temp: Path, target: Path) -> bool:
    """Whether an interrupted export got as far as putting its result under `target`."""
    try:
        t = os.lstat(temp)
    except FileNotFoundError:
        return os.path.lexists(target)
    try:
        # A single file is placed by a hard link before its temporary name goes.
        return stat.S_ISREG(t.st_mode) and os.lstat(target).st_ino == t.st_ino
    except FileNotFoundError:
        return False


# -- small helpers -------------------------------------------------------------------------------


def _source(conn: apsw.Connection, layout: Layout, root: bytes, *, load: bool = True) -> _Source:
    """Where blob `root`'s bytes are; those of a small (inline) blob read now if `load`."""
    info = blobs.get_blob(conn, root)
    if info is None:
        raise NotFoundError(f"blob {root.hex()} is not in the store (or not complete yet)")
    if info.location == "inline":
        return _Source(info, blobs.inline_data(conn, root) if load else None, None)
    if info.location == "reference":
        blobs.check_reference(info, blobs.source_stamp(conn, root))
        return _Source(info, None, info.source)
    return _Source(info, None, layout.blob_data(root))


def _temp_name(root: bytes, dest: Path) -> str:
    """One temporary name per content and destination: a rerun finds (and removes) its
    leftovers, and exports of the same content to two names in one folder stay apart."""
    name = hashlib.blake2s(os.fsencode(dest.name), digest_size=4).hexdigest()
    return f".ringdrop-{root.hex()[:16]}-{name}.part"


def _numbered(path: Path, n: int) -> Path:
    if n == 0:
        return path
    name = path.name
    stem, suffix = (name[: -len(path.suffix)], path.suffix) if path.suffix else (name, "")
    return path.with_name(f"{stem} ({n}){suffix}")


def _remove_any(path: Path) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        shutil.rmtree(path)
    else:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


@contextlib.contextmanager
def _writing_in(folder: Path) -> Iterator[None]:
    """A refusal by the destination's file system becomes a `DestinationError` naming the
    folder (not the temporary name the export was writing), which is not the store's fault."""
    try:
        yield
    except OSError as e:
        reason = _UNWRITABLE.get(e.errno or 0)
        if reason is None:
            raise
        where = _existing_ancestor(folder)
        raise DestinationError(f"cannot write in {where}: {reason}", path=str(where)) from e


def _existing_ancestor(folder: Path) -> Path:
    """`folder`, or the nearest folder above it that exists (the one that refused a mkdir)."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder
