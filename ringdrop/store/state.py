"""A blob's state (partial, inline, owned file, reference) and the one module that changes it:
every write of a `blobs` or `partials` row is a transition here, in the caller's transaction."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeAlias, cast

import apsw

from ringdrop.store.blobs import (
    BlobInfo,
    Location,
    Staged,
    claim_paths,
    get_blob,
    pend_deletes,
)
from ringdrop.store.layout import Layout

__all__ = [
    "Complete",
    "Inline",
    "Owned",
    "Partial",
    "Reference",
    "commit_all",
    "commit_inline",
    "commit_staged",
    "delete",
    "drop_partial",
    "hand_over",
    "load",
    "open_partial",
    "own_files",
    "promote",
    "record_partial",
]


@dataclass(frozen=True)
class Inline:
    """Complete, at most one chunk group: the bytes are in the row, and there is no outboard."""

    data: bytes


@dataclass(frozen=True)
class Owned:
    """Complete: data and outboard are the store's files under blobs/."""

    size: int


@dataclass(frozen=True)
class Reference:
    """Complete: served from the user's file `source`, which must keep its size and mtime; the
    outboard is the store's."""

    size: int
    source: Path
    mtime_ns: int | None


@dataclass(frozen=True)
class Partial:
    """A download in progress (its files under partial/); `size` is trusted once `proven`."""

    size: int | None
    proven: bool


Complete: TypeAlias = Inline | Owned | Reference
"""A complete blob's state: `load` gives one, `commit_staged` says which of two is kept."""


def load(conn: apsw.Connection, root: bytes) -> Complete | None:
    """The state of complete blob `root`, inline bytes included; None if it is not complete."""
    row = conn.execute(
        "SELECT size, location, data, source, source_mtime_ns FROM blobs WHERE root = ?", (root,)
    ).fetchone()
    if row is None:
        return None
    size, location, data, source, mtime_ns = row
    if location == "inline":
        return Inline(bytes(cast(bytes, data)))
    if location == "reference":
        return Reference(cast(int, size), Path(cast(str, source)), cast(int | None, mtime_ns))
    return Owned(cast(int, size))


def own_files(layout: Layout, root: bytes, location: Location) -> list[Path]:
    """The store's own files behind a complete blob (never the user's file of a reference)."""
    if location == "inline":
        return []
    if location == "reference":
        return [layout.blob_outboard(root)]
    return [layout.blob_data(root), layout.blob_outboard(root)]


# -- none or reference -> complete -------------------------------------------------------------


def commit_inline(conn: apsw.Connection, staged: Sequence[Staged]) -> None:
    """Inserts inline blobs in one statement; roots already present are left as they are.

    (A root determines its size, so a root that is present is itself inline.)
    """
    now = time.time()
    conn.executemany(
        "INSERT INTO blobs (root, size, location, data, created_at) "
        "VALUES (?, ?, 'inline', ?, ?) ON CONFLICT (root) DO NOTHING",
        # In key order, so each page of the index is written once per batch.
        sorted((s.root, s.size, s.data, now) for s in staged),
    )


def commit_staged(conn: apsw.Connection, layout: Layout, staged: Staged) -> BlobInfo:
    """Moves a staged blob into the store: its files are renamed into blobs/ and its row written.

    If the root is already complete the stored copy is kept (a copy wins over a reference, and
    a newer reference replaces an older one) and the staged files are dropped.
    """
    existing = get_blob(conn, staged.root)
    if existing is not None and existing.location != "reference":
        staged.discard()
        return existing
    if existing is not None and staged.location != "reference":
        # The reference's outboard is the path the copy's takes, so nothing is left behind.
        conn.execute("DELETE FROM blobs WHERE root = ?", (staged.root,))
    if staged.location == "inline":
        commit_inline(conn, [staged])
        return BlobInfo(staged.root, staged.size, "inline")
    assert staged.paths is not None
    targets = own_files(layout, staged.root, staged.location)
    claim_paths(conn, layout, targets)
    layout.blob_outboard(staged.root).parent.mkdir(mode=0o700, exist_ok=True)
    if staged.location == "file":
        os.replace(staged.paths.data, layout.blob_data(staged.root))
    os.replace(staged.paths.outboard, layout.blob_outboard(staged.root))
    conn.execute(
        "INSERT INTO blobs (root, size, location, source, source_mtime_ns, created_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (root) DO UPDATE SET source = excluded.source, "
        "source_mtime_ns = excluded.source_mtime_ns",
        (
            staged.root,
            staged.size,
            staged.location,
            None if staged.source is None else str(staged.source),
            staged.source_mtime_ns,
            time.time(),
        ),
    )
    return BlobInfo(staged.root, staged.size, staged.location, staged.source)


