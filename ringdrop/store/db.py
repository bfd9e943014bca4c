"""The data directory's SQLite database (apsw, WAL): opening, ordered migrations, transactions.

Several processes may use one database at once. Writes go through `transaction()`, which takes
SQLite's write lock up front (BEGIN IMMEDIATE) so that a writer never fails halfway on a lock
upgrade; readers that need several consistent statements use `snapshot()`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import apsw

from ringdrop.errors import StoreError
from ringdrop.store.translate import translated

__all__ = ["Database", "Migration"]


@dataclass(frozen=True)
class Migration:
    """One step of the schema, numbered `version`. A database records each step it ran, and
    its `PRAGMA user_version` is the highest.

    `apply` is SQL (one or more statements) or a function given the connection; either runs
    inside the transaction of the steps a database lacks. A list of steps may skip numbers (the
    store's alone skip the access layer's, which run when a node opens the database).
    """

    version: int
    description: str
    apply: str | Callable[[apsw.Connection], None]


class Database:
    """One apsw connection to a data directory's database, migrated to the newest schema.

    Transactions are serialised between the threads of a process by a lock and between
    processes by SQLite. Nested `transaction()` blocks become savepoints.
    """

    def __init__(
        self, path: Path, migrations: Sequence[Migration], busy_timeout: float = 30.0
    ) -> None:
        _check_order(migrations)
        self.path = path
        self._lock = threading.RLock()
        self._depth = 0
        self._writing = False
        with translated(f"could not open the database {path}"):
            self._conn = apsw.Connection(str(path))
            try:
                self._conn.set_busy_timeout(int(busy_timeout * 1000))
                # Only takes effect when the file is created. 64 KiB pages hold whole inline
                # blobs and make bulk imports ~6x faster than 4 KiB pages (10,000 small files:
                # 0.05 s against 0.3 s to insert and commit), for ~0.2 ms more per small commit.
                self._conn.execute("PRAGMA page_size=65536")
                self._conn.execute("PRAGMA journal_mode=WAL").fetchall()
                # FULL: a commit that returned survives power loss, not just a killed process.
                self._conn.execute("PRAGMA synchronous=FULL")
                self._conn.execute("PRAGMA foreign_keys=ON")
                self._migrate(migrations)
            except BaseException:
                self._conn.close()
                raise

    @property
    def version(self) -> int:
        """The schema version (`PRAGMA user_version`)."""
        with self.snapshot() as conn:
            return _user_version(conn)

    @contextmanager
    def transaction(self) -> Iterator[apsw.Connection]:
        """A write transaction: committed if the block ends normally, rolled back if it raises."""
        with self._lock, translated("could not update the data directory"):
            if self._depth:
                if not self._writing:
                    raise RuntimeError("a write transaction cannot start inside a snapshot")
                yield from self._savepoint()
                return
            self._conn.execute("BEGIN IMMEDIATE")
            self._depth, self._writing = 1, True
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise
            finally:
                self._depth, self._writing = 0, False

    @contextmanager
    def snapshot(self) -> Iterator[apsw.Connection]:
        """A read transaction: every statement in the block sees the same committed state."""
        with self._lock, translated("could not read the data directory"):
            if self._depth:
                yield self._conn
                return
            self._conn.execute("BEGIN")
            self._depth = 1
            try:
                yield self._conn
            finally:
                self._depth = 0
                self._conn.execute("ROLLBACK")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _savepoint(self) -> Iterator[apsw.Connection]:
        name = f"sp{self._depth}"
        self._conn.execute(f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield self._conn
        except BaseException:
            self._conn.execute(f"ROLLBACK TO {name}")
            self._conn.execute(f"RELEASE {name}")
            raise
        else:
            self._conn.execute(f"RELEASE {name}")
        finally:
            self._depth -= 1

    def _migrate(self, migrations: Sequence[Migration]) -> None:
        latest = migrations[-1].version if migrations else 0
        wanted = {m.version for m in migrations}
        with self.snapshot() as conn:
            if wanted <= _steps_run(conn, latest, self.path):
                return
        # Every missing step in one transaction: a new data directory costs one synced commit,
        # not one per step (some 5 ms each), and an upgrade that fails leaves the database as
        # it was. What ran is read again under the write lock: another process may have
        # migrated the same file meanwhile.
        with self.transaction() as conn:
            done = _steps_run(conn, latest, self.path)
            conn.execute("CREATE TABLE IF NOT EXISTS schema_steps (version INTEGER PRIMARY KEY)")
            conn.executemany(
                "INSERT OR IGNORE INTO schema_steps (version) VALUES (?)", [(v,) for v in done]
            )
            for migration in migrations:
                if migration.version in done:
                    continue
                if isinstance(migration.apply, str):
                    conn.execute(migration.apply)
                else:
                    migration.apply(conn)
                conn.execute("INSERT INTO schema_steps (version) VALUES (?)", (migration.version,))
            version = max(_user_version(conn), latest)
            conn.execute(f"PRAGMA user_version = {version:d}")


def _steps_run(conn: apsw.Connection, latest: int, path: Path) -> set[int]:
    """The steps this database has run. Each is recorded, because a list may skip numbers (a
    store opened alone skips the access layer's) and a later full list must still run those;
    a database from before the record ran every step up to its `user_version`."""
    version = _check_not_newer(_user_version(conn), latest, path)
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_steps'"
    ).fetchone()
    if exists:
        return {int(cast(int, v)) for (v,) in conn.execute("SELECT version FROM schema_steps")}
    return set(range(1, version + 1))


def _user_version(conn: apsw.Connection) -> int:
    (version,) = conn.execute("PRAGMA user_version").fetchall()[0]
    return int(cast(int, version))


def _check_not_newer(version: int, latest: int, path: Path) -> int:
    if version > latest:
        raise StoreError(
            f"the database {path} was written by a newer ringdrop (schema {version}, this one "
            f"knows up to {latest}); upgrade ringdrop to use this data directory"
        )
    return version


def _check_order(migrations: Sequence[Migration]) -> None:
    versions = [m.version for m in migrations]
    if versions and (versions[0] != 1 or versions != sorted(set(versions))):
        raise ValueError(f"migrations must be numbered from 1 upwards in order, not {versions}")
