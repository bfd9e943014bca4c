"""Where things live in a data directory.

    <data dir>/
        store.db, store.db-wal, store.db-shm   the SQLite database (WAL mode)
        blobs/ab/<root hex>.data               complete blobs copied into the store
        blobs/ab/<root hex>.obao               their pre-order outboards (also of references)
        partial/<root hex>.{data,obao,bitfield,lock}   downloads in progress
        tmp/<id>.{data,obao,lock}              imports being hashed, owned by a live lock
        leases/<id>.lock                       one per open Store: owner of its temp tags

Blobs of at most 16 KiB live inline in the database and have no files.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Layout", "PartialPaths", "StagingPaths", "default_data_dir"]


def default_data_dir() -> Path:
    """`$RINGDROP_DATA_DIR` if set, else `~/.ringdrop`."""
    env = os.environ.get("RINGDROP_DATA_DIR")
    return Path(env) if env else Path.home() / ".ringdrop"


@dataclass(frozen=True)
class PartialPaths:
    data: Path
    outboard: Path
    bitfield: Path
    lock: Path
    new_outboard: Path

    def files(self) -> tuple[Path, ...]:
        """Every file of the partial except its lock."""
        return (self.data, self.outboard, self.bitfield, self.new_outboard)


@dataclass(frozen=True)
class StagingPaths:
    data: Path
    outboard: Path
    lock: Path


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def db(self) -> Path:
        return self.root / "store.db"

    @property
    def blobs(self) -> Path:
        return self.root / "blobs"

    @property
    def partial(self) -> Path:
        return self.root / "partial"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    @property
    def leases(self) -> Path:
        return self.root / "leases"

    def create(self) -> None:
        """Creates the folders, private to the user (the identity key lives here too)."""
        for folder in (self.root, self.blobs, self.partial, self.tmp, self.leases):
            folder.mkdir(mode=0o700, parents=True, exist_ok=True)

    def blob_data(self, root: bytes) -> Path:
        return self._blob_dir(root) / f"{root.hex()}.data"

    def blob_outboard(self, root: bytes) -> Path:
        return self._blob_dir(root) / f"{root.hex()}.obao"

    def partial_paths(self, root: bytes) -> PartialPaths:
        base = self.partial / root.hex()
        return PartialPaths(
            data=base.with_suffix(".data"),
            outboard=base.with_suffix(".obao"),
            bitfield=base.with_suffix(".bitfield"),
            lock=base.with_suffix(".lock"),
            new_outboard=base.with_suffix(".obao-new"),
        )

    def new_staging(self) -> StagingPaths:
        return self.staging(secrets.token_hex(12))

    def staging(self, ident: str) -> StagingPaths:
        base = self.tmp / ident
        return StagingPaths(
            data=base.with_suffix(".data"),
            outboard=base.with_suffix(".obao"),
            lock=base.with_suffix(".lock"),
        )

    def relative(self, path: Path) -> str:
        """`path` relative to the data directory, as kept in the database."""
        return path.relative_to(self.root).as_posix()

    def absolute(self, relative: str) -> Path:
        return self.root / relative

    def _blob_dir(self, root: bytes) -> Path:
        return self.blobs / root[:1].hex()
