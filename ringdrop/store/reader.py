"""`ServingReads`: the lookups a server makes for each request, through a connection of its own.

A process that serves may also write to its store (the TUI receives while it serves). Writes
hold the store connection's lock while they wait for SQLite's write lock, which another process
may hold for long; reads through that connection would queue behind them. A second connection
reads in WAL mode, so it waits for nothing.
"""

from __future__ import annotations

from collections.abc import Sequence

from ringdrop.bao import ChunkRanges, Encoder
from ringdrop.store.blobs import open_encoder, read_blob
from ringdrop.store.collection import Collection
from ringdrop.store.db import Database, Migration
from ringdrop.store.layout import Layout
from ringdrop.store.tags import display_name
from ringdrop.store.translate import translating

__all__ = ["ServingReads"]


class ServingReads:
    """Read-only lookups into a data directory: names and blob encoders here, and through `db`
    (opened with the data directory's `migrations`) the access layer's decision."""

    def __init__(self, layout: Layout, migrations: Sequence[Migration]) -> None:
        self._layout = layout
        self.db = Database(layout.db, migrations)

    def close(self) -> None:
        self.db.close()

    @translating("could not read the blob")
    def encoder(self, root: bytes, ranges: ChunkRanges) -> Encoder:
        """As `Store.encoder`."""
        with self.db.snapshot() as conn:
            return open_encoder(conn, self._layout, root, ranges)

    @translating("could not read the collection")
    def collection(self, root: bytes, limit: int = 1 << 30) -> Collection:
        """The collection stored as blob `root`, as `Store.collection`."""
        with self.db.snapshot() as conn:
            return Collection.decode(read_blob(conn, self._layout, root, limit))

    def display_name(self, root: bytes) -> str | None:
        """The name a tag gives `root` for people to read, if any (an indexed lookup)."""
        with self.db.snapshot() as conn:
            return display_name(conn, root)
