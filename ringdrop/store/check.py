"""Re-verifying every complete blob against its root, streaming through the native module."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ringdrop.bao import ChunkRanges, outboard_from_bytes, valid_ranges
from ringdrop.errors import IntegrityError, NotFoundError
from ringdrop.store import blobs
from ringdrop.store.blobs import BlobInfo
from ringdrop.store.db import Database
from ringdrop.store.layout import Layout
from ringdrop.store.progress import Meter, ProgressFn

__all__ = ["CheckProblem", "CheckReport", "check_store"]


@dataclass(frozen=True)
class CheckProblem:
    root: bytes
    kind: Literal["missing", "corrupt", "changed"]
    """missing: a file is gone; corrupt: bytes do not match the root; changed: a referenced
    file was modified after it was imported."""
    message: str


@dataclass(frozen=True)
class CheckReport:
    checked: int
    problems: tuple[CheckProblem, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def check_store(db: Database, layout: Layout, progress: ProgressFn | None) -> CheckReport:
    """Verifies every complete blob; reports what is missing, corrupt or changed.

    Reads files outside any transaction (a long check must not hold the database), so a blob
    deleted meanwhile by GC is skipped rather than reported.
    """
    with db.snapshot() as conn:
        infos = blobs.list_blobs(conn)
    meter = Meter(sum(i.size for i in infos), progress)
    problems = []
    for info in infos:
        problem = _check_one(db, layout, info)
        with db.snapshot() as conn:
            still_there = blobs.get_blob(conn, info.root) is not None
        if problem is not None and still_there:
            problems.append(problem)
        meter.add(info.size)
    return CheckReport(len(infos), tuple(problems))


def _check_one(db: Database, layout: Layout, info: BlobInfo) -> CheckProblem | None:
    with db.snapshot() as conn:
        if info.location == "inline":
            data = blobs.inline_data(conn, info.root)
            if len(data) == info.size and outboard_from_bytes(data)[0] == info.root:
                return None
            return CheckProblem(info.root, "corrupt", f"blob {info.hex}: inline bytes corrupt")
        stamp = blobs.source_stamp(conn, info.root)
    if info.location == "reference":
        try:
            blobs.check_reference(info, stamp)
        except NotFoundError as e:
            return CheckProblem(info.root, "missing", str(e))
        except IntegrityError as e:
            return CheckProblem(info.root, "changed", str(e))
        assert info.source is not None
        data_path = info.source
    else:
        data_path = layout.blob_data(info.root)
    outboard = layout.blob_outboard(info.root)
    for path in (data_path, outboard):
        if not path.exists():
            return CheckProblem(info.root, "missing", f"blob {info.hex}: {path} is missing")
    found = valid_ranges(data_path, outboard, info.root, info.size)
    bad = found.complement(info.size) if info.size else ChunkRanges()
    if bad.is_empty() and data_path.stat().st_size == info.size:
        return None
    return CheckProblem(
        info.root,
        "corrupt",
        f"blob {info.hex}: {bad.byte_count(info.size)} of {info.size} bytes do not match the "
        f"root ({data_path})",
    )
