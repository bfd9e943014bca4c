"""Rings as groups: this node's signed manifests (its own rings' and those it received), the
content it received under each ring, and the members that said they hold content.

The SQL behind `Access`'s ring-manifest methods, each run in the caller's transaction. What is
stored from a peer is bounded: a manifest is stored only if it is newer than one held for the
same ring, or (`new_ring_ok`) comes from a peer this node chose to ask; providers are kept per
root up to `MAX_PROVIDERS`, newest first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import cast

import apsw

from ringdrop.access.manifest import (
    DEFAULT_VALIDITY,
    Manifest,
    ManifestMember,
    expiry_seconds,
    parse_manifest,
    sign_manifest,
)
from ringdrop.errors import InvalidManifestError
from ringdrop.identity import Identity, PeerId

__all__ = [
    "MAX_HELD",
    "MAX_PROVIDERS",
    "MAX_SENT",
    "admitting",
    "for_root",
    "newer_than",
    "own_due",
    "parse_all",
    "providers",
    "record_provider",
    "record_received",
    "sign_own",
    "storable",
    "store",
]

MAX_HELD = 1000
"""Rings of other owners this node keeps manifests of."""
MAX_PROVIDERS = 64
"""Providers kept per root: the newest."""
MAX_SENT = 16
"""Manifests in one answer."""

# The content a peer may read, as `DECIDE` asks it: the root itself or a collection holding it.
_CONTENT = (
    "IN (SELECT :root UNION ALL SELECT collection FROM collection_members WHERE member = :root)"
)

_ADMITS = """
m.valid_until > :now AND m.issued_at <= :now + 300
AND (mm.expires_at IS NULL OR mm.expires_at > :now)
"""

_ADMITTING_SQL = """
SELECT m.raw FROM manifest_members AS mm JOIN manifests AS m ON m.uid = mm.uid
WHERE mm.peer_id = :peer AND {admits} ORDER BY m.issued_at DESC LIMIT :max
"""
_ADMITTING = _ADMITTING_SQL.format(admits=_ADMITS)

_FOR_ROOT_SQL = """
SELECT DISTINCT m.raw FROM manifests AS m
JOIN manifest_members AS mm ON mm.uid = m.uid AND mm.peer_id = :peer
WHERE {admits} AND m.uid IN (
    SELECT r.uid FROM attachments AS a JOIN rings AS r ON r.id = a.ring_id
    WHERE a.permission = 'read' AND a.hash {content}
    UNION ALL SELECT uid FROM received_under WHERE hash {content})
LIMIT :max
"""
_FOR_ROOT = _FOR_ROOT_SQL.format(admits=_ADMITS, content=_CONTENT)

_PROVIDERS_SQL = """
SELECT peer_id, relay, addresses FROM providers WHERE hash {content} ORDER BY at DESC LIMIT :max
"""
_PROVIDERS = _PROVIDERS_SQL.format(content=_CONTENT)


def sign_own(
    conn: apsw.Connection,
    identity: Identity,
    ring_id: int,
    now: float,
    validity: int = DEFAULT_VALIDITY,
) -> Manifest:
    """Signs the next version of this node's ring `ring_id` from its tables and stores it."""
    row = conn.execute(
        "UPDATE rings SET version = version + 1 WHERE id = ? AND uid IS NOT NULL "
        "RETURNING uid, version, name, members_serve",
        (ring_id,),
    ).fetchone()
    assert row is not None, "the open ring has no manifest"
    uid, version, name, serve = row
    members = [
        ManifestMember(PeerId(cast(bytes, p)), expiry_seconds(cast(float | None, e)))
        for p, e in conn.execute(
            "SELECT peer_id, expires_at FROM ring_members WHERE ring_id = ?", (ring_id,)
        )
    ]
    issued = int(now)
    manifest = sign_manifest(
        identity,
        ring_id=cast(bytes, uid),
        version=cast(int, version),
        name=cast(str, name),
        members=members,
        members_serve=bool(serve),
        issued_at=issued,
        valid_until=issued + validity,
    )
    _put(conn, manifest, now)
    return manifest


def own_due(conn: apsw.Connection, now: float, validity: int = DEFAULT_VALIDITY) -> list[int]:
    """This node's rings whose manifest is missing or past half its validity: to sign again."""
    return [
        cast(int, r)
        for (r,) in conn.execute(
            "SELECT r.id FROM rings AS r LEFT JOIN manifests AS m ON m.uid = r.uid "
            "WHERE r.uid IS NOT NULL AND (m.uid IS NULL OR m.version < r.version "
            "OR m.valid_until - ? < ?)",
            (now, validity // 2),
        )
    ]


def store(
    conn: apsw.Connection, raw: bytes, now: float, *, own: PeerId, new_ring_ok: bool
) -> Manifest | None:
    """Stores the manifest in `raw` if it is valid at `now` and newer than the one held for its
    ring, or, with `new_ring_ok`, if none is held yet and it lists this node (at most
    `MAX_HELD` rings of others).
    Returns it if stored. A manifest of a ring this node owns is never taken from a peer; one
    that does not verify raises InvalidManifestError."""
    manifest = parse_manifest(raw)
    if not storable(conn, manifest, now, own=own, new_ring_ok=new_ring_ok):
        return None
    _put(conn, manifest, now)
    return manifest


def storable(
    conn: apsw.Connection, manifest: Manifest, now: float, *, own: PeerId, new_ring_ok: bool
) -> bool:
    """Whether `store` would keep `manifest` (a read)."""
    if manifest.owner == own or not manifest.is_valid(now):
        return False
    held = conn.execute(
        "SELECT owner, version FROM manifests WHERE uid = ?", (manifest.ring_id,)
    ).fetchone()
    if held is None:
        if not new_ring_ok or manifest.member(own) is None:
            return False
        count = conn.execute("SELECT count(*) FROM manifests WHERE owner <> ?", (own.raw,))
        return cast(tuple[int], count.fetchone())[0] < MAX_HELD
    return cast(bytes, held[0]) == manifest.owner.raw and cast(int, held[1]) < manifest.version


def _put(conn: apsw.Connection, manifest: Manifest, now: float) -> None:
    conn.execute("DELETE FROM manifests WHERE uid = ?", (manifest.ring_id,))
    conn.execute(
        "INSERT INTO manifests (uid, owner, version, issued_at, valid_until, members_serve, "
        "name, raw, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            manifest.ring_id,
            manifest.owner.raw,
            manifest.version,
            manifest.issued_at,
            manifest.valid_until,
            int(manifest.members_serve),
            manifest.name,
            manifest.raw,
            now,
        ),
    )
    conn.executemany(
        "INSERT INTO manifest_members (peer_id, uid, expires_at) VALUES (?, ?, ?)",
        [(m.peer_id.raw, manifest.ring_id, m.expires_at) for m in manifest.members],
    )


