"""The access layer's tables and its migrations, and the data directory's whole schema.

The store and the access layer share one database file and one `PRAGMA user_version`, so their
migrations form one sequence: each step keeps the number it shipped with (the store's tables
are step 1, the first access tables step 2) and `MIGRATIONS` is the union, in order. A new step
of either layer takes the next free number. Databases written before access became its own
package are at step 2 of the same sequence and open unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import cast

import apsw

from ringdrop.errors import RingdropError
from ringdrop.store.blobs import read_blob
from ringdrop.store.collection import MAX_COLLECTION_BYTES, member_roots
from ringdrop.store.db import Migration
from ringdrop.store.layout import Layout
from ringdrop.store.schema import MIGRATIONS as STORE_MIGRATIONS

__all__ = ["ACCESS_MIGRATIONS", "MIGRATIONS", "OPEN_RING", "OPEN_RING_ID", "insert_members"]

# The built-in ring, as the first migration creates it.
OPEN_RING = "open"
OPEN_RING_ID = 1

# Names compare case-insensitively (NOCASE folds ASCII only, and names are ASCII only).
# Privileges and upload outcomes are checked in Python, not by CHECK constraints, because their
# lists are meant to grow and SQLite cannot change a CHECK without rebuilding the table.
_ACCESS_TABLES = """
CREATE TABLE rings (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE COLLATE NOCASE,
    created_at REAL NOT NULL
) STRICT;
INSERT INTO rings (id, name, created_at) VALUES (1, 'open', unixepoch('subsec'));

-- The peer book. A peer is added when it is given a nickname, a membership or a grant.
CREATE TABLE peers (
    peer_id BLOB PRIMARY KEY CHECK (length(peer_id) = 32),
    nickname TEXT UNIQUE COLLATE NOCASE,
    added_at REAL NOT NULL
) STRICT, WITHOUT ROWID;

