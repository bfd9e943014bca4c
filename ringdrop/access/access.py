"""`Access`: who may fetch what — rings, the peer book and where peers were reached, grants,
content links, and the logs — in the data directory's database.

The decision itself is in `decision.py`; a server judges with a read (`judge`), which never waits
for another process's write lock, and hands the log entries to a `LogWriter` that commits them in
batches on its own thread.
"""

from __future__ import annotations

import ipaddress
import itertools
import json
import math
import os
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, TypeVar, cast, get_args

import apsw

from ringdrop.access import groups, news
from ringdrop.access.announcement import Announcement
from ringdrop.access.decision import CATALOG, judge, log_entry
from ringdrop.access.manifest import RING_ID_BYTES, Manifest
from ringdrop.access.records import (
    NICKNAME_MAX,
    PEER_ID_CHARS,
    PEER_PREFIX_MIN,
    AccessLogEntry,
    Attachment,
    CatalogRow,
    Decision,
    Member,
    Operation,
    Peer,
    PeerRef,
    Permission,
    Privilege,
    Retention,
    RingInfo,
    Upload,
    UploadOutcome,
    check_nickname,
    check_ring_name,
    quoted,
)
from ringdrop.access.schema import OPEN_RING_ID, insert_members
from ringdrop.errors import (
    AccessDeniedError,
    AmbiguousError,
    NotFoundError,
    OpenRingError,
    StoreError,
)
from ringdrop.identity import Identity, PeerId, base32_decode, first_non_base32
from ringdrop.store.db import Database
from ringdrop.store.tags import check_format, format_from_sql, format_to_sql
from ringdrop.ticket import Address, Format

if TYPE_CHECKING:
    from ringdrop.access.log_writer import LogWriter

__all__ = [
    "NICKNAME",
    "Access",
    "insert_decision",
    "insert_decisions",
    "insert_uploads",
    "prune_logs",
]

_T = TypeVar("_T")

NICKNAME = "SELECT nickname FROM peers WHERE peer_id = ?"


