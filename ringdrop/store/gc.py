"""Garbage collection: keep what tags and temp tags reach (collections with their members), delete
the rest, and clean up files that no row owns.

Two phases, both under SQLite's write lock. The first deletes rows and records their files in
`pending_deletes`; the second unlinks them. A crash between the two leaves the paths recorded,
and whoever next needs such a path (GC, an import, a download) unlinks it first. A partial whose
lock is held (a download in progress in any process) is never touched, tagged or not. The user's
own files behind reference blobs are never deleted, only the store's outboards for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import cast

import apsw

from ringdrop.errors import RingdropError, StoreError
from ringdrop.store import blobs, state
from ringdrop.store.blobs import Location
from ringdrop.store.collection import MAX_COLLECTION_BYTES, member_roots
from ringdrop.store.db import Database
from ringdrop.store.files import FileLock
from ringdrop.store.layout import Layout
from ringdrop.store.tags import reap_dead_leases

__all__ = ["GcReport", "collect_garbage"]


@dataclass(frozen=True)
class GcReport:
    blobs_deleted: int
    partials_deleted: int
    temp_tags_dropped: int
    files_deleted: int
    bytes_freed: int


def collect_garbage(db: Database, layout: Layout) -> GcReport:
    dropped = reap_dead_leases(db, layout)
    locks: list[FileLock] = []
    try:
        with db.transaction() as conn:
            live = _live_roots(conn, layout)
            blobs_deleted = _sweep_blobs(conn, layout, live)
            partials_deleted = _sweep_partials(conn, layout, live, locks)
        with db.transaction() as conn:
            files, freed = _unlink_pending(conn, layout)
            more, more_freed = _sweep_orphans(conn, layout)
    finally:
        for lock in locks:
            lock.release(unlink=True)
    return GcReport(blobs_deleted, partials_deleted, dropped, files + more, freed + more_freed)


def _live_roots(conn: apsw.Connection, layout: Layout) -> set[bytes]:
    rows = conn.execute("SELECT root, format FROM tags UNION SELECT root, format FROM temp_tags")
    roots = [(bytes(cast(bytes, r)), cast(str, f)) for r, f in rows]
    live = {root for root, _ in roots}
    for root, format in roots:
        if format != "collection" or blobs.get_blob(conn, root) is None:
            continue
        try:
            live.update(member_roots(blobs.read_blob(conn, layout, root, MAX_COLLECTION_BYTES)))
        except (RingdropError, OSError) as e:
            # Without the member list, deleting anything could delete a member: stop instead.
            raise StoreError(
                f"garbage collection stopped, nothing was deleted: the tagged collection "
                f"{root.hex()} cannot be read ({e}): the store is damaged",
                kind="damaged",
            ) from e
    return live


def _sweep_blobs(conn: apsw.Connection, layout: Layout, live: set[bytes]) -> int:
    rows = conn.execute("SELECT root FROM blobs").fetchall()
    doomed = [bytes(cast(bytes, r)) for (r,) in rows if r not in live]
    for root in doomed:
        state.delete(conn, layout, root)
    return len(doomed)


def _sweep_partials(
    conn: apsw.Connection, layout: Layout, live: set[bytes], locks: list[FileLock]
) -> int:
    rows = conn.execute("SELECT root FROM partials").fetchall()
    deleted = 0
    for (value,) in rows:
        root = bytes(cast(bytes, value))
        if root in live:
            continue
        paths = layout.partial_paths(root)
        lock = FileLock(paths.lock)
        if not lock.acquire(blocking=False):
            continue
        locks.append(lock)
        state.drop_partial(conn, root)
        blobs.pend_deletes(conn, layout, paths.files())
        deleted += 1
    return deleted


def _unlink_pending(conn: apsw.Connection, layout: Layout) -> tuple[int, int]:
    rows = conn.execute("SELECT path FROM pending_deletes").fetchall()
    files = freed = 0
    for (rel,) in rows:
        n = _unlink(layout.absolute(cast(str, rel)))
        files += n >= 0
        freed += max(n, 0)
    conn.execute("DELETE FROM pending_deletes")
    return files, freed


def _unlink(path: Path) -> int:
    """Unlinks `path`; returns the bytes it held, or -1 if it was not there."""
    try:
        size = path.lstat().st_blocks * 512
        path.unlink()
    except FileNotFoundError:
        return -1
    return size


def _sweep_orphans(conn: apsw.Connection, layout: Layout) -> tuple[int, int]:
    """Deletes files no row owns: left by a crash between creating files and committing."""
    files = freed = 0
    expected = _expected_blob_files(conn, layout)
    for folder in layout.blobs.iterdir():
        if not folder.is_dir():
            continue
        for path in folder.iterdir():
            if path.name not in expected and path.suffix in (".data", ".obao"):
                n = _unlink(path)
                files, freed = files + (n >= 0), freed + max(n, 0)
    partials = {bytes(cast(bytes, r)).hex() for (r,) in conn.execute("SELECT root FROM partials")}
    for group in _by_stem(layout.partial).items():
        if group[0] not in partials:
            n, size = _unlink_locked_group(layout.partial / f"{group[0]}.lock", group[1])
            files, freed = files + n, freed + size
    for stem, paths in _by_stem(layout.tmp).items():
        n, size = _unlink_locked_group(layout.staging(stem).lock, paths)
        files, freed = files + n, freed + size
    return files, freed


def _expected_blob_files(conn: apsw.Connection, layout: Layout) -> set[str]:
    names: set[str] = set()
    for value, location in conn.execute("SELECT root, location FROM blobs"):
        owned = state.own_files(layout, bytes(cast(bytes, value)), cast(Location, location))
        names.update(path.name for path in owned)
    return names


def _by_stem(folder: Path) -> dict[str, list[Path]]:
    groups: dict[str, list[Path]] = {}
    for path in folder.iterdir():
        stem = path.name.split(".", 1)[0]
        groups.setdefault(stem, []).append(path)
    return groups


def _unlink_locked_group(lock_path: Path, paths: list[Path]) -> tuple[int, int]:
    """Unlinks a group of files if nobody holds their lock (its owner is gone)."""
    lock = FileLock(lock_path)
    if not lock.acquire(blocking=False):
        return 0, 0
    files = freed = 0
    try:
        for path in paths:
            if path != lock_path:
                n = _unlink(path)
                files, freed = files + (n >= 0), freed + max(n, 0)
    finally:
        lock.release(unlink=True)
    return files, freed