-- expires_at NULL: for good. A membership admits its peer while now < expires_at.
CREATE TABLE ring_members (
    ring_id INTEGER NOT NULL REFERENCES rings (id) ON DELETE CASCADE,
    peer_id BLOB NOT NULL REFERENCES peers (peer_id) ON DELETE CASCADE,
    expires_at REAL,
    added_at REAL NOT NULL,
    PRIMARY KEY (ring_id, peer_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX ring_members_by_peer ON ring_members (peer_id, ring_id);

-- Content linked to rings. The content need not be in the blob store (yet).
CREATE TABLE attachments (
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    permission TEXT NOT NULL CHECK (permission IN ('read', 'write', 'delete')),
    ring_id INTEGER NOT NULL REFERENCES rings (id) ON DELETE CASCADE,
    attached_at REAL NOT NULL,
    PRIMARY KEY (hash, permission, ring_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX attachments_by_ring ON attachments (ring_id, permission);

-- What the catalog shows for attached content; a hash names one content, so it never goes stale.
CREATE TABLE content (
    hash BLOB PRIMARY KEY CHECK (length(hash) = 32),
    name TEXT,
    format TEXT CHECK (format IN ('raw', 'collection')),
    size INTEGER CHECK (size >= 0)
) STRICT, WITHOUT ROWID;

-- Which collections hold which blobs, so that attaching a collection admits its members.
-- Recorded when a collection is imported or received; a collection's hash fixes its members.
CREATE TABLE collection_members (
    member BLOB NOT NULL CHECK (length(member) = 32),
    collection BLOB NOT NULL CHECK (length(collection) = 32),
    PRIMARY KEY (member, collection)
) STRICT, WITHOUT ROWID;
CREATE INDEX collection_members_by_collection ON collection_members (collection);

CREATE TABLE grants (
    peer_id BLOB NOT NULL REFERENCES peers (peer_id) ON DELETE CASCADE,
    privilege TEXT NOT NULL,
    granted_at REAL NOT NULL,
    PRIMARY KEY (peer_id, privilege)
) STRICT, WITHOUT ROWID;

-- Logs keep the peer's id, not a reference: history outlives removal from the peer book.
CREATE TABLE access_log (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    peer_id BLOB NOT NULL,
    hash BLOB NOT NULL,
    operation TEXT NOT NULL,
    allowed INTEGER NOT NULL CHECK (allowed IN (0, 1)),
    ring TEXT,
    reason TEXT NOT NULL
) STRICT;

CREATE TABLE uploads (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    peer_id BLOB NOT NULL,
    hash BLOB NOT NULL,
    bytes_sent INTEGER NOT NULL CHECK (bytes_sent >= 0),
    outcome TEXT NOT NULL
) STRICT;
"""

# Where peers were reached: the addresses of the newest ticket of theirs that this node used,
# best first, so that `remote list NICKNAME` can reach a sharer without a ticket. Not tied to
# the peer book by a foreign key: using a ticket does not enter its sharer in the book. Before
# this step they were kept in addresses.json, which is ignored (see `Access.remember_addresses`).
_PEER_ADDRESSES = """
CREATE TABLE peer_addresses (
    peer_id BLOB NOT NULL CHECK (length(peer_id) = 32),
    position INTEGER NOT NULL CHECK (position >= 0),
    ip TEXT NOT NULL,
    port INTEGER NOT NULL CHECK (port BETWEEN 0 AND 65535),
    learnt_at REAL NOT NULL,
    PRIMARY KEY (peer_id, position)
) STRICT, WITHOUT ROWID;
"""

# Each collection this node recorded (shared as a folder, or received as one) with its members'
# roots in the collection's order, 32 bytes each: a members request is answered from this
# record (index to root), never from bytes parsed when the request comes. A rowid table, so
# that one member's root is read without loading the list (SQLite's incremental blob I/O).
_COLLECTIONS = """
CREATE TABLE collections (
    id INTEGER PRIMARY KEY,
    hash BLOB NOT NULL UNIQUE CHECK (length(hash) = 32),
    count INTEGER NOT NULL CHECK (count >= 0),
    members BLOB NOT NULL CHECK (length(members) = 32 * count)
) STRICT;
"""


def _record_collections(conn: apsw.Connection) -> None:
    """Creates `collections` and fills it for the collections recorded before it existed, from
    their blobs in the store (verified against their roots), where the member list read there is
    exactly the one recorded. A collection whose blob is gone stays out: its members are still
    admitted one by one through `collection_members`."""
    conn.execute(_COLLECTIONS)
    layout = Layout(Path(conn.filename).parent)
    recorded = [
        bytes(cast(bytes, c))
        for (c,) in conn.execute("SELECT DISTINCT collection FROM collection_members")
    ]
    for collection in recorded:
        try:
            roots = member_roots(read_blob(conn, layout, collection, MAX_COLLECTION_BYTES))
        except (RingdropError, OSError):
            continue
        members = {
            bytes(cast(bytes, m))
            for (m,) in conn.execute(
                "SELECT member FROM collection_members WHERE collection = ?", (collection,)
            )
        }
        if set(roots) == members:
            insert_members(conn, collection, roots)


def insert_members(conn: apsw.Connection, collection: bytes, roots: Sequence[bytes]) -> None:
    """Records the ordered member list of `collection` in the caller's transaction, unless it
    is recorded already (a collection's root fixes its members)."""
    conn.execute(
        "INSERT INTO collections (hash, count, members) VALUES (?, ?, zeroblob(?)) "
        "ON CONFLICT (hash) DO NOTHING",
        (collection, len(roots), 32 * len(roots)),
    )
    if not conn.changes() or not roots:
        return
    # Written a slice at a time: a million members never sit in memory as one 32 MB string.
    with conn.blob_open("main", "collections", "members", conn.last_insert_rowid(), True) as blob:
        for start in range(0, len(roots), _WRITE_MEMBERS):
            blob.write(b"".join(roots[start : start + _WRITE_MEMBERS]))


_WRITE_MEMBERS = 32768

# A peer's repeated denials share one access-log row: how many it stands for, and the last one's
# time (NULL for one). Old rows stand for one decision each.
_REPEATED_DENIALS = """
ALTER TABLE access_log ADD COLUMN count INTEGER NOT NULL DEFAULT 1 CHECK (count >= 1);
ALTER TABLE access_log ADD COLUMN last_at REAL;
"""

# A single file's modification time and executable bit, which its ticket carries (a blob's root
# covers only its bytes; a folder's files carry theirs in the collection). Recorded when the file
# is shared or received, so that every ticket printed for it later carries them again. Here,
# beside the collections' members, rather than on the store's tags: when it was added, a list of
# steps could not skip numbers, and the store's own were numbered 1 alone.
_FILE_METADATA = """
CREATE TABLE file_metadata (
    root BLOB PRIMARY KEY CHECK (length(root) = 32),
    mtime_ns INTEGER,
    executable INTEGER NOT NULL CHECK (executable IN (0, 1))
) STRICT, WITHOUT ROWID;
"""

# Rings as groups (issue 24). An own ring gains a random id (`uid`, none for the open ring), the
# version of its newest signed manifest, and whether members may re-serve. Every signed manifest
# this node holds, its own and those received from owners or other members, is in `manifests`
# (the raw signed bytes and the fields the gate reads), its members in `manifest_members`, keyed
# by peer first so that the member-side gate is one indexed lookup. `received_under` says under
# which rings content was received: a member re-serves only that. `providers` are the members
# that said they hold a root, with how they are reached.
_RING_MANIFESTS = """
ALTER TABLE rings ADD COLUMN uid BLOB CHECK (uid IS NULL OR length(uid) = 16);
ALTER TABLE rings ADD COLUMN version INTEGER NOT NULL DEFAULT 0 CHECK (version >= 0);
ALTER TABLE rings ADD COLUMN members_serve INTEGER NOT NULL DEFAULT 1
    CHECK (members_serve IN (0, 1));
UPDATE rings SET uid = randomblob(16) WHERE id <> 1;
CREATE UNIQUE INDEX rings_by_uid ON rings (uid);

CREATE TABLE manifests (
    uid BLOB PRIMARY KEY CHECK (length(uid) = 16),
    owner BLOB NOT NULL CHECK (length(owner) = 32),
    version INTEGER NOT NULL CHECK (version >= 0),
    issued_at INTEGER NOT NULL,
    valid_until INTEGER NOT NULL,
    members_serve INTEGER NOT NULL CHECK (members_serve IN (0, 1)),
    name TEXT NOT NULL,
    raw BLOB NOT NULL,
    stored_at REAL NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE manifest_members (
    peer_id BLOB NOT NULL CHECK (length(peer_id) = 32),
    uid BLOB NOT NULL REFERENCES manifests (uid) ON DELETE CASCADE,
    expires_at INTEGER,
    PRIMARY KEY (peer_id, uid)
) STRICT, WITHOUT ROWID;
CREATE INDEX manifest_members_by_ring ON manifest_members (uid);

CREATE TABLE received_under (
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    uid BLOB NOT NULL CHECK (length(uid) = 16),
    received_at REAL NOT NULL,
    PRIMARY KEY (hash, uid)
) STRICT, WITHOUT ROWID;

CREATE TABLE providers (
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    peer_id BLOB NOT NULL CHECK (length(peer_id) = 32),
    relay TEXT,
    addresses TEXT NOT NULL,
    at REAL NOT NULL,
    PRIMARY KEY (hash, peer_id)
) STRICT, WITHOUT ROWID;

-- An upload a member made and the receiver reported: `via` is the member that sent the bytes.
ALTER TABLE uploads ADD COLUMN via BLOB CHECK (via IS NULL OR length(via) = 32);
"""

# A ring's news (issue 25). On the owner's side: the ring's last sequence number, one row per root
# ever attached to it (its newest announcement, a share or a withdrawal, and its number), how far
# each member has been told, and how members said they are reached. On a member's side: the
# inbox (one row per ring and root, with the newest signed announcement about it), the last
# sequence number had of each ring, and the rings followed into folders.
_NEWS = """
ALTER TABLE rings ADD COLUMN sequence INTEGER NOT NULL DEFAULT 0 CHECK (sequence >= 0);

CREATE TABLE announced (
    ring_id INTEGER NOT NULL REFERENCES rings (id) ON DELETE CASCADE,
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    sequence INTEGER NOT NULL CHECK (sequence > 0),
    kind TEXT NOT NULL CHECK (kind IN ('share', 'withdraw')),
    at REAL NOT NULL,
    PRIMARY KEY (ring_id, hash)
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX announced_by_sequence ON announced (ring_id, sequence);

CREATE TABLE announce_sent (
    ring_id INTEGER NOT NULL REFERENCES rings (id) ON DELETE CASCADE,
    peer_id BLOB NOT NULL CHECK (length(peer_id) = 32),
    sequence INTEGER NOT NULL CHECK (sequence >= 0),
    PRIMARY KEY (ring_id, peer_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE member_reach (
    peer_id BLOB PRIMARY KEY CHECK (length(peer_id) = 32),
    relay TEXT,
    addresses TEXT NOT NULL,
    at REAL NOT NULL
) STRICT, WITHOUT ROWID;

CREATE TABLE inbox (
    id INTEGER PRIMARY KEY,
    uid BLOB NOT NULL CHECK (length(uid) = 16),
    hash BLOB NOT NULL CHECK (length(hash) = 32),
    owner BLOB NOT NULL CHECK (length(owner) = 32),
    ring TEXT NOT NULL,
    sequence INTEGER NOT NULL CHECK (sequence > 0),
    name TEXT NOT NULL,
    format TEXT NOT NULL CHECK (format IN ('blob', 'collection')),
    size INTEGER NOT NULL CHECK (size >= 0),
    announced_at REAL NOT NULL,
    arrived_at REAL NOT NULL,
    asked INTEGER NOT NULL CHECK (asked IN (0, 1)),
    state TEXT NOT NULL
        CHECK (state IN ('new', 'fetching', 'received', 'dismissed', 'withdrawn')),
    raw BLOB NOT NULL,
    path TEXT,
    fetcher INTEGER,
    note TEXT,
    UNIQUE (uid, hash)
) STRICT;
CREATE INDEX inbox_by_state ON inbox (state, id);

CREATE TABLE ring_cursors (
    uid BLOB PRIMARY KEY CHECK (length(uid) = 16),
    sequence INTEGER NOT NULL CHECK (sequence >= 0)
) STRICT, WITHOUT ROWID;

CREATE TABLE follows (
    id INTEGER PRIMARY KEY,
    owner BLOB NOT NULL CHECK (length(owner) = 32),
    ring TEXT NOT NULL COLLATE NOCASE,
    uid BLOB CHECK (uid IS NULL OR length(uid) = 16),
    dest TEXT NOT NULL,
    existing TEXT NOT NULL CHECK (existing IN ('refuse', 'rename', 'force')),
    max_size INTEGER CHECK (max_size IS NULL OR max_size >= 0),
    created_at REAL NOT NULL,
    UNIQUE (owner, ring)
) STRICT;
"""

ACCESS_MIGRATIONS: tuple[Migration, ...] = (
    Migration(2, "rings, peer book, grants, content links, access and upload logs", _ACCESS_TABLES),
    Migration(3, "the addresses peers were reached at", _PEER_ADDRESSES),
    Migration(4, "each collection's members in order", _record_collections),
    Migration(5, "repeated denials in one access-log row", _REPEATED_DENIALS),
    Migration(6, "a single file's time and executable bit", _FILE_METADATA),
    Migration(7, "signed ring manifests, content received under rings, providers", _RING_MANIFESTS),
    Migration(8, "ring news: announcements sent, the inbox, followed rings", _NEWS),
)

MIGRATIONS: tuple[Migration, ...] = tuple(
    sorted((*STORE_MIGRATIONS, *ACCESS_MIGRATIONS), key=lambda m: m.version)
)
"""Every step of the data directory's database, the store's and access's, in order."""