class Access:
    """Rings, peers, grants and content links in the data directory's database.

    Every method is one transaction, so a change made by one process (a CLI command) is seen by
    the next decision of another (the server). Peers may be named by PeerId or by text: a peer
    id, a nickname, or at least 8 leading characters of a peer id in the peer book.
    """

    def __init__(self, db: Database) -> None:
        self._db = db
        self._writer: LogWriter | None = None

    def use_log_writer(self, writer: LogWriter | None) -> None:
        """Reads of the logs include the entries `writer` has not committed yet, so that this
        process sees its own entries at once; None when the writer is closed."""
        self._writer = writer

    # Rings

    def create_ring(self, name: str) -> RingInfo:
        check_ring_name(name)
        now = time.time()
        with self._db.transaction() as conn:
            existing = _one(conn, "SELECT name FROM rings WHERE name = ?", (name,))
            if existing is not None:
                raise StoreError(f"There is already a ring named '{existing[0]}'.")
            conn.execute(
                "INSERT INTO rings (name, created_at, uid) VALUES (?, ?, ?)",
                (name, now, os.urandom(RING_ID_BYTES)),
            )
        return RingInfo(name, 0, 0, now)

    def rename_ring(self, old: str, new: str) -> None:
        check_ring_name(new)
        with self._db.transaction() as conn:
            ring_id, old_name = _ring(conn, old)
            if ring_id == OPEN_RING_ID:
                raise OpenRingError("The open ring is built in and cannot be renamed.")
            clash = _one(conn, "SELECT name FROM rings WHERE name = ? AND id <> ?", (new, ring_id))
            if clash is not None:
                raise StoreError(
                    f"Cannot rename '{old_name}': there is already a ring named '{clash[0]}'."
                )
            conn.execute("UPDATE rings SET name = ? WHERE id = ?", (new, ring_id))

    def delete_ring(self, name: str) -> None:
        """Deletes the ring with its memberships and content links (not the content)."""
        with self._db.transaction() as conn:
            ring_id, _ = _ring(conn, name)
            if ring_id == OPEN_RING_ID:
                raise OpenRingError(
                    "The open ring is built in and cannot be deleted. To stop sharing content "
                    "with everyone, detach it from the open ring."
                )
            conn.execute("DELETE FROM rings WHERE id = ?", (ring_id,))

    def rings(self) -> list[RingInfo]:
        """Every ring, the open ring first, with its number of members and of attached roots."""
        with self._db.snapshot() as conn:
            rows = conn.execute(
                "SELECT r.name,"
                " (SELECT count(*) FROM ring_members AS m WHERE m.ring_id = r.id),"
                " (SELECT count(DISTINCT a.hash) FROM attachments AS a WHERE a.ring_id = r.id),"
                " r.created_at, r.members_serve, r.version "
                "FROM rings AS r ORDER BY r.id <> ?, r.name",
                (OPEN_RING_ID,),
            ).fetchall()
        return [
            RingInfo(
                cast(str, n), cast(int, m), cast(int, c), cast(float, t), bool(s), cast(int, v)
            )
            for n, m, c, t, s, v in rows
        ]

    def set_members_serve(self, ring: str, on: bool) -> None:
        """Whether the members of this node's `ring` may serve what they received under it
        (carried in its manifest)."""
        with self._db.transaction() as conn:
            ring_id, _ = _ring(conn, ring)
            if ring_id == OPEN_RING_ID:
                raise OpenRingError("The open ring has no members, so none can serve for it.")
            conn.execute("UPDATE rings SET members_serve = ? WHERE id = ?", (int(on), ring_id))

    # Ring manifests (see groups.py)

    def sign_ring(self, identity: Identity, ring: str, now: float | None = None) -> Manifest | None:
        """Signs and stores the next version of `ring`'s manifest; None for the open ring."""
        now = time.time() if now is None else now
        with self._db.transaction() as conn:
            ring_id, _ = _ring(conn, ring)
            if ring_id == OPEN_RING_ID:
                return None
            return groups.sign_own(conn, identity, ring_id, now)

    def sign_due(self, identity: Identity, now: float | None = None) -> list[Manifest]:
        """Signs again every ring of this node whose manifest is missing, older than its tables
        or past half its validity."""
        now = time.time() if now is None else now
        with self._db.snapshot() as conn:  # most of the time nothing is due: no write lock
            if not groups.own_due(conn, now):
                return []
        with self._db.transaction() as conn:
            return [groups.sign_own(conn, identity, r, now) for r in groups.own_due(conn, now)]

    def store_manifests(
        self, raws: Iterable[bytes], own: PeerId, *, new_ring_ok: bool, now: float | None = None
    ) -> list[Manifest]:
        """Keeps those of `raws` that are valid and newer than what is held (see
        `groups.store`); the others, forged ones included, are ignored. Returns those kept."""
        now = time.time() if now is None else now
        # Most pushes hold nothing new (and a stranger's never do): no write lock for those.
        with self._db.snapshot() as conn:
            wanted = [
                m
                for m in groups.parse_all(raws)
                if groups.storable(conn, m, now, own=own, new_ring_ok=new_ring_ok)
            ]
        if not wanted:
            return []
        kept = []
        with self._db.transaction() as conn:
            for manifest in wanted:
                stored = groups.store(conn, manifest.raw, now, own=own, new_ring_ok=new_ring_ok)
                if stored is not None:
                    kept.append(stored)
        return kept

    def manifest(self, ring_id: bytes) -> Manifest | None:
        """The newest manifest held of the ring `ring_id`."""
        with self._db.snapshot() as conn:
            return groups.held(conn, ring_id)

    def held_manifests(self, now: float | None = None) -> list[Manifest]:
        """Every valid manifest held, own and received, newest first."""
        now = time.time() if now is None else now
        with self._db.snapshot() as conn:
            raws = [
                bytes(cast(bytes, r))
                for (r,) in conn.execute(
                    "SELECT raw FROM manifests WHERE valid_until > ? ORDER BY issued_at DESC",
                    (now,),
                )
            ]
        return groups.parse_all(raws)

    def manifests_admitting(self, peer: PeerId, now: float | None = None) -> list[bytes]:
        now = time.time() if now is None else now
        with self._db.snapshot() as conn:
            return groups.admitting(conn, peer, now)

    def rings_answer(
        self, peer: PeerId, pushed: Sequence[Manifest], now: float | None = None
    ) -> list[bytes]:
        """What a RINGS request of `peer` that pushed `pushed` is answered with."""
        now = time.time() if now is None else now
        with self._db.snapshot() as conn:
            return groups.rings_answer(conn, peer, pushed, now)

    def manifests_for_root(
        self, peer: PeerId, root: bytes, now: float | None = None
    ) -> list[bytes]:
        """The manifests of the rings through which `peer` may read `root`."""
        _check_root(root)
        now = time.time() if now is None else now
        with self._db.snapshot() as conn:
            return groups.for_root(conn, peer, root, now)

    def record_received(self, root: bytes, manifests: Iterable[Manifest]) -> None:
        """Records that `root` was received under the rings of `manifests`: this node may serve
        it to their members, as their newest manifests allow."""
        _check_root(root)
        with self._db.transaction() as conn:
            groups.record_received(conn, root, manifests, time.time())

    def received_under(self, root: bytes) -> list[bytes]:
        """The ids of the rings `root` was received under."""
        with self._db.snapshot() as conn:
            return [
                bytes(cast(bytes, u))
                for (u,) in conn.execute("SELECT uid FROM received_under WHERE hash = ?", (root,))
            ]

    def add_provider(
        self, root: bytes, peer: PeerId, relay: str | None, addresses: Sequence[Address]
    ) -> None:
        """Records that `peer` holds `root`, and how it is reached."""
        _check_root(root)
        text = ",".join(f"{a.ip} {a.port}" for a in addresses)
        with self._db.transaction() as conn:
            groups.record_provider(conn, root, peer, relay, text, time.time())

    def providers(self, root: bytes) -> list[tuple[PeerId, str | None, list[Address]]]:
        """The members that said they hold `root`, newest first, with their relay and
        addresses."""
        _check_root(root)
        with self._db.snapshot() as conn:
            rows = groups.providers(conn, root)
        return [(p, r, [_address(t) for t in a.split(",") if t]) for p, r, a in rows]

    # A ring's news (see news.py): the owner's side

    def news_due(self, own: PeerId, now: float | None = None) -> list[news.Delivery]:
        """The members of this node's rings that have not been told all of a ring's news."""
        now = time.time() if now is None else now
        with self._db.snapshot() as conn:
            return news.due(conn, own, now)

    def news_since(self, ring_id: int, after: int, limit: int) -> tuple[list[news.Item], bool]:
        """This node's ring's news numbered after `after` (at most `limit`), and whether
        there is more."""
        with self._db.snapshot() as conn:
            return news.since(conn, ring_id, after, limit)

    def own_ring(self, uid: bytes) -> tuple[int, str, int] | None:
        """This node's ring of the id `uid`: its row id, name and last sequence number."""
        with self._db.snapshot() as conn:
            return news.own_ring(conn, uid)

    def mark_sent(
        self,
        ring_id: int,
        peer: PeerId,
        sequence: int,
        reach: tuple[str | None, Sequence[Address]] | None = None,
    ) -> None:
        """`peer` has the news of this node's ring `ring_id` up to `sequence`; with `reach`,
        it said (in a since request) that it is reached through that relay and at those
        addresses. One transaction: whoever learns how to reach the member from it also learns
        what it was told, and does not tell it again."""
        with self._db.transaction() as conn:
            news.mark_sent(conn, ring_id, peer, sequence)
            if reach is not None:
                relay, addresses = reach
                conn.execute(
                    "INSERT INTO member_reach (peer_id, relay, addresses, at) "
                    "VALUES (?, ?, ?, ?) ON CONFLICT (peer_id) DO UPDATE SET "
                    "relay = excluded.relay, addresses = excluded.addresses, at = excluded.at",
                    (peer.raw, relay, ",".join(f"{a.ip} {a.port}" for a in addresses), time.time()),
                )

    def sent_to(self, ring_id: int, peer: PeerId) -> int:
        """How far `peer` was told the news of this node's ring `ring_id` (0: nothing)."""
        with self._db.snapshot() as conn:
            row = _one(
                conn,
                "SELECT sequence FROM announce_sent WHERE ring_id = ? AND peer_id = ?",
                (ring_id, peer.raw),
            )
        return 0 if row is None else cast(int, row[0])

    def member_reach(self, peer: PeerId) -> tuple[str | None, list[Address]]:
        """The relay and addresses a member last said it is reached at (none known: nothing)."""
        with self._db.snapshot() as conn:
            row = _one(
                conn, "SELECT relay, addresses FROM member_reach WHERE peer_id = ?", (peer.raw,)
            )
        if row is None:
            return None, []
        return cast(str | None, row[0]), [_address(t) for t in cast(str, row[1]).split(",") if t]

    # A ring's news: a member's side

    def accept_news(
        self,
        own: PeerId,
        manifest: Manifest,
        announcements: Sequence[Announcement],
        *,
        asked: bool,
        now: float | None = None,
    ) -> tuple[str | None, list[int]]:
        """Keeps a ring owner's announcements if this node may (see `news.accept`): the reason
        for a refusal, or None, and the ids of the inbox entries that changed."""
        now = time.time() if now is None else now
        # A stranger's news is refused on a read: it never waits for the write lock.
        with self._db.snapshot() as conn:
            refused = news.refusal(conn, manifest, asked=asked)
        if refused is not None:
            return refused, []
        with self._db.transaction() as conn:
            return news.accept(conn, own, manifest, announcements, asked=asked, now=now)

    def ring_cursor(self, uid: bytes) -> int:
        """The last sequence number of the ring `uid`'s news this node has (0: none)."""
        with self._db.snapshot() as conn:
            return news.cursor(conn, uid)

    def news_owners(self, own: PeerId, now: float | None = None) -> list[PeerId]:
        """The owners to ask for news: of the rings held that admit this node, of the rings
        it follows, and the peers in its book whose tickets it used (they may have put it in
        a ring since)."""
        now = time.time() if now is None else now
        with self._db.snapshot() as conn:
            rows = conn.execute(
                "SELECT DISTINCT m.owner FROM manifests AS m JOIN manifest_members AS mm "
                "ON mm.uid = m.uid AND mm.peer_id = :own WHERE m.owner <> :own "
                "AND m.valid_until > :now AND (mm.expires_at IS NULL OR mm.expires_at > :now) "
                "UNION SELECT owner FROM follows UNION SELECT p.peer_id FROM peers AS p "
                "WHERE EXISTS (SELECT 1 FROM peer_addresses AS a WHERE a.peer_id = p.peer_id)",
                {"own": own.raw, "now": now},
            ).fetchall()
        return [PeerId(cast(bytes, r[0])) for r in rows]

    def inbox(self, state: news.InboxState | None = None) -> list[news.InboxEntry]:
        """The inbox, oldest first (only the entries in `state`, if given)."""
        with self._db.snapshot() as conn:
            if state is None:
                return news.entries(conn)
            return news.entries(conn, "WHERE state = ?", (state,))

    def inbox_entries(self, ids: Iterable[int]) -> list[news.InboxEntry]:
        wanted = json.dumps(sorted(set(ids)))
        with self._db.snapshot() as conn:
            return news.entries(conn, "WHERE id IN (SELECT value FROM json_each(?))", (wanted,))

    def set_inbox_state(
        self,
        entry: int,
        state: news.InboxState,
        *,
        path: str | None = None,
        fetcher: int | None = None,
        note: str | None = None,
        only_from: Sequence[news.InboxState] = news.INBOX_STATES,
    ) -> bool:
        """Moves an inbox entry to `state` (with where it was received, the fetching process,
        or why it waits), if it is in one of `only_from`; whether it was."""
        if state not in news.INBOX_STATES:
            raise ValueError(f"{state!r} is not an inbox state")
        with self._db.transaction() as conn:
            conn.execute(
                "UPDATE inbox SET state = ?, path = coalesce(?, path), fetcher = ?, note = ? "
                "WHERE id = ? AND state IN (SELECT value FROM json_each(?))",
                (state, path, fetcher, note, entry, json.dumps(list(only_from))),
            )
            return conn.changes() > 0

    def add_follow(
        self,
        owner: PeerId,
        ring: str,
        dest: str,
        existing: news.OnExisting,
        max_size: int | None,
    ) -> news.Follow:
        """Follows the ring `ring` of `owner` into `dest` (replacing an earlier follow of it);
        the owner enters the peer book, so that its news is taken."""
        check_ring_name(ring)
        with self._db.transaction() as conn:
            _enter_in_book(conn, owner, time.time())
            uid = _one(
                conn,
                "SELECT uid FROM manifests WHERE owner = ? AND name = ? COLLATE NOCASE",
                (owner.raw, ring),
            )
            conn.execute(
                "INSERT INTO follows (owner, ring, uid, dest, existing, max_size, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (owner, ring) DO UPDATE SET "
                "dest = excluded.dest, existing = excluded.existing, "
                "max_size = excluded.max_size",
                (
                    owner.raw,
                    ring,
                    None if uid is None else uid[0],
                    dest,
                    existing,
                    max_size,
                    time.time(),
                ),
            )
            return next(
                f for f in news.follows(conn) if f.owner == owner and f.ring.lower() == ring.lower()
            )

    def remove_follow(self, owner: PeerId, ring: str) -> None:
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM follows WHERE owner = ? AND ring = ?", (owner.raw, ring))
            if conn.changes() == 0:
                raise NotFoundError(
                    f"{_peer_name(conn, owner)}'s ring {quoted(ring)} is not followed here.",
                    kind="follow",
                )

    def follows(self) -> list[news.Follow]:
        with self._db.snapshot() as conn:
            return news.follows(conn)

    def followed(self) -> list[tuple[news.InboxEntry, news.Follow]]:
        """The new entries of followed rings that wait for nothing, with their follows."""
        with self._db.snapshot() as conn:
            if not conn.execute(news.FOLLOWED_ANY).fetchone():
                return []
        with self._db.transaction() as conn:
            return news.followed(conn)

    def add_member(self, ring: str, peer: PeerRef, expires_at: float | None = None) -> None:
        """Puts `peer` in `ring` (and in the peer book); if it is already a member, sets the
        membership's expiry to `expires_at` (None: for good)."""
        if expires_at is not None and not math.isfinite(expires_at):
            raise ValueError(f"expires_at must be a finite time, not {expires_at}")
        with self._db.transaction() as conn:
            ring_id, _ = _ring(conn, ring)
            if ring_id == OPEN_RING_ID:
                raise OpenRingError(
                    "The open ring admits every authenticated peer, so it has no members. "
                    "Add the peer to another ring."
                )
            peer_id = self._peer_id(conn, peer)
            now = time.time()
            _enter_in_book(conn, peer_id, now)
            conn.execute(
                "INSERT INTO ring_members (ring_id, peer_id, expires_at, added_at) "
                "VALUES (?, ?, ?, ?) "
                "ON CONFLICT (ring_id, peer_id) DO UPDATE SET expires_at = excluded.expires_at",
                (ring_id, peer_id.raw, expires_at, now),
            )

    def expire_member(self, ring: str, peer: PeerRef, at: float) -> None:
        """Ends a member's membership of `ring` at `at`; NotFoundError if it is no member."""
        if not math.isfinite(at):
            raise ValueError(f"at must be a finite time, not {at}")
        with self._db.transaction() as conn:
            ring_id, ring_name = _ring(conn, ring)
            peer_id = self._peer_id(conn, peer)
            conn.execute(
                "UPDATE ring_members SET expires_at = ? WHERE ring_id = ? AND peer_id = ?",
                (at, ring_id, peer_id.raw),
            )
            if conn.changes() == 0:
                raise NotFoundError(
                    f"The ring '{ring_name}' does not include {_peer_name(conn, peer_id)}."
                )

    def remove_member(self, ring: str, peer: PeerRef) -> None:
        with self._db.transaction() as conn:
            ring_id, ring_name = _ring(conn, ring)
            peer_id = self._peer_id(conn, peer)
            conn.execute(
                "DELETE FROM ring_members WHERE ring_id = ? AND peer_id = ?",
                (ring_id, peer_id.raw),
            )
            if conn.changes() == 0:
                raise NotFoundError(
                    f"The ring '{ring_name}' does not include {_peer_name(conn, peer_id)}."
                )

    def members(self, ring: str) -> list[Member]:
        """The ring's members, expired ones included (see `Member.is_active`)."""
        with self._db.snapshot() as conn:
            ring_id, _ = _ring(conn, ring)
            rows = conn.execute(
                "SELECT m.peer_id, p.nickname, m.expires_at, m.added_at "
                "FROM ring_members AS m JOIN peers AS p USING (peer_id) "
                "WHERE m.ring_id = ? ORDER BY p.nickname IS NULL, p.nickname, m.peer_id",
                (ring_id,),
            ).fetchall()
        return [
            Member(
                PeerId(cast(bytes, p)),
                cast(str | None, n),
                cast(float | None, e),
                cast(float, t),
            )
            for p, n, e, t in rows
        ]

    # The peer book

    def add_peer(self, peer_id: PeerId | str, nickname: str | None = None) -> Peer:
        """Enters a peer (by its id) in the book; a peer already there keeps its nickname
        unless a new one is given."""
        if isinstance(peer_id, str):
            peer_id = PeerId.parse(peer_id)
        with self._db.transaction() as conn:
            _enter_in_book(conn, peer_id, time.time())
            if nickname is not None:
                _set_nickname(conn, peer_id, nickname)
            return _book_entry(conn, peer_id)

    def set_nickname(self, peer: PeerRef, nickname: str | None) -> None:
        """Gives a peer in the book a nickname (unique, whatever its case); None clears it."""
        with self._db.transaction() as conn:
            peer_id = self._known_peer(conn, peer)
            if nickname is None:
                conn.execute("UPDATE peers SET nickname = NULL WHERE peer_id = ?", (peer_id.raw,))
            else:
                _set_nickname(conn, peer_id, nickname)

    def remove_peer(self, peer: PeerRef) -> None:
        """Removes a peer from the book, and with it from every ring and grant."""
        with self._db.transaction() as conn:
            peer_id = self._known_peer(conn, peer)
            conn.execute("DELETE FROM peers WHERE peer_id = ?", (peer_id.raw,))

    def peers(self) -> list[Peer]:
        with self._db.snapshot() as conn:
            rows = conn.execute(
                "SELECT peer_id, nickname, added_at FROM peers "
                "ORDER BY nickname IS NULL, nickname, peer_id"
            ).fetchall()
        return [
            Peer(PeerId(cast(bytes, p)), cast(str | None, n), cast(float, t)) for p, n, t in rows
        ]

    def knows(self, peers: Sequence[PeerId]) -> list[bool]:
        """For each of `peers`, whether it is in the peer book (every ring member is)."""
        with self._db.snapshot() as conn:
            found = {
                cast(bytes, row[0])
                for peer in peers
                for row in conn.execute("SELECT peer_id FROM peers WHERE peer_id = ?", (peer.raw,))
            }
        return [peer.raw in found for peer in peers]

    def resolve_peer(self, text: str) -> PeerId:
        """The peer that `text` names: a whole peer id (in the book or not), a nickname, or the
        first 8 or more characters of the id of a peer in the book."""
        with self._db.snapshot() as conn:
            return _resolve(conn, text)

    def remember_addresses(self, peer: PeerId, addresses: Sequence[Address]) -> None:
        """Records `addresses` (best first) as where `peer` is reached, replacing what was known,
        in one transaction: concurrent processes never lose each other's peers.

        An `addresses.json` left in the data directory by an older ringdrop is ignored rather
        than imported: it only saved typing a ticket again, and using one relearns its
        addresses."""
        now = time.time()
        with self._db.transaction() as conn:
            conn.execute("DELETE FROM peer_addresses WHERE peer_id = ?", (peer.raw,))
            conn.executemany(
                "INSERT INTO peer_addresses (peer_id, position, ip, port, learnt_at) "
                "VALUES (?, ?, ?, ?, ?)",
                [(peer.raw, i, str(a.ip), a.port, now) for i, a in enumerate(addresses)],
            )

    def addresses_of(self, peer: PeerId) -> list[Address]:
        """Where `peer` was last reached (best first); empty if nowhere is known."""
        with self._db.snapshot() as conn:
            rows = conn.execute(
                "SELECT ip, port FROM peer_addresses WHERE peer_id = ? ORDER BY position",
                (peer.raw,),
            ).fetchall()
        return [Address(ipaddress.ip_address(cast(str, ip)), cast(int, port)) for ip, port in rows]

    # Content

    def attach(
        self,
        root: bytes,
        ring: str,
        permission: Permission = "read",
        *,
        name: str | None = None,
        format: Format | None = None,
        size: int | None = None,
    ) -> None:
        """Lets `ring` do `permission` with the content `root`, which need not be stored yet.

        `name`, `format` and `size` are what the catalog shows; those not given keep the values
        an earlier attach gave. Attaching a collection covers the members recorded for it with
        `record_collection`.
        """
        _check_root(root)
        _check_permission(permission)
        if format is not None:
            check_format(format)
        if size is not None and size < 0:
            raise ValueError(f"a size cannot be negative ({size})")
        with self._db.transaction() as conn:
            ring_id, _ = _ring(conn, ring)
            now = time.time()
            conn.execute(
                "INSERT INTO attachments (hash, permission, ring_id, attached_at) "
                "VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (root, permission, ring_id, now),
            )
            if conn.changes() and permission == "read":
                news.record(conn, ring_id, root, "share", now)
            conn.execute(
                "INSERT INTO content (hash, name, format, size) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (hash) DO UPDATE SET name = coalesce(excluded.name, name), "
                "format = coalesce(excluded.format, format), size = coalesce(excluded.size, size)",
                (root, name, None if format is None else format_to_sql(format), size),
            )

    def detach(self, root: bytes, ring: str, permission: Permission | None = None) -> None:
        """Takes `permission` (None: every permission) on `root` away from `ring`."""
        _check_root(root)
        if permission is not None:
            _check_permission(permission)
        with self._db.transaction() as conn:
            ring_id, ring_name = _ring(conn, ring)
            conn.execute(
                "DELETE FROM attachments WHERE hash = ? AND ring_id = ? "
                "AND (permission = ?3 OR ?3 IS NULL)",
                (root, ring_id, permission),
            )
            if conn.changes() == 0:
                raise NotFoundError(
                    f"The content {root.hex()[:16]}… is not attached to the ring '{ring_name}'"
                    + (f" for {permission}." if permission else ".")
                )
            still = conn.execute(
                "SELECT 1 FROM attachments WHERE hash = ? AND ring_id = ? AND permission = 'read'",
                (root, ring_id),
            ).fetchone()
            if still is None:
                news.record(conn, ring_id, root, "withdraw", time.time())

    def attachments(self, root: bytes) -> list[Attachment]:
        """The rings `root` itself is attached to (not those of collections holding it)."""
        _check_root(root)
        with self._db.snapshot() as conn:
            rows = conn.execute(
                "SELECT r.name, a.permission, a.attached_at FROM attachments AS a "
                "JOIN rings AS r ON r.id = a.ring_id "
                "WHERE a.hash = ? ORDER BY r.name, a.permission",
                (root,),
            ).fetchall()
        return [
            Attachment(root, cast(str, r), _check_permission(cast(str, p)), cast(float, t))
            for r, p, t in rows
        ]

    def rings_by_root(self) -> dict[bytes, tuple[str, ...]]:
        """For each attached root, the rings it is attached to, as `attachments` orders them:
        one query for a whole listing rather than one per root."""
        found: dict[bytes, list[str]] = {}
        with self._db.snapshot() as conn:
            for root, ring in conn.execute(
                "SELECT a.hash, r.name FROM attachments AS a JOIN rings AS r ON r.id = a.ring_id "
                "ORDER BY a.hash, r.name, a.permission"
            ):
                found.setdefault(bytes(cast(bytes, root)), []).append(cast(str, ring))
        return {root: tuple(rings) for root, rings in found.items()}

    def record_collection(self, collection: bytes, members: Iterable[bytes]) -> None:
        """Records the roots the collection `collection` holds, in its order, so that rings it
        is attached to may read them too, and members requests are answered from this record.
        Called when a collection is imported or received (from its checked, decoded listing);
        repeating it is harmless, since a collection's root fixes its members."""
        _check_root(collection)
        ordered = [_check_root(member) for member in members]
        # In key order: a B-tree filled in order touches each page once, not once per row
        # (100,000 members: 0.15 s instead of 1.8 s).
        rows = sorted({(member, collection) for member in ordered})
        with self._db.transaction() as conn:
            conn.executemany(
                "INSERT INTO collection_members (member, collection) VALUES (?, ?) "
                "ON CONFLICT DO NOTHING",
                rows,
            )
            insert_members(conn, collection, ordered)

    def recorded_members(
        self, collection: bytes, indices: Iterable[int]
    ) -> tuple[int, list[bytes]] | None:
        """The roots at `indices` (increasing) of the collection recorded as `collection`, and
        its number of members; the roots stop before the first index past its end. None if no
        collection of that root was recorded. Reads only the roots asked for."""
        _check_root(collection)
        with self._db.snapshot() as conn:
            row = _one(conn, "SELECT id, count FROM collections WHERE hash = ?", (collection,))
            if row is None:
                return None
            rowid, count = cast(int, row[0]), cast(int, row[1])
            roots: list[bytes] = []
            wanted = itertools.takewhile(lambda i: i < count, indices)
            first = next(wanted, None)
            if first is None:
                return count, roots
            with conn.blob_open("main", "collections", "members", rowid, False) as blob:
                for index in itertools.chain((first,), wanted):
                    blob.seek(32 * index)
                    roots.append(blob.read(32))
        return count, roots

    def record_file(self, root: bytes, mtime_ns: int | None, executable: bool) -> None:
        """Records the time and executable bit of the single file whose content is `root`,
        for its tickets (the newest recording wins: the same bytes may come with another)."""
        _check_root(root)
        with self._db.transaction() as conn:
            conn.execute(
                "INSERT INTO file_metadata (root, mtime_ns, executable) VALUES (?, ?, ?) "
                "ON CONFLICT (root) DO UPDATE SET mtime_ns = excluded.mtime_ns, "
                "executable = excluded.executable",
                (root, mtime_ns, int(executable)),
            )

    def file(self, root: bytes) -> tuple[int | None, bool] | None:
        """The recorded (time, executable bit) of the single file `root`, if any."""
        with self._db.snapshot() as conn:
            row = conn.execute(
                "SELECT mtime_ns, executable FROM file_metadata WHERE root = ?", (root,)
            ).fetchone()
        return None if row is None else (cast(int | None, row[0]), bool(row[1]))

    def files(self) -> dict[bytes, tuple[int | None, bool]]:
        """Every recorded file's (time, executable bit) by root: one query for a listing."""
        with self._db.snapshot() as conn:
            rows = conn.execute("SELECT root, mtime_ns, executable FROM file_metadata")
            return {
                bytes(cast(bytes, root)): (cast(int | None, mtime), bool(executable))
                for root, mtime, executable in rows
            }

    def collections_holding(self, member: bytes) -> list[bytes]:
        """The collections recorded as holding `member` (an indexed lookup)."""
        with self._db.snapshot() as conn:
            rows = conn.execute(
                "SELECT collection FROM collection_members WHERE member = ?", (member,)
            ).fetchall()
        return [bytes(cast(bytes, row[0])) for row in rows]

    # Grants

    def grant(self, peer: PeerRef, privilege: Privilege = "catalog") -> None:
        """Gives `peer` (entering it in the peer book) a privilege on this node."""
        _check_privilege(privilege)
        with self._db.transaction() as conn:
            peer_id = self._peer_id(conn, peer)
            now = time.time()
            _enter_in_book(conn, peer_id, now)
            conn.execute(
                "INSERT INTO grants (peer_id, privilege, granted_at) VALUES (?, ?, ?) "
                "ON CONFLICT DO NOTHING",
                (peer_id.raw, privilege, now),
            )

    def revoke(self, peer: PeerRef, privilege: Privilege = "catalog") -> None:
        _check_privilege(privilege)
        with self._db.transaction() as conn:
            peer_id = self._peer_id(conn, peer)
            conn.execute(
                "DELETE FROM grants WHERE peer_id = ? AND privilege = ?", (peer_id.raw, privilege)
            )
            if conn.changes() == 0:
                raise NotFoundError(
                    f"There is no {privilege} grant for {_peer_name(conn, peer_id)}."
                )

    def grants(self, peer: PeerRef) -> list[Privilege]:
        with self._db.snapshot() as conn:
            peer_id = self._peer_id(conn, peer)
            rows = conn.execute(
                "SELECT privilege FROM grants WHERE peer_id = ? ORDER BY privilege",
                (peer_id.raw,),
            ).fetchall()
        return [_check_privilege(cast(str, p)) for (p,) in rows]

    # Decisions and logs

    def decide(
        self,
        peer: PeerId,
        root: bytes,
        operation: Permission = "read",
        now: float | None = None,
    ) -> Decision:
        """May the authenticated `peer` do `operation` with `root`? The answer is logged."""
        _check_root(root)
        _check_permission(operation)
        now = time.time() if now is None else now
        with self._db.transaction() as conn:
            decision = judge(conn, peer, root, operation, now)
            insert_decisions(conn, [log_entry(peer, root, operation, decision, now)])
        return decision

    def judge(
        self,
        peer: PeerId,
        root: bytes,
        operation: Permission = "read",
        now: float | None = None,
        *,
        as_collection: bool = False,
        reserve: bool = False,
    ) -> tuple[Decision, AccessLogEntry]:
        """`decide` without the write: the decision, and the log entry the caller must queue.
        `as_collection` asks for `root` as a whole collection (a members request): only rings
        it is attached to itself count, not those of a collection that holds it."""
        _check_root(root)
        _check_permission(operation)
        now = time.time() if now is None else now
        with self._db.snapshot() as conn:
            decision = judge(
                conn, peer, root, operation, now, as_collection=as_collection, reserve=reserve
            )
        return decision, log_entry(peer, root, operation, decision, now)

    def nickname(self, peer: PeerId) -> str | None:
        """The peer's nickname in the peer book (one primary-key lookup)."""
        with self._db.snapshot() as conn:
            row = _one(conn, NICKNAME, (peer.raw,))
        return None if row is None else cast(str | None, row[0])

    def access_log(self, limit: int = 100) -> list[AccessLogEntry]:
        """The last `limit` decisions, newest first."""
        with self._pending() as (pending, _), self._db.snapshot() as conn:
            rows = conn.execute(
                "SELECT at, peer_id, hash, operation, allowed, reason, ring, count, last_at "
                "FROM access_log ORDER BY id DESC LIMIT ?",
                (_check_limit(limit),),
            ).fetchall()
        committed = [
            AccessLogEntry(
                at=cast(float, at),
                peer_id=PeerId(cast(bytes, p)),
                root=cast(bytes, h),
                operation=_check_operation(cast(str, o)),
                allowed=bool(a),
                reason=cast(str, reason),
                ring=cast(str | None, ring),
                count=cast(int, n),
                last_at=cast(float | None, last),
            )
            for at, p, h, o, a, reason, ring, n, last in rows
        ]
        return _newest_first(pending, committed, limit)

    def log_upload(
        self,
        peer: PeerId,
        root: bytes,
        bytes_sent: int,
        outcome: UploadOutcome,
        at: float | None = None,
    ) -> None:
        """Records that `bytes_sent` bytes of `root` went to `peer`, and how the transfer ended."""
        _check_root(root)
        if outcome not in get_args(UploadOutcome):
            raise ValueError(f"outcome must be one of {get_args(UploadOutcome)}, not {outcome!r}")
        if bytes_sent < 0:
            raise ValueError(f"bytes_sent cannot be negative ({bytes_sent})")
        entry = Upload(time.time() if at is None else at, peer, root, bytes_sent, outcome)
        with self._db.transaction() as conn:
            insert_uploads(conn, [entry])

    def uploads(self, limit: int = 100) -> list[Upload]:
        """The last `limit` uploads, newest first."""
        with self._pending() as (_, pending), self._db.snapshot() as conn:
            rows = conn.execute(
                "SELECT at, peer_id, hash, bytes_sent, outcome, via FROM uploads "
                "ORDER BY id DESC LIMIT ?",
                (_check_limit(limit),),
            ).fetchall()
        committed = [
            Upload(
                cast(float, at),
                PeerId(cast(bytes, p)),
                cast(bytes, h),
                cast(int, n),
                cast(UploadOutcome, o),
                None if v is None else PeerId(cast(bytes, v)),
            )
            for at, p, h, n, o, v in rows
        ]
        return _newest_first(pending, committed, limit)

    def catalog(self, peer: PeerId, now: float | None = None) -> list[CatalogRow]:
        """The content `peer` may read, for a peer with the catalog grant (collections are
        listed, not their members); AccessDeniedError for any other peer."""
        now = time.time() if now is None else now
        with self._db.snapshot() as conn:
            granted = _one(
                conn,
                "SELECT 1 FROM grants WHERE peer_id = ? AND privilege = 'catalog'",
                (peer.raw,),
            )
            if granted is None:
                raise AccessDeniedError(
                    f"Peer {peer.short()} may not list this node's content: it has no catalog "
                    "grant."
                )
            rows = conn.execute(
                CATALOG, {"open": OPEN_RING_ID, "peer": peer.raw, "now": now}
            ).fetchall()
        return [
            CatalogRow(
                cast(bytes, h),
                cast(str | None, n),
                None if f is None else format_from_sql(cast(str, f)),
                cast(int | None, s),
            )
            for h, n, f, s in rows
        ]

    def _pending(self) -> AbstractContextManager[tuple[list[AccessLogEntry], list[Upload]]]:
        """This process's entries not yet committed, while the writer commits nothing else."""
        if self._writer is None:
            return nullcontext(([], []))
        return self._writer.pending()

    def _peer_id(self, conn: apsw.Connection, peer: PeerRef) -> PeerId:
        return peer if isinstance(peer, PeerId) else _resolve(conn, peer)

    def _known_peer(self, conn: apsw.Connection, peer: PeerRef) -> PeerId:
        peer_id = self._peer_id(conn, peer)
        if _one(conn, "SELECT 1 FROM peers WHERE peer_id = ?", (peer_id.raw,)) is None:
            raise NotFoundError(
                f"The peer {peer_id} is not in your peer book. Add it first with its peer id."
            )
        return peer_id


