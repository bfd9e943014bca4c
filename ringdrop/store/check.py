"""Re-verifying every complete blob against its root, streaming through the native module.

Two kinds of finding. The store's own files (data, outboards, inline bytes) missing or not
matching their root are damage: `problems`. A *reference* is a file of the user's — shared with
`--reference`, or received and handed over — and editing, moving or deleting one's own copy is
normal: such a blob is `changed`, and the check forgets it (as a get does before fetching it
again), so that it is neither served nor reported twice.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ringdrop.bao import ChunkRanges, create_outboard, outboard_from_bytes, valid_ranges
from ringdrop.errors import IntegrityError, NotFoundError
from ringdrop.store import blobs, state
from ringdrop.store.blobs import BlobInfo
from ringdrop.store.db import Database
from ringdrop.store.layout import Layout
from ringdrop.store.progress import Meter, ProgressFn

__all__ = ["ChangedReference", "CheckProblem", "CheckReport", "check_store"]


@dataclass(frozen=True)
class CheckProblem:
    """Damage to the store's own files."""

    root: bytes
    kind: Literal["missing", "corrupt"]
    """missing: a file of the store is gone; corrupt: bytes do not match the root."""
    message: str


@dataclass(frozen=True)
class ChangedReference:
    """A referenced file that no longer holds its content; the store has forgotten it."""

    root: bytes
    path: Path
    how: Literal["edited", "gone"]
    """edited: it is there with other bytes, size or time; gone: moved or deleted."""


@dataclass(frozen=True)
class CheckReport:
    checked: int
    problems: tuple[CheckProblem, ...]
    changed: tuple[ChangedReference, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the store's own files are intact (references changed by the user are not
        damage)."""
        return not self.problems


def check_store(db: Database, layout: Layout, progress: ProgressFn | None) -> CheckReport:
    """Verifies every complete blob; reports damage, and forgets references whose files
    changed.

    Reads files outside any transaction (a long check must not hold the database), so a blob
    deleted meanwhile by GC is skipped rather than reported.
    """
    with db.snapshot() as conn:
        infos = blobs.list_blobs(conn)
    meter = Meter(sum(i.size for i in infos), progress)
    problems: list[CheckProblem] = []
    changed: list[ChangedReference] = []
    for info in infos:
        finding = _check_one(db, layout, info)
        if isinstance(finding, ChangedReference):
            if _forget(db, layout, info):
                changed.append(finding)
        elif finding is not None:
            with db.snapshot() as conn:
                if blobs.get_blob(conn, info.root) is not None:
                    problems.append(finding)
        meter.add(info.size)
    return CheckReport(len(infos), tuple(problems), tuple(changed))


def _check_one(
    db: Database, layout: Layout, info: BlobInfo
) -> CheckProblem | ChangedReference | None:
    with db.snapshot() as conn:
        if info.location == "inline":
            data = blobs.inline_data(conn, info.root)
            if len(data) == info.size and outboard_from_bytes(data)[0] == info.root:
                return None
            return CheckProblem(info.root, "corrupt", f"blob {info.hex}: inline bytes corrupt")
        stamp = blobs.source_stamp(conn, info.root)
    if info.location == "reference":
        assert info.source is not None
        try:
            blobs.check_reference(info, stamp)
        except NotFoundError:
            return ChangedReference(info.root, info.source, "gone")
        except IntegrityError:
            return ChangedReference(info.root, info.source, "edited")
        data_path = info.source
    else:
        data_path = layout.blob_data(info.root)
    outboard = layout.blob_outboard(info.root)
    for path in (data_path, outboard):
        if not path.exists():
            if path == info.source:
                return ChangedReference(info.root, path, "gone")
            return CheckProblem(info.root, "missing", f"blob {info.hex}: {path} is missing")
    found = valid_ranges(data_path, outboard, info.root, info.size)
    bad = found.complement(info.size) if info.size else ChunkRanges()
    if bad.is_empty() and data_path.stat().st_size == info.size:
        return None
    if info.location == "reference" and not _holds(data_path, info.root):
        # Same size and time, other bytes: edited by something that put the time back.
        return ChangedReference(info.root, data_path, "edited")
    return CheckProblem(
        info.root,
        "corrupt",
        f"blob {info.hex}: {bad.byte_count(info.size)} of {info.size} bytes do not match the "
        f"root ({data_path})",
    )


def _holds(path: Path, root: bytes) -> bool:
    """Whether the file hashes to `root` (then a mismatch was the store's outboard)."""
    with tempfile.TemporaryDirectory(prefix="ringdrop-check-") as tmp:
        return create_outboard(path, Path(tmp) / "obao")[0] == root


def _forget(db: Database, layout: Layout, info: BlobInfo) -> bool:
    """Drops a reference blob found changed, unless it was received or shared again (or
    removed) since it was read; returns whether it dropped it."""
    with db.transaction() as conn:
        now = state.load(conn, info.root)
        if not isinstance(now, state.Reference) or now.source != info.source:
            return False
        return state.delete(conn, layout, info.root)
