"""The store's tables, as its steps of the database's migrations.

Never edit a migration that has shipped: add the next one. Each runs once per database (those
a database lacks all in one transaction) and leaves `PRAGMA user_version` at its number. The
numbers are shared with the access layer, which keeps its tables in the same database
(`ringdrop.access.schema` assembles the whole sequence); the store's steps alone make a
store-only database (tests, benchmarks).
"""

from __future__ import annotations

from ringdrop.store.db import Migration

__all__ = ["MIGRATIONS"]

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

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "blobs, partial downloads, tags, temp tags", _STORE_TABLES),
)
