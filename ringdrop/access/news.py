"""A ring's news in the database: on the owner's side what it announced to each own ring (one
row per root, its newest announcement) and how far each member was told; on a member's side the
inbox, the last sequence number had of each ring, and the rings followed into folders.

The SQL behind `Access`'s news methods, each run in the caller's transaction. What a peer can
make this node store is bounded: a member keeps news only from a ring owner it knows (one in its
peer book or followed, or the owner of a ring it already holds), for rings whose manifest admits
it, at most `MAX_INBOX` entries a ring; an owner keeps one reach row per admitted member.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal, cast, get_args

import apsw

from ringdrop.access import groups
from ringdrop.access.announcement import Announcement, Kind
from ringdrop.access.manifest import Manifest, parse_manifest
from ringdrop.identity import PeerId
from ringdrop.store import OnExisting
from ringdrop.ticket import Format

__all__ = [
    "MAX_INBOX",
    "Delivery",
    "Follow",
    "InboxEntry",
    "InboxState",
    "Item",
    "OnExisting",
    "accept",
    "due",
    "followed",
    "mark_sent",
    "record",
    "refusal",
    "since",
]

MAX_INBOX = 10_000
"""Inbox entries kept per ring: past it, the oldest that need nothing more go first."""

InboxState = Literal["new", "fetching", "received", "dismissed", "withdrawn"]
INBOX_STATES: tuple[InboxState, ...] = get_args(InboxState)


@dataclass(frozen=True)
class Item:
    """One root's newest news in an own ring, as the owner signs it when it is sent."""

    root: bytes
    sequence: int
    kind: Kind
    at: float
    name: str | None
    format: Format | None
    size: int | None
    mtime_ns: int | None = None
    executable: bool = False
    """A single file's time and executable bit, where they were recorded."""


@dataclass(frozen=True)
class Delivery:
    """A member of an own ring that has not been told all of the ring's news."""

    ring_id: int
    uid: bytes
    ring: str
    peer: PeerId
    sent: int
    sequence: int


@dataclass(frozen=True)
class InboxEntry:
    """An announcement a member's node keeps: what, from whom, under which ring, and where it
    stands. `raw` is the owner's signed announcement (its reach, the file's metadata)."""

    id: int
    uid: bytes
    root: bytes
    owner: PeerId
    ring: str
    sequence: int
    name: str
    format: Format
    size: int
    announced_at: float
    arrived_at: float
    asked: bool
    state: InboxState
    raw: bytes
    path: str | None
    fetcher: int | None
    note: str | None


@dataclass(frozen=True)
class Follow:
    """A ring followed into a folder: what arrives for it is fetched into `dest`."""

    id: int
    owner: PeerId
    ring: str
    uid: bytes | None
    dest: str
    existing: OnExisting
    max_size: int | None
    created_at: float


# -- the owner's side ----------------------------------------------------------------------------


def record(conn: apsw.Connection, ring_id: int, root: bytes, kind: Kind, now: float) -> int | None:
    """Numbers a new announcement of `root` in this node's ring `ring_id` (a share, or the
    withdrawal of an earlier share); its sequence number, or None if there is nothing to say
    (the open ring, a root shared there already, a withdrawal of what was never announced)."""
    held = conn.execute(
        "SELECT kind FROM announced WHERE ring_id = ? AND hash = ?", (ring_id, root)
    ).fetchone()
    if (held is None and kind == "withdraw") or (held is not None and held[0] == kind):
        return None
    row = conn.execute(
        "UPDATE rings SET sequence = sequence + 1 WHERE id = ? AND uid IS NOT NULL "
        "RETURNING sequence",
        (ring_id,),
    ).fetchone()
    if row is None:
        return None
    sequence = cast(int, row[0])
    conn.execute(
        "INSERT INTO announced (ring_id, hash, sequence, kind, at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (ring_id, hash) DO UPDATE SET sequence = excluded.sequence, "
        "kind = excluded.kind, at = excluded.at",
        (ring_id, root, sequence, kind, now),
    )
    return sequence


