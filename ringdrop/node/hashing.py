"""Hashing a file as ringdrop would share it, without storing anything."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ringdrop.bao import create_outboard, outboard_size

__all__ = ["Hashed", "hash_file"]


@dataclass(frozen=True)
class Hashed:
    root: bytes
    """The BLAKE3 root a ticket for the file would carry."""
    size: int
    outboard_size: int
    """Bytes of hash tree a share of the file would keep beside it."""


def hash_file(path: Path, progress: Callable[[int, int], object] | None = None) -> Hashed:
    """The file's BLAKE3 root, read once in constant memory (the outboard built on the way is
    thrown away); `progress(done, total)` as it goes."""
    with tempfile.TemporaryDirectory(prefix="ringdrop-") as tmp:
        root, size = create_outboard(path, Path(tmp) / "obao", progress)
    return Hashed(root, size, outboard_size(size))