def admitting(conn: apsw.Connection, peer: PeerId, now: float) -> list[bytes]:
    """The manifests held (own or received) that admit `peer` at `now`, newest first."""
    return _raw(
        conn,
        _ADMITTING,
        {"peer": peer.raw, "now": now, "max": MAX_SENT},
    )


def newer_than(conn: apsw.Connection, held: Sequence[Manifest]) -> list[bytes]:
    """Of the rings of `held`, the manifests this node holds in a newer version."""
    found = []
    for manifest in held[:MAX_SENT]:
        row = conn.execute(
            "SELECT raw FROM manifests WHERE uid = ? AND owner = ? AND version > ?",
            (manifest.ring_id, manifest.owner.raw, manifest.version),
        ).fetchone()
        if row is not None:
            found.append(bytes(cast(bytes, row[0])))
    return found


def rings_answer(
    conn: apsw.Connection, peer: PeerId, pushed: Sequence[Manifest], now: float
) -> list[bytes]:
    """What a RINGS request of `peer` that pushed `pushed` is answered with: the manifests held
    that admit it, then newer versions of those it pushed."""
    answer = dict.fromkeys(admitting(conn, peer, now))
    answer.update(dict.fromkeys(newer_than(conn, pushed)))
    return list(answer)


def held(conn: apsw.Connection, ring_id: bytes) -> Manifest | None:
    """The newest manifest held of the ring `ring_id`."""
    row = conn.execute("SELECT raw FROM manifests WHERE uid = ?", (ring_id,)).fetchone()
    return None if row is None else parse_all([cast(bytes, row[0])])[0]


def for_root(conn: apsw.Connection, peer: PeerId, root: bytes, now: float) -> list[bytes]:
    """The manifests of the rings through which `peer` may read `root` at `now`: this node's own
    rings it is attached to, and the rings this node received it under."""
    bindings = {"peer": peer.raw, "root": root, "now": now, "max": MAX_SENT}
    return _raw(
        conn,
        _FOR_ROOT,
        bindings,
    )


def record_received(
    conn: apsw.Connection, root: bytes, manifests: Iterable[Manifest], now: float
) -> None:
    """Records that `root` was received under the rings of `manifests`."""
    conn.executemany(
        "INSERT INTO received_under (hash, uid, received_at) VALUES (?, ?, ?) "
        "ON CONFLICT DO NOTHING",
        [(root, m.ring_id, now) for m in manifests],
    )


def record_provider(
    conn: apsw.Connection,
    root: bytes,
    peer: PeerId,
    relay: str | None,
    addresses: str,
    now: float,
) -> None:
    """Records that `peer` holds `root`, reached through `relay` and `addresses` (text, comma
    separated); keeps the newest `MAX_PROVIDERS` of the root."""
    conn.execute(
        "INSERT INTO providers (hash, peer_id, relay, addresses, at) VALUES (?, ?, ?, ?, ?) "
        "ON CONFLICT (hash, peer_id) DO UPDATE SET relay = excluded.relay, "
        "addresses = excluded.addresses, at = excluded.at",
        (root, peer.raw, relay, addresses, now),
    )
    conn.execute(
        "DELETE FROM providers WHERE hash = ?1 AND peer_id NOT IN "
        "(SELECT peer_id FROM providers WHERE hash = ?1 ORDER BY at DESC LIMIT ?2)",
        (root, MAX_PROVIDERS),
    )


def providers(conn: apsw.Connection, root: bytes) -> list[tuple[PeerId, str | None, str]]:
    """The members that said they hold `root` (or a collection holding it), newest first."""
    return [
        (PeerId(cast(bytes, p)), cast(str | None, r), cast(str, a))
        for p, r, a in conn.execute(
            _PROVIDERS,
            {"root": root, "max": MAX_PROVIDERS},
        )
    ]


def parse_all(raws: Iterable[bytes]) -> list[Manifest]:
    """The manifests among `raws` that verify; the others are dropped."""
    found = []
    for raw in raws:
        try:
            found.append(parse_manifest(raw))
        except InvalidManifestError:
            continue
    return found


def _raw(conn: apsw.Connection, sql: str, bindings: dict[str, object]) -> list[bytes]:
    return [bytes(cast(bytes, r)) for (r,) in conn.execute(sql, bindings)]
