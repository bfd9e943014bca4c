"""The database: ordered migrations, transactions, and errors translated at the boundary."""

from __future__ import annotations

import errno
from pathlib import Path

import apsw
import pytest

from ringdrop.errors import DiskFullError, NotFoundError, StoreError
from ringdrop.store import Database, Migration
from ringdrop.store.schema import MIGRATIONS
from ringdrop.store.translate import db_error, os_error

TWO = [
    Migration(1, "t", "CREATE TABLE t (x INTEGER)"),
    Migration(2, "u", "CREATE TABLE u (y INTEGER)"),
]


def insert_then_fail(db: Database, value: int) -> None:
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (?)", (value,))
        raise KeyError


def tables(db: Database) -> set[str]:
    with db.snapshot() as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_migrations_run_in_order_and_set_user_version(tmp_path: Path) -> None:
    db = Database(tmp_path / "db", TWO)
    assert db.version == 2
    assert {"t", "u"} <= tables(db)


def test_reopening_runs_only_new_migrations(tmp_path: Path) -> None:
    calls: list[int] = []

    def third(conn: apsw.Connection) -> None:
        calls.append(3)
        conn.execute("INSERT INTO t VALUES (3)")

    Database(tmp_path / "db", TWO).close()
    db = Database(tmp_path / "db", [*TWO, Migration(3, "data", third)])
    db.close()
    Database(tmp_path / "db", [*TWO, Migration(3, "data", third)]).close()
    assert calls == [3]


def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    Database(tmp_path / "db", TWO).close()
    with pytest.raises(StoreError, match="newer ringdrop"):
        Database(tmp_path / "db", TWO[:1])


def test_migrations_must_be_numbered_from_one_in_order(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="numbered"):
        Database(tmp_path / "db", [TWO[1], TWO[0]])


def test_a_list_of_steps_may_skip_numbers_and_runs_each_once(tmp_path: Path) -> None:
    ninth = Migration(9, "v", "CREATE TABLE v (z INTEGER)")
    db = Database(tmp_path / "db", [TWO[0], ninth])
    assert db.version == 9
    assert {"t", "v"} <= tables(db)
    db.close()
    Database(tmp_path / "db", [TWO[0], ninth]).close()  # nothing to run again: no error
    with pytest.raises(ValueError, match="numbered"):
        Database(tmp_path / "other", [TWO[1], ninth])


def test_the_steps_a_list_skipped_run_when_a_full_list_opens_the_database(tmp_path: Path) -> None:
    ninth = Migration(9, "v", "CREATE TABLE v (z INTEGER)")
    Database(tmp_path / "db", [TWO[0], ninth]).close()  # a store opened alone
    db = Database(tmp_path / "db", [*TWO, ninth])  # then as a node's: step 2 must still run
    assert {"t", "u", "v"} <= tables(db)
    assert db.version == 9
    db.close()
    # A database from before steps were recorded ran every step up to its version.
    old = apsw.Connection(str(tmp_path / "old"))
    old.execute("CREATE TABLE t (x INTEGER); CREATE TABLE u (y INTEGER); PRAGMA user_version = 2")
    old.close()
    db = Database(tmp_path / "old", [*TWO, ninth])
    assert {"t", "u", "v"} <= tables(db)
    assert db.version == 9


def test_a_failing_migration_leaves_the_previous_version(tmp_path: Path) -> None:
    broken = Migration(2, "broken", "CREATE TABLE v (z); CREATE TABLE v (z)")
    with pytest.raises(StoreError):
        Database(tmp_path / "db", [TWO[0], broken])
    db = Database(tmp_path / "db", TWO[:1])
    assert db.version == 1
    assert "v" not in tables(db)


def test_an_upgrade_that_fails_leaves_the_database_as_it_was(tmp_path: Path) -> None:
    Database(tmp_path / "db", TWO[:1]).close()
    broken = Migration(3, "broken", "CREATE TABLE v (z); CREATE TABLE v (z)")
    with pytest.raises(StoreError):
        Database(tmp_path / "db", [*TWO, broken])
    db = Database(tmp_path / "db", TWO[:1])
    assert db.version == 1
    assert "u" not in tables(db), "the step before the failing one is undone too"


def test_the_store_schema_is_in_wal_mode(tmp_path: Path) -> None:
    db = Database(tmp_path / "db", MIGRATIONS)
    with db.snapshot() as conn:
        assert conn.execute("PRAGMA journal_mode").fetchall() == [("wal",)]


def test_transaction_commits_at_the_end_of_the_block(tmp_path: Path) -> None:
    db = Database(tmp_path / "db", TWO)
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
    other = apsw.Connection(str(tmp_path / "db"))
    assert other.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_transaction_rolls_back_when_the_block_raises(tmp_path: Path) -> None:
    db = Database(tmp_path / "db", TWO)
    with pytest.raises(KeyError):
        insert_then_fail(db, 1)
    with db.snapshot() as conn:
        assert conn.execute("SELECT count(*) FROM t").fetchall() == [(0,)]


def test_nested_transaction_rolls_back_only_its_own_block(tmp_path: Path) -> None:
    db = Database(tmp_path / "db", TWO)
    with db.transaction() as conn:
        conn.execute("INSERT INTO t VALUES (1)")
        with pytest.raises(KeyError):
            insert_then_fail(db, 2)
    with db.snapshot() as conn:
        assert conn.execute("SELECT x FROM t").fetchall() == [(1,)]


def test_a_write_cannot_start_inside_a_snapshot(tmp_path: Path) -> None:
    db = Database(tmp_path / "db", TWO)
    with db.snapshot(), pytest.raises(RuntimeError), db.transaction():
        pass


def test_a_write_lock_held_too_long_becomes_a_store_error(tmp_path: Path) -> None:
    db = Database(tmp_path / "db", TWO, busy_timeout=0.05)
    holder = apsw.Connection(str(tmp_path / "db"))
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(StoreError, match="busy"), db.transaction():
        pass
    holder.execute("ROLLBACK")


def test_disk_full_becomes_disk_full_error() -> None:
    error = os_error(OSError(errno.ENOSPC, "No space left on device", "/x"), "could not copy")
    assert isinstance(error, DiskFullError)
    assert str(error) == "could not copy: the disk is full (/x)"
    assert isinstance(db_error(apsw.FullError("full"), "could not tag"), DiskFullError)


def test_a_missing_file_becomes_not_found_error() -> None:
    error = os_error(FileNotFoundError(errno.ENOENT, "No such file", "/gone"), "could not import")
    assert isinstance(error, NotFoundError)
    assert "/gone" in str(error)