def since(conn: apsw.Connection, ring_id: int, after: int, limit: int) -> tuple[list[Item], bool]:
    """The ring's news numbered after `after`, in order, at most `limit`, and whether there is
    more. A member that has nothing yet (`after` 0) is told no withdrawals."""
    rows = conn.execute(
        "SELECT n.hash, n.sequence, n.kind, n.at, c.name, c.format, c.size, f.mtime_ns, "
        "coalesce(f.executable, 0) FROM announced AS n "
        "LEFT JOIN content AS c ON c.hash = n.hash "
        "LEFT JOIN file_metadata AS f ON f.root = n.hash "
        "WHERE n.ring_id = ? AND n.sequence > ? AND (n.kind = 'share' OR ? > 0) "
        "ORDER BY n.sequence LIMIT ?",
        (ring_id, after, after, limit + 1),
    ).fetchall()
    items = [
        Item(
            bytes(cast(bytes, h)),
            cast(int, s),
            cast(Kind, k),
            cast(float, a),
            cast(str | None, n),
            None if f is None else ("collection" if f == "collection" else "blob"),
            cast(int | None, z),
            cast(int | None, m),
            bool(x),
        )
        for h, s, k, a, n, f, z, m, x in rows
    ]
    return items[:limit], len(items) > limit


# The members of each own ring that its newest manifest admits now, and how far each was told.
_DUE = """
SELECT r.id, r.uid, r.name, mm.peer_id, coalesce(s.sequence, 0), r.sequence
FROM rings AS r
JOIN manifests AS m ON m.uid = r.uid AND m.owner = :own
JOIN manifest_members AS mm ON mm.uid = m.uid
LEFT JOIN announce_sent AS s ON s.ring_id = r.id AND s.peer_id = mm.peer_id
WHERE r.sequence > coalesce(s.sequence, 0)
  AND m.valid_until > :now AND m.issued_at <= :now + 300
  AND (mm.expires_at IS NULL OR mm.expires_at > :now)
  AND mm.peer_id <> :own
"""


def due(conn: apsw.Connection, own: PeerId, now: float) -> list[Delivery]:
    """Every member of this node's rings, as their newest manifests admit them now, that has
    not been told all of a ring's news."""
    return [
        Delivery(
            cast(int, r),
            bytes(cast(bytes, u)),
            cast(str, n),
            PeerId(cast(bytes, p)),
            cast(int, s),
            cast(int, q),
        )
        for r, u, n, p, s, q in conn.execute(_DUE, {"own": own.raw, "now": now})
    ]


def mark_sent(conn: apsw.Connection, ring_id: int, peer: PeerId, sequence: int) -> None:
    """`peer` has the ring's news up to `sequence` (lower than before, too: it said so)."""
    conn.execute(
        "INSERT INTO announce_sent (ring_id, peer_id, sequence) VALUES (?, ?, ?) "
        "ON CONFLICT (ring_id, peer_id) DO UPDATE SET sequence = excluded.sequence",
        (ring_id, peer.raw, sequence),
    )


def own_ring(conn: apsw.Connection, uid: bytes) -> tuple[int, str, int] | None:
    """This node's ring of that id: its row id, name and last sequence number."""
    row = conn.execute("SELECT id, name, sequence FROM rings WHERE uid = ?", (uid,)).fetchone()
    return None if row is None else (cast(int, row[0]), cast(str, row[1]), cast(int, row[2]))


# -- a member's side -----------------------------------------------------------------------------


def trusts(conn: apsw.Connection, owner: PeerId) -> bool:
    """Whether news of a ring not held yet may come from `owner`: a peer this node entered in
    its peer book, or whose ring it follows."""
    return (
        conn.execute(
            "SELECT 1 FROM peers WHERE peer_id = ?1 UNION ALL "
            "SELECT 1 FROM follows WHERE owner = ?1 LIMIT 1",
            (owner.raw,),
        ).fetchone()
        is not None
    )


