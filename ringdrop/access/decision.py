"""The access decision: one indexed query per request, and the verdict it stands for in words.

Also the catalog query, which is driven by the same memberships.
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import cast

import apsw

from ringdrop.access.records import AccessLogEntry, Decision, Permission
from ringdrop.access.schema import OPEN_RING_ID
from ringdrop.identity import PeerId

__all__ = [
    "CATALOG",
    "DECIDE",
    "DECIDE_COLLECTION",
    "KNOWN",
    "RESERVE",
    "RESERVE_COLLECTION",
    "judge",
    "log_entry",
]

# The access decision: of the rings that `:root` (or a collection holding it) is attached to with
# `:operation`, the best one. That is a ring that admits the peer (one it is a member of before
# the open ring, which has no members; content itself before a collection holding it), else one
# where its membership has expired, so that the reason can say so. Every table is reached
# through its primary key; tests/access/test_access.py checks the plan.
_DECIDE = """
SELECT r.id = :open OR (m.peer_id IS NOT NULL
                        AND (m.expires_at IS NULL OR m.expires_at > :now)) AS admits,
       r.name,
       r.id = :open AS is_open,
       m.peer_id IS NOT NULL AS is_member,
       m.expires_at,
       a.hash
FROM attachments AS a
JOIN rings AS r ON r.id = a.ring_id
LEFT JOIN ring_members AS m ON m.ring_id = a.ring_id AND m.peer_id = :peer
WHERE a.permission = :operation
  AND {content}
ORDER BY admits DESC, is_member DESC, a.hash <> :root, r.name
LIMIT 1
"""
DECIDE = _DECIDE.format(
    content="a.hash IN (SELECT :root UNION ALL "
    "SELECT collection FROM collection_members WHERE member = :root)"
)
# A members request asks for a collection as a whole: only the collection's own attachments
# count, never those of a folder that happens to hold its blob as a file.
DECIDE_COLLECTION = _DECIDE.format(content="a.hash = :root")

# The member-side gate: content this node received under a ring whose newest manifest it holds,
# which lets members re-serve and admits the peer now. `manifest_members` is keyed by peer first,
# so this is a walk over the peer's few memberships, each checked by primary keys.
_RESERVE = """
SELECT m.name, m.owner, m.version
FROM manifest_members AS mm
JOIN manifests AS m ON m.uid = mm.uid
JOIN received_under AS u ON u.uid = mm.uid
WHERE mm.peer_id = :peer
  AND (mm.expires_at IS NULL OR mm.expires_at > :now)
  AND m.members_serve = 1 AND m.valid_until > :now AND m.issued_at <= :now + 300
  AND u.hash {content}
LIMIT 1
"""
RESERVE = _RESERVE.format(
    content="IN (SELECT :root UNION ALL SELECT collection FROM collection_members "
    "WHERE member = :root)"
)
RESERVE_COLLECTION = _RESERVE.format(content="= :root")

KNOWN = "SELECT 1 FROM peers WHERE peer_id = ?"

# Content the peer may read, driven by the rings that admit it (the index on attachments'
# ring_id), not by the whole attachments table.
CATALOG = """
SELECT DISTINCT a.hash, c.name, c.format, c.size
FROM attachments AS a
LEFT JOIN content AS c ON c.hash = a.hash
WHERE a.permission = 'read'
  AND a.ring_id IN (SELECT :open UNION ALL
                    SELECT ring_id FROM ring_members
                    WHERE peer_id = :peer AND (expires_at IS NULL OR expires_at > :now))
ORDER BY c.name IS NULL, c.name, a.hash
"""


def judge(
    conn: apsw.Connection,
    peer: PeerId,
    root: bytes,
    operation: Permission,
    now: float,
    *,
    as_collection: bool = False,
    reserve: bool = False,
) -> Decision:
    """May `peer` do `operation` with `root` at `now`? One query, in the caller's transaction
    (two when nothing is attached: is the peer one this node knows?). `as_collection` judges
    `root` as a whole collection, admitted only through its own attachments. With `reserve`,
    content this node received under a ring is also served to that ring's members, as the
    ring's newest manifest held here says (a second query, only when the first refuses)."""
    bindings = {
        "open": OPEN_RING_ID,
        "peer": peer.raw,
        "root": root,
        "operation": operation,
        "now": now,
    }
    row = conn.execute(DECIDE_COLLECTION if as_collection else DECIDE, bindings).fetchone()
    decision = _verdict(None if row is None else tuple(row), root, operation)
    if not decision.allowed and reserve and operation == "read":
        found = conn.execute(RESERVE_COLLECTION if as_collection else RESERVE, bindings)
        member = found.fetchone()
        if member is not None:
            name, owner, version = member
            return Decision(
                True,
                f"The peer is a member of the ring '{name}' (owner {PeerId(owner).short()}…, "
                f"manifest version {version}), under which this node received it and whose "
                "members may serve it.",
                cast(str, name),
            )
    if row is None and conn.execute(KNOWN, (peer.raw,)).fetchone() is not None:
        return dataclasses.replace(decision, not_shared=True)
    return decision


def log_entry(
    peer: PeerId, root: bytes, operation: Permission, decision: Decision, now: float
) -> AccessLogEntry:
    """The access log's record of `decision`."""
    return AccessLogEntry(
        now, peer, root, operation, decision.allowed, decision.reason, decision.ring
    )


def _verdict(row: tuple[object, ...] | None, root: bytes, operation: Permission) -> Decision:
    """The decision that `DECIDE`'s best row (or its absence) stands for, in words."""
    if row is None:
        return Decision(
            False, f"This content is not attached to any ring that may {operation} it.", None
        )
    admits, ring, is_open, is_member, expires_at, attached = row
    ring = cast(str, ring)
    what = (
        "it"
        if attached == root
        else f"the collection {cast(bytes, attached).hex()[:16]}… that holds it"
    )
    if admits and is_open:
        return Decision(
            True,
            f"{what[0].upper()}{what[1:]} is in the open ring, which admits any authenticated "
            "peer.",
            ring,
        )
    if admits:
        return Decision(
            True, f"The peer is a member of the ring '{ring}', which may {operation} {what}.", ring
        )
    if is_member:
        return Decision(
            False,
            f"The peer's membership of the ring '{ring}' expired at "
            f"{_when(cast(float, expires_at))}.",
            None,
        )
    return Decision(
        False, f"The peer is not a member of any ring that may {operation} this content.", None
    )


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