_INSERT_DECISION = (
    "INSERT INTO access_log (at, peer_id, hash, operation, allowed, ring, reason, count, last_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def insert_decisions(conn: apsw.Connection, entries: Sequence[AccessLogEntry]) -> None:
    """Appends decisions to the access log, in the caller's transaction."""
    conn.executemany(_INSERT_DECISION, [_decision_row(e) for e in entries])


def insert_decision(conn: apsw.Connection, entry: AccessLogEntry) -> int:
    """Appends one decision to the access log, in the caller's transaction; its row's id."""
    conn.execute(_INSERT_DECISION, _decision_row(entry))
    return conn.last_insert_rowid()


def _decision_row(e: AccessLogEntry) -> tuple[object, ...]:
    return (
        e.at,
        e.peer_id.raw,
        e.root,
        e.operation,
        e.allowed,
        e.ring,
        e.reason,
        e.count,
        e.last_at,
    )


def prune_logs(conn: apsw.Connection, retention: Retention, now: float) -> None:
    """Deletes the access and upload log entries `retention` no longer keeps, in the caller's
    transaction. Rows are appended in time order, so both limits cut a prefix of ids, and each
    costs a search by id and a walk over the rows it deletes."""
    cutoff = now - retention.days * 86400
    for table in ("access_log", "uploads"):
        conn.execute(
            f"DELETE FROM {table} WHERE id <= (SELECT max(id) FROM {table}) - ?",  # noqa: S608
            (retention.entries,),
        )
        conn.execute(
            f"DELETE FROM {table} WHERE id < coalesce("  # noqa: S608
            f"(SELECT id FROM {table} WHERE at >= ? ORDER BY id LIMIT 1), "
            f"(SELECT max(id) + 1 FROM {table}))",
            (cutoff,),
        )


def insert_uploads(conn: apsw.Connection, entries: Sequence[Upload]) -> None:
    """Appends uploads to the upload log, in the caller's transaction."""
    conn.executemany(
        "INSERT INTO uploads (at, peer_id, hash, bytes_sent, outcome, via) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        [
            (
                e.at,
                e.peer_id.raw,
                e.root,
                e.bytes_sent,
                e.outcome,
                None if e.via is None else e.via.raw,
            )
            for e in entries
        ],
    )


