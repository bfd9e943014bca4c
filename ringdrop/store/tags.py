"""Tags (named roots that GC keeps) and temp tags (protection for work in flight).

A tag is unique by name. Content the user imports or receives is tagged by its root's hex, so two
files with the same base name never share (and overwrite) a tag; the file name people see is kept
beside it as `display_name`.

Temp tags belong to a *lease*: a file under leases/ that the owning Store holds an flock on. When
the owner exits or is killed the kernel drops the lock, and GC removes the lease's temp tags.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from typing import cast, get_args

import apsw

from ringdrop.errors import NotFoundError
from ringdrop.store.db import Database
from ringdrop.store.files import FileLock
from ringdrop.store.layout import Layout
from ringdrop.ticket import Format

__all__ = [
    "Format",
    "Lease",
    "Tag",
    "TempTag",
    "check_format",
    "default_tag_name",
    "format_from_sql",
    "format_to_sql",
]

FORMATS: tuple[Format, ...] = get_args(Format)


def default_tag_name(root: bytes) -> str:
    """The stable, unique tag of imported or received content: its root in hex."""
    return root.hex()


@dataclass(frozen=True)
class Tag:
    name: str
    root: bytes
    format: Format
    display_name: str | None
    created_at: float


def check_format(format: str) -> Format:
    if format not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, not {format!r}")
    return format


# The database spells a blob 'raw', as the first schema did: its CHECK constraints cannot change
# without rebuilding the tables, and the word never leaves SQL. A collection is 'collection'.
_SQL_BLOB = "raw"


def format_to_sql(format: Format) -> str:
    """How the database's `format` columns spell `format`."""
    return _SQL_BLOB if check_format(format) == "blob" else format


def format_from_sql(text: str) -> Format:
    """The format a database `format` column holds."""
    return "blob" if text == _SQL_BLOB else check_format(text)


def set_tag(
    conn: apsw.Connection, name: str, root: bytes, format: Format, display_name: str | None
) -> Tag:
    """Creates or repoints the tag `name` (inside the caller's transaction)."""
    check_format(format)
    if len(root) != 32:
        raise ValueError("a root hash has 32 bytes")
    now = time.time()
    conn.execute(
        "INSERT INTO tags (name, root, format, display_name, created_at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (name) DO UPDATE SET root = excluded.root, format = excluded.format, "
        "display_name = excluded.display_name",
        (name, root, format_to_sql(format), display_name, now),
    )
    return get_tag(conn, name) or Tag(name, root, format, display_name, now)


def get_tag(conn: apsw.Connection, name: str) -> Tag | None:
    row = conn.execute(
        "SELECT name, root, format, display_name, created_at FROM tags WHERE name = ?", (name,)
    ).fetchone()
    return None if row is None else _tag(row)


def list_tags(conn: apsw.Connection) -> list[Tag]:
    rows = conn.execute(
        "SELECT name, root, format, display_name, created_at FROM tags ORDER BY name"
    ).fetchall()
    return [_tag(row) for row in rows]


# The name people see for a root: one lookup in the tags_by_root index, however many tags exist.
DISPLAY_NAME = (
    "SELECT display_name FROM tags WHERE root = ? AND display_name IS NOT NULL "
    "ORDER BY name LIMIT 1"
)

# Every tag whose root is a complete blob, with the blob's size: one query for a whole listing.
TAGGED_BLOBS = (
    "SELECT t.name, t.root, t.format, t.display_name, t.created_at, b.size "
    "FROM tags AS t JOIN blobs AS b ON b.root = t.root ORDER BY t.created_at DESC, t.name"
)


def display_name(conn: apsw.Connection, root: bytes) -> str | None:
    row = conn.execute(DISPLAY_NAME, (root,)).fetchone()
    return None if row is None else cast(str, row[0])


def list_tagged_blobs(conn: apsw.Connection) -> list[tuple[Tag, int]]:
    return [(_tag(tuple(row[:5])), cast(int, row[5])) for row in conn.execute(TAGGED_BLOBS)]


def delete_tag(conn: apsw.Connection, name: str) -> None:
    conn.execute("DELETE FROM tags WHERE name = ?", (name,))
    if conn.changes() == 0:
        raise NotFoundError(f"there is no tag named {name!r}")


def _tag(row: tuple[object, ...]) -> Tag:
    name, root, format, display_name, created_at = row
    return Tag(
        name=cast(str, name),
        root=bytes(cast(bytes, root)),
        format=format_from_sql(cast(str, format)),
        display_name=cast(str | None, display_name),
        created_at=cast(float, created_at),
    )


class Lease:
    """This Store's claim on its temp tags: a lock file held for the Store's lifetime."""

    def __init__(self, db: Database, layout: Layout) -> None:
        self._db = db
        self._layout = layout
        self._lock: FileLock | None = None
        self.ident = secrets.token_hex(12)

    def temp_tag(self, root: bytes, format: Format = "blob") -> TempTag:
        """Protects `root` from GC until the temp tag is released or this process dies."""
        with self._db.transaction() as conn:
            return TempTag(self._db, self.add(conn, [root], format)[0])

    def add(self, conn: apsw.Connection, roots: list[bytes], format: Format) -> list[int]:
        """Temp-tags `roots` in the caller's transaction; returns the temp tag ids."""
        spelt = format_to_sql(format)
        self._hold()
        return [
            cast(int, row[0])
            for row in conn.executemany(
                "INSERT INTO temp_tags (root, format, lease) VALUES (?, ?, ?) RETURNING id",
                [(root, spelt, self.ident) for root in roots],
            )
        ]

    def close(self) -> None:
        """Drops this lease's temp tags and the lease itself."""
        if self._lock is None:
            return
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM temp_tags WHERE lease = ?", (self.ident,))
        self._lock.release(unlink=True)
        self._lock = None

    def _hold(self) -> None:
        # The lock is held before the first temp tag row exists, so GC never sees a temp tag
        # whose lease looks dead while its owner is alive.
        if self._lock is None:
            lock = FileLock(self._layout.leases / f"{self.ident}.lock")
            lock.acquire(blocking=True)
            self._lock = lock


def reap_dead_leases(db: Database, layout: Layout) -> int:
    """Deletes the temp tags of leases whose owners died; returns how many were dropped."""
    with db.snapshot() as conn:
        leases = {cast(str, r[0]) for r in conn.execute("SELECT DISTINCT lease FROM temp_tags")}
    leases.update(p.stem for p in layout.leases.glob("*.lock"))
    dropped = 0
    for ident in sorted(leases):
        lock = FileLock(layout.leases / f"{ident}.lock")
        if not lock.acquire(blocking=False):
            continue
        try:
            with db.transaction() as conn:
                conn.execute("DELETE FROM temp_tags WHERE lease = ?", (ident,))
                dropped += conn.changes()
        finally:
            lock.release(unlink=True)
    return dropped


class TempTag:
    """One temp tag; `release()` (or leaving the `with` block) lets GC have the root again."""

    def __init__(self, db: Database, ident: int) -> None:
        self._db = db
        self._id: int | None = ident

    def release(self) -> None:
        if self._id is not None:
            with self._db.transaction() as conn:
                conn.execute("DELETE FROM temp_tags WHERE id = ?", (self._id,))
            self._id = None

    def __enter__(self) -> TempTag:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
