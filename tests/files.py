"""Test content on disk: deterministic bytes, files written from bytes, folders read back, and
file systems mounted for a test."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import blake3

from tests.ci import skip_unless_ci


def pseudo_random(size: int, seed: int = 0) -> bytes:
    """Deterministic incompressible bytes (BLAKE3 in extendable-output mode)."""
    return blake3.blake3(b"ringdrop test data %d" % seed).digest(length=size)


def write(path: Path, data: bytes) -> Path:
    """Writes `data` to `path`, creating its folders; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def random_file(path: Path, size: int) -> bytes:
    """Writes `size` random bytes to `path`, creating its folders; returns them."""
    data = os.urandom(size)
    write(path, data)
    return data


def files_under(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` by its relative name, with its bytes."""
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in files_under(folder)}


@contextlib.contextmanager
def mounted(mount: Path, *options: str) -> Iterator[Path]:
    """`mount OPTIONS MOUNT` until the block ends; skips the test where mounting is not allowed
    (fails it under CI)."""
    done = subprocess.run(["mount", *options, str(mount)], capture_output=True, check=False)
    if done.returncode != 0:
        skip_unless_ci(f"cannot mount {' '.join(options)}: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)