def _resolve(conn: apsw.Connection, text: str) -> PeerId:
    wanted = text.strip()
    if len(wanted) == PEER_ID_CHARS:
        return PeerId.parse(wanted)
    if not wanted:
        raise NotFoundError("No peer was named: give a peer id or a nickname from your peer book.")
    found = {
        bytes(cast(bytes, p))
        for (p,) in conn.execute("SELECT peer_id FROM peers WHERE nickname = ?", (wanted,))
    }
    prefix = _prefix_range(wanted)
    if prefix is not None:
        found.update(
            bytes(cast(bytes, p))
            for (p,) in conn.execute(
                "SELECT peer_id FROM peers WHERE peer_id BETWEEN ? AND ?", prefix
            )
        )
    if len(found) == 1:
        return PeerId(found.pop())
    if found:
        names = ", ".join(_peer_name(conn, PeerId(raw)) for raw in sorted(found)[:5])
        raise AmbiguousError(
            f"{quoted(wanted)} could be any of several peers in your peer book ({names})",
            kind="peer",
        )
    if len(wanted) > NICKNAME_MAX:
        # Too long for a nickname, so it was meant as a peer id: say what is wrong with it.
        PeerId.parse(wanted)
    raise NotFoundError(
        f"{quoted(wanted)} is neither a peer id nor the nickname of a peer in your peer book",
        kind="peer",
        name=wanted,
    )