def commit_all(conn: apsw.Connection, layout: Layout, staged: Sequence[Staged]) -> None:
    """Commits many staged blobs."""
    commit_inline(conn, [s for s in staged if s.location == "inline"])
    for s in staged:
        if s.location != "inline":
            commit_staged(conn, layout, s)


# -- partial ---------------------------------------------------------------------------------


def open_partial(conn: apsw.Connection, layout: Layout, root: bytes) -> Partial | None:
    """The recorded download of `root`, or None after recording a new one (none -> partial);
    pending deletes of its paths are finished first, as the download is about to use them."""
    claim_paths(conn, layout, layout.partial_paths(root).files())
    row = conn.execute("SELECT size, size_proven FROM partials WHERE root = ?", (root,)).fetchone()
    if row is not None:
        _undo_interrupted_promotion(layout, root)
        return Partial(cast(int | None, row[0]), bool(row[1]))
    conn.execute("INSERT INTO partials (root, created_at) VALUES (?, ?)", (root, time.time()))
    return None


def _undo_interrupted_promotion(layout: Layout, root: bytes) -> None:
    """Moves back into the download the files a promotion moved into blobs/ before it was
    killed ahead of its commit: the partial's row is still there, its files are not. They hold
    content-addressed data of this very root, checked again as the bitfield is rebuilt; without
    this the whole download would start over. Runs inside the caller's write transaction, so no
    other commit of `root` can be moving the same files."""
    paths = layout.partial_paths(root)
    for moved, home in (
        (layout.blob_data(root), paths.data),
        (layout.blob_outboard(root), paths.outboard),
    ):
        if not home.exists() and moved.exists():
            os.replace(moved, home)


def record_partial(conn: apsw.Connection, root: bytes, state: Partial) -> None:
    """Records what a download knows of its size."""
    conn.execute(
        "UPDATE partials SET size = ?, size_proven = ? WHERE root = ?",
        (state.size, int(state.proven), root),
    )


def promote(conn: apsw.Connection, layout: Layout, staged: Staged) -> BlobInfo:
    """Partial -> complete: commits the finished download's staged files and drops its row."""
    info = commit_staged(conn, layout, staged)
    drop_partial(conn, staged.root)
    return info


def drop_partial(conn: apsw.Connection, root: bytes) -> None:
    """Partial -> none; the caller deletes the download's files (or pends their deletion)."""
    conn.execute("DELETE FROM partials WHERE root = ?", (root,))


# -- complete -> reference or none ------------------------------------------------------------


def hand_over(
    conn: apsw.Connection, layout: Layout, root: bytes, path: Path, mtime_ns: int
) -> Path | None:
    """An exported file at `path` now holds blob `root`: an owned blob becomes a reference to it
    and its data file is pended for deletion (returned); a reference to `path` takes the file's
    new mtime. Any other state is left as it is."""
    row = conn.execute("SELECT location, source FROM blobs WHERE root = ?", (root,)).fetchone()
    if row is None or row[0] == "inline":
        return None
    if row[0] == "reference":
        if row[1] == str(path):
            conn.execute("UPDATE blobs SET source_mtime_ns = ? WHERE root = ?", (mtime_ns, root))
        return None
    conn.execute(
        "UPDATE blobs SET location = 'reference', source = ?, source_mtime_ns = ? WHERE root = ?",
        (str(path), mtime_ns, root),
    )
    data = layout.blob_data(root)
    pend_deletes(conn, layout, [data])
    return data


def delete(conn: apsw.Connection, layout: Layout, root: bytes) -> bool:
    """Complete -> none: drops the row and pends the store's own files for deletion (the user's
    file behind a reference is never touched); returns whether there was a row."""
    row = conn.execute("DELETE FROM blobs WHERE root = ? RETURNING location", (root,)).fetchone()
    if row is None:
        return False
    pend_deletes(conn, layout, own_files(layout, root, cast(Location, row[0])))
    return True