def accept(
    conn: apsw.Connection,
    own: PeerId,
    manifest: Manifest,
    announcements: Sequence[Announcement],
    *,
    asked: bool,
    now: float,
) -> tuple[str | None, list[int]]:
    """Keeps `announcements` of the ring of `manifest`, all checked to be signed by its owner
    for that ring, if this node may: it holds the ring (or the owner is one it trusts, or it
    `asked` the owner) and the newest manifest held admits it. Returns the reason for a
    refusal (None if accepted) and the ids of the inbox entries that changed."""
    refused = refusal(conn, manifest, asked=asked)
    if refused is not None:
        return refused, []
    groups.store(conn, manifest.raw, now, own=own, new_ring_ok=True)
    newest = conn.execute("SELECT raw FROM manifests WHERE uid = ?", (manifest.ring_id,)).fetchone()
    if newest is None or not parse_manifest(cast(bytes, newest[0])).admits(own, now):
        return "the ring's manifest does not admit this node", []
    changed = [
        entry
        for announcement in sorted(announcements, key=lambda a: a.sequence)
        if (entry := _keep(conn, announcement, asked=asked, now=now)) is not None
    ]
    top = max((a.sequence for a in announcements), default=0)
    conn.execute(
        "INSERT INTO ring_cursors (uid, sequence) VALUES (?, ?) "
        "ON CONFLICT (uid) DO UPDATE SET sequence = max(sequence, excluded.sequence)",
        (manifest.ring_id, top),
    )
    _trim(conn, manifest.ring_id)
    return None, changed


def refusal(conn: apsw.Connection, manifest: Manifest, *, asked: bool) -> str | None:
    """Why news of the ring of `manifest` is not for this node whatever it says (None if it may
    be): another key owns a ring of that id here, or the owner is unknown and was not asked."""
    held = conn.execute("SELECT owner FROM manifests WHERE uid = ?", (manifest.ring_id,)).fetchone()
    if held is not None and cast(bytes, held[0]) != manifest.owner.raw:
        return "another key owns a ring of that id here"
    if held is None and not (asked or trusts(conn, manifest.owner)):
        return "this node does not know the ring's owner"
    return None


def _keep(
    conn: apsw.Connection, announcement: Announcement, *, asked: bool, now: float
) -> int | None:
    a = announcement
    row = conn.execute(
        "SELECT id, sequence, state FROM inbox WHERE uid = ? AND hash = ?", (a.ring_id, a.root)
    ).fetchone()
    if row is not None and cast(int, row[1]) >= a.sequence:
        return None  # as new as what is held: news heard twice
    if a.kind == "withdraw":
        if row is None:
            return None
        conn.execute(
            "UPDATE inbox SET state = 'withdrawn', sequence = ?, raw = ?, ring = ? WHERE id = ?",
            (a.sequence, a.raw, a.ring_name, row[0]),
        )
        return cast(int, row[0])
    if row is not None:
        state = "new" if row[2] == "withdrawn" else row[2]
        conn.execute(
            "UPDATE inbox SET state = ?, sequence = ?, raw = ?, ring = ?, name = ?, format = ?, "
            "size = ?, announced_at = ?, note = NULL WHERE id = ?",
            (state, a.sequence, a.raw, a.ring_name, a.name, a.format, a.size, a.at, row[0]),
        )
        return cast(int, row[0])
    conn.execute(
        "INSERT INTO inbox (uid, hash, owner, ring, sequence, name, format, size, announced_at, "
        "arrived_at, asked, state, raw) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'new', ?)",
        (
            a.ring_id,
            a.root,
            a.owner.raw,
            a.ring_name,
            a.sequence,
            a.name,
            a.format,
            a.size,
            a.at,
            now,
            int(asked),
            a.raw,
        ),
    )
    return conn.last_insert_rowid()


def _trim(conn: apsw.Connection, uid: bytes) -> None:
    """Keeps a ring's newest `MAX_INBOX` entries, dropping first those that need nothing more
    (received, dismissed, withdrawn), oldest first."""
    (count,) = cast(
        tuple[int], conn.execute("SELECT count(*) FROM inbox WHERE uid = ?", (uid,)).fetchone()
    )
    if count <= MAX_INBOX:
        return
    conn.execute(
        "DELETE FROM inbox WHERE id IN (SELECT id FROM inbox WHERE uid = ? "
        "ORDER BY state IN ('new', 'fetching'), id LIMIT ?)",
        (uid, count - MAX_INBOX),
    )