def _newest_first(pending: list[_T], committed: list[_T], limit: int) -> list[_T]:
    """The newest `limit` entries: this process's uncommitted ones (oldest first as queued), then
    the committed ones (already newest first)."""
    return pending[::-1][:limit] + committed[: max(0, limit - len(pending))]


def _prefix_range(text: str) -> tuple[bytes, bytes] | None:
    """The lowest and highest raw peer ids whose text starts with `text`, if it can be a prefix.

    Base32 keeps the order of the bits, so the ids with a given prefix are one range of BLOBs.
    """
    if not PEER_PREFIX_MIN <= len(text) < PEER_ID_CHARS or first_non_base32(text) is not None:
        return None
    prefix = text.lower()
    rest = PEER_ID_CHARS - len(prefix)
    return base32_decode(prefix + "a" * rest), base32_decode(prefix + "7" * rest)


def _enter_in_book(conn: apsw.Connection, peer_id: PeerId, now: float) -> None:
    conn.execute(
        "INSERT INTO peers (peer_id, added_at) VALUES (?, ?) ON CONFLICT DO NOTHING",
        (peer_id.raw, now),
    )


def _set_nickname(conn: apsw.Connection, peer_id: PeerId, nickname: str) -> None:
    check_nickname(nickname)
    holder = _one(
        conn,
        "SELECT peer_id FROM peers WHERE nickname = ? AND peer_id <> ?",
        (nickname, peer_id.raw),
    )
    if holder is not None:
        raise StoreError(
            f"'{nickname}' is already the nickname of {PeerId(cast(bytes, holder[0]))}. "
            "Choose another, or clear that one first."
        )
    conn.execute("UPDATE peers SET nickname = ? WHERE peer_id = ?", (nickname, peer_id.raw))


