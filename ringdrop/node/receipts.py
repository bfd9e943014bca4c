"""What this node received: a line of JSON per finished get, in the data directory, so that the
TUI can say what came from whom, whichever command or process received it.

Appended with one write (O_APPEND), which concurrent processes may do at once; trimmed to the
newest `KEEP` lines by a rewrite once it holds twice as many, so it never grows without bound
(a receipt appended by another process during that rewrite can be lost: it is only a list).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from ringdrop.errors import TicketError
from ringdrop.identity import PeerId
from ringdrop.store.files import replace_atomically
from ringdrop.ticket import Format

__all__ = ["KEEP", "RECEIPTS_FILE", "Receipt", "read_receipts", "record_receipt"]

RECEIPTS_FILE = "received.jsonl"
KEEP = 1000


@dataclass(frozen=True)
class Receipt:
    """Content that arrived: when, from whom, what, and where it was put."""

    at: float
    peer_id: PeerId
    root: bytes
    name: str
    format: Format
    size: int
    path: Path


def record_receipt(data_dir: Path, receipt: Receipt) -> None:
    """Adds `receipt` at the end of the data directory's list."""
    line = json.dumps(
        {
            "at": receipt.at,
            "peer": str(receipt.peer_id),
            "root": receipt.root.hex(),
            "name": receipt.name,
            "format": receipt.format,
            "size": receipt.size,
            "path": str(receipt.path),
        }
    )
    path = data_dir / RECEIPTS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)
    lines = path.read_bytes().splitlines(keepends=True)  # a few hundred KiB at most
    if len(lines) > 2 * KEEP:
        replace_atomically(path, b"".join(lines[-KEEP:]))


def read_receipts(data_dir: Path, limit: int) -> list[Receipt]:
    """The last `limit` receipts, newest first; lines that cannot be read are passed over."""
    try:
        lines = (data_dir / RECEIPTS_FILE).read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    found: list[Receipt] = []
    for line in reversed(lines):
        if len(found) >= limit:
            break
        with contextlib.suppress(ValueError, KeyError, TypeError, TicketError):
            found.append(_receipt(json.loads(line)))
    return found


def _receipt(row: dict[str, object]) -> Receipt:
    if row["format"] not in ("blob", "collection"):
        raise ValueError(row["format"])
    format: Format = "collection" if row["format"] == "collection" else "blob"
    return Receipt(
        at=float(str(row["at"])),
        peer_id=PeerId.parse(str(row["peer"])),
        root=bytes.fromhex(str(row["root"])),
        name=str(row["name"]),
        format=format,
        size=int(str(row["size"])),
        path=Path(str(row["path"])),
    )