def cursor(conn: apsw.Connection, uid: bytes) -> int:
    """The last sequence number had of the ring `uid` (0: none)."""
    row = conn.execute("SELECT sequence FROM ring_cursors WHERE uid = ?", (uid,)).fetchone()
    return 0 if row is None else cast(int, row[0])


_INBOX_COLUMNS = (
    "id, uid, hash, owner, ring, sequence, name, format, size, announced_at, arrived_at, asked, "
    "state, raw, path, fetcher, note"
)


def entries(
    conn: apsw.Connection, where: str = "", args: tuple[object, ...] = ()
) -> list[InboxEntry]:
    """Inbox entries (those `where` selects), oldest first."""
    sql = f"SELECT {_INBOX_COLUMNS} FROM inbox {where} ORDER BY id"  # noqa: S608
    return [_entry(tuple(row)) for row in conn.execute(sql, args)]


def _entry(row: tuple[object, ...]) -> InboxEntry:
    (i, u, h, o, r, s, n, f, z, an, ar, asked, state, raw, path, fetcher, note) = row
    return InboxEntry(
        cast(int, i),
        bytes(cast(bytes, u)),
        bytes(cast(bytes, h)),
        PeerId(cast(bytes, o)),
        cast(str, r),
        cast(int, s),
        cast(str, n),
        cast(Format, f),
        cast(int, z),
        cast(float, an),
        cast(float, ar),
        bool(asked),
        cast(InboxState, state),
        bytes(cast(bytes, raw)),
        cast(str | None, path),
        cast(int | None, fetcher),
        cast(str | None, note),
    )


def follows(conn: apsw.Connection) -> list[Follow]:
    return [
        Follow(
            cast(int, i),
            PeerId(cast(bytes, o)),
            cast(str, r),
            None if u is None else bytes(cast(bytes, u)),
            cast(str, d),
            cast(OnExisting, e),
            cast(int | None, m),
            cast(float, t),
        )
        for i, o, r, u, d, e, m, t in conn.execute(
            "SELECT id, owner, ring, uid, dest, existing, max_size, created_at FROM follows "
            "ORDER BY id"
        )
    ]


# New entries, not set aside with a note, of a followed ring: by the ring's id once known, else by
# its owner and name.
_FOLLOWED_ROWS = """
FROM inbox AS i JOIN follows AS f ON f.owner = i.owner
    AND (f.uid = i.uid OR (f.uid IS NULL AND f.ring = i.ring))
WHERE i.state = 'new' AND i.note IS NULL
"""
_FOLLOWED = f"SELECT i.id, f.id {_FOLLOWED_ROWS} ORDER BY i.id"
FOLLOWED_ANY = f"SELECT 1 {_FOLLOWED_ROWS} LIMIT 1"
"""Whether `followed` would find anything: a read, so that looking takes no write lock."""


def followed(conn: apsw.Connection) -> list[tuple[InboxEntry, Follow]]:
    """The new entries of followed rings that wait for nothing, with their follows, oldest
    first. A follow matched by name learns its ring's id, so that a renamed ring stays
    followed (another ring given the old name is not)."""
    pairs = conn.execute(_FOLLOWED).fetchall()
    if not pairs:
        return []
    by_id = {f.id: f for f in follows(conn)}
    found = []
    for entry_id, follow_id in pairs:
        (entry,) = entries(conn, "WHERE id = ?", (entry_id,))
        follow = by_id[cast(int, follow_id)]
        if follow.uid is None:
            conn.execute("UPDATE follows SET uid = ? WHERE id = ?", (entry.uid, follow.id))
            follow = by_id[follow.id] = replace(follow, uid=entry.uid)
        elif follow.uid != entry.uid:
            continue  # matched by the name an earlier entry already bound to another ring
        found.append((entry, follow))
    return found