def _book_entry(conn: apsw.Connection, peer_id: PeerId) -> Peer:
    row = _one(conn, "SELECT nickname, added_at FROM peers WHERE peer_id = ?", (peer_id.raw,))
    if row is None:
        raise NotFoundError(f"The peer {peer_id} is not in your peer book.")
    return Peer(peer_id, cast(str | None, row[0]), cast(float, row[1]))


def _peer_name(conn: apsw.Connection, peer_id: PeerId) -> str:
    """How messages name a peer: its nickname and short id if it has one, else its id."""
    row = _one(conn, NICKNAME, (peer_id.raw,))
    if row is None or row[0] is None:
        return f"the peer {peer_id}"
    return f"{row[0]} ({peer_id.short()}…)"


def _ring(conn: apsw.Connection, name: str) -> tuple[int, str]:
    """The id and stored spelling of the ring called `name` (in any case)."""
    row = _one(conn, "SELECT id, name FROM rings WHERE name = ?", (name,))
    if row is None:
        raise NotFoundError(f"There is no ring named {quoted(name)}.", kind="ring", name=name)
    return cast(int, row[0]), cast(str, row[1])


def _one(
    conn: apsw.Connection, sql: str, bindings: tuple[object, ...] | dict[str, object]
) -> tuple[object, ...] | None:
    row = conn.execute(sql, bindings).fetchone()
    return None if row is None else tuple(row)


def _address(text: str) -> Address:
    ip, port = text.split(" ")
    return Address(ipaddress.ip_address(ip), int(port))


def _check_root(root: bytes) -> bytes:
    if not isinstance(root, bytes) or len(root) != 32:
        raise ValueError("a root hash is 32 bytes")
    return root


def _check_permission(permission: str) -> Permission:
    if permission not in get_args(Permission):
        raise ValueError(f"permission must be one of {get_args(Permission)}, not {permission!r}")
    return cast(Permission, permission)


def _check_operation(operation: str) -> Operation:
    if operation not in get_args(Operation):
        raise ValueError(f"operation must be one of {get_args(Operation)}, not {operation!r}")
    return cast(Operation, operation)


def _check_privilege(privilege: str) -> Privilege:
    if privilege not in get_args(Privilege):
        raise ValueError(f"privilege must be one of {get_args(Privilege)}, not {privilege!r}")
    return cast(Privilege, privilege)


def _check_limit(limit: int) -> int:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    return limit
