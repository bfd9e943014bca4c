"""The store's tables, as its steps of the database's migrations.

Never edit a migration that has shipped: add the next one. Each runs once per database (those
a database lacks all in one transaction), is recorded as run, and `PRAGMA user_version` is the
highest run. The numbers are shared with the access layer, which keeps its tables in the same
database (`ringdrop.access.schema` assembles the whole sequence); the store's steps alone make a
store-only database (tests, benchmarks), which skips the access layer's numbers until a node
opens it and runs them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import apsw

from ringdrop.store.db import Database, Migration

__all__ = ["MIGRATIONS", "drop_old_journals"]

_STORE_TABLES = """
-- Complete blobs. 'inline' blobs (at most one 16 KiB chunk group, so no outboard) keep their
-- bytes in `data`; 'file' blobs live under blobs/; 'reference' blobs are served from the user's
-- file at `source`, which must still have the recorded size and mtime.
-- A rowid table, unlike the others: inline rows are up to 16 KiB, and appending them in rowid
-- order is several times faster than inserting them into a tree ordered by random hashes.
CREATE TABLE blobs (
    id INTEGER PRIMARY KEY,
    root BLOB NOT NULL UNIQUE CHECK (length(root) = 32),
    size INTEGER NOT NULL CHECK (size >= 0),
    location TEXT NOT NULL CHECK (location IN ('inline', 'file', 'reference')),
    data BLOB CHECK ((location = 'inline') = (data IS NOT NULL)),
    source TEXT CHECK ((location = 'reference') = (source IS NOT NULL)),
    source_mtime_ns INTEGER,
    created_at REAL NOT NULL
) STRICT;

-- Downloads in progress; their verified chunk groups are in the bitfield file, not here.
CREATE TABLE partials (
    root BLOB PRIMARY KEY CHECK (length(root) = 32),
    size INTEGER CHECK (size IS NULL OR size >= 0),
    size_proven INTEGER NOT NULL DEFAULT 0 CHECK (size_proven IN (0, 1)),
    created_at REAL NOT NULL
) STRICT, WITHOUT ROWID;

-- Named roots that GC keeps; a 'collection' tag also keeps the collection's members.
CREATE TABLE tags (
    name TEXT PRIMARY KEY,
    root BLOB NOT NULL CHECK (length(root) = 32),
    format TEXT NOT NULL CHECK (format IN ('raw', 'collection')),
    display_name TEXT,
    created_at REAL NOT NULL
) STRICT;
CREATE INDEX tags_by_root ON tags (root);

-- Protection for work in flight, owned by a process's lease (a flock'd file under leases/):
-- when the owner dies its lease can be locked by anyone, and GC drops its temp tags.
CREATE TABLE temp_tags (
    id INTEGER PRIMARY KEY,
    root BLOB NOT NULL CHECK (length(root) = 32),
    format TEXT NOT NULL CHECK (format IN ('raw', 'collection')),
    lease TEXT NOT NULL
) STRICT;
CREATE INDEX temp_tags_by_lease ON temp_tags (lease);

-- Files (relative to the data directory) whose rows are gone but which may still exist; they
-- are unlinked under the write lock, before anything new may take their path.
CREATE TABLE pending_deletes (
    path TEXT PRIMARY KEY
) STRICT, WITHOUT ROWID;
"""

# Exports being put in place (`export.py`): the row is written just before the result takes
# its real name and deleted in the transaction that hands the store's files over to it, so the
# next export of the same root finishes one that a crash interrupted in between.
_EXPORT_TABLES = """
CREATE TABLE exports (
    root BLOB PRIMARY KEY CHECK (length(root) = 32),
    target TEXT NOT NULL,
    temp TEXT NOT NULL,
    old TEXT  -- what a forced export moved aside from `target`, deleted once it is in place
) STRICT, WITHOUT ROWID;

-- The members whose store entries are to name the result once it is in place, by their name
-- below it ('' for a single file): store files to release, references to renew.
CREATE TABLE export_handovers (
    export BLOB NOT NULL REFERENCES exports (root) ON DELETE CASCADE,
    root BLOB NOT NULL CHECK (length(root) = 32),
    name TEXT NOT NULL,
    PRIMARY KEY (export, name)
) STRICT, WITHOUT ROWID;
"""


def _exports(conn: apsw.Connection) -> None:
    """The export journal's tables, holding what journal files an older version left."""
    conn.execute(_EXPORT_TABLES)
    # Before this step each journal was a file, exports/<root hex>.json in the data directory;
    # they go once this step is committed (`drop_old_journals`).
    for path in sorted((Path(conn.filename).parent / _OLD_JOURNALS).glob("*.json")):
        try:
            root = bytes.fromhex(path.stem)
            record = json.loads(path.read_bytes())
            old = str(record["old"]) if record.get("old") else None
            row = (root, str(record["target"]), str(record["temp"]), old)
            handover = [(root, bytes.fromhex(r), str(name)) for r, name in record["handover"]]
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            continue  # unreadable: as the older version did, there is nothing to finish
        if len(root) != 32 or not all(len(r) == 32 for _, r, _ in handover):
            continue
        conn.execute("INSERT INTO exports (root, target, temp, old) VALUES (?, ?, ?, ?)", row)
        conn.executemany(
            "INSERT OR IGNORE INTO export_handovers (export, root, name) VALUES (?, ?, ?)",
            handover,
        )


def drop_old_journals(db: Database, data_dir: Path) -> None:
    """Deletes the journal files an older version left, once step 9 has taken them in."""
    if db.version >= _JOURNALS_IN_DATABASE:
        shutil.rmtree(data_dir / _OLD_JOURNALS, ignore_errors=True)


_OLD_JOURNALS = "exports"
_JOURNALS_IN_DATABASE = 9

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "blobs, partial downloads, tags, temp tags", _STORE_TABLES),
    Migration(_JOURNALS_IN_DATABASE, "the export journal", _exports),
)
