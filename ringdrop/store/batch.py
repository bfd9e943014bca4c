"""Many blobs at once: which of many roots are complete, group commit of small verified blobs,
and encoders for many members in one read transaction.

A folder of 10,000 small files must not cost 10,000 transactions (each a WAL sync) on either
side; these functions do one statement or one transaction per batch instead.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import cast

import apsw

from ringdrop.bao import ChunkRanges, Encoder, outboard_from_bytes
from ringdrop.errors import IntegrityError, NotFoundError
from ringdrop.store import blobs, state
from ringdrop.store.blobs import INLINE_MAX, BlobInfo
from ringdrop.store.db import Database
from ringdrop.store.layout import Layout

__all__ = ["commit_small", "complete_roots", "inline_data", "open_encoders", "references"]

# Bound parameters per statement: well under SQLite's limit (32766 since 3.32).
_CHUNK = 4096


def complete_roots(conn: apsw.Connection, roots: Iterable[bytes]) -> set[bytes]:
    """Those of `roots` that are complete blobs in the store: one query per 4096 roots."""
    return {
        bytes(cast(bytes, root))
        for (root,) in _rows(conn, "SELECT root FROM blobs WHERE {}", roots)
    }


def references(conn: apsw.Connection, roots: Iterable[bytes]) -> list[tuple[BlobInfo, int | None]]:
    """The reference blobs among `roots`, each with its source's recorded mtime (the stamp
    `blobs.check_reference` compares): one query per 4096 roots."""
    rows = _rows(
        conn,
        "SELECT root, size, source, source_mtime_ns FROM blobs WHERE location = 'reference' AND {}",
        roots,
    )
    return [
        (
            BlobInfo(bytes(cast(bytes, root)), cast(int, size), "reference", Path(cast(str, src))),
            cast(int | None, mtime),
        )
        for root, size, src, mtime in rows
    ]


def inline_data(conn: apsw.Connection, roots: Iterable[bytes]) -> dict[bytes, bytes]:
    """The bytes of those of `roots` that are inline blobs: one query per 4096 roots."""
    rows = _rows(conn, "SELECT root, data FROM blobs WHERE data IS NOT NULL AND {}", roots)
    return {bytes(cast(bytes, root)): bytes(cast(bytes, data)) for root, data in rows}


def _rows(
    conn: apsw.Connection, query: str, roots: Iterable[bytes]
) -> Iterator[tuple[object, ...]]:
    """The rows of `query` (whose `{}` becomes `root IN (...)`) for each distinct root of
    `roots`, a chunk of roots per statement."""
    wanted = list(dict.fromkeys(roots))
    for start in range(0, len(wanted), _CHUNK):
        chunk = wanted[start : start + _CHUNK]
        where = f"root IN ({','.join('?' * len(chunk))})"
        yield from conn.execute(query.format(where), chunk)


def commit_small(db: Database, items: Sequence[tuple[bytes, bytes]]) -> None:
    """Verifies each `(root, data)` of at most 16 KiB and stores them all as complete inline
    blobs in one transaction: the group commit of a download of many small files.

    Crash safety: nothing is written before every item hashes to its root (the hash covers the
    size too), so only verified bytes are ever stored; then one write transaction inserts them
    all. The database is in WAL mode with `synchronous=FULL`, so COMMIT returns only after the
    WAL holding the whole batch and its commit record is fsynced, and recovery ignores WAL
    frames without a commit record. A crash (SIGKILL, power loss) at any instant therefore
    leaves either the whole batch durable and verified, or none of it, and then its members are
    still missing from the store and a resumed download asks for them again. No file, bitfield
    or partial row is involved, so there is no other state to get out of step. A root already
    present is left as it is.

    Raises IntegrityError, storing nothing, if any item does not match its root.
    """
    for root, data in items:
        if len(data) > INLINE_MAX:
            raise ValueError(f"{len(data)} bytes are too many for an inline blob")
        if outboard_from_bytes(data)[0] != root:
            raise IntegrityError(f"the content received for {root.hex()} does not match its root")
    staged = [blobs.Staged(root, len(data), "inline", data=data) for root, data in items]
    with db.transaction() as conn:
        state.commit_inline(conn, staged)


def open_encoders(
    conn: apsw.Connection, layout: Layout, wanted: Sequence[tuple[bytes, ChunkRanges]]
) -> list[Encoder | None]:
    """An encoder for each `(root, ranges)`, or None where the blob is gone or its referenced
    file changed; all read in the caller's one read transaction."""
    encoders: list[Encoder | None] = []
    for root, ranges in wanted:
        try:
            encoders.append(blobs.open_encoder(conn, layout, root, ranges))
        except (NotFoundError, IntegrityError):
            encoders.append(None)
    return encoders
