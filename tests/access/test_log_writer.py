"""The log writer: entries queued by a server are committed off its thread, survive another
connection holding the write lock, are never lost on close, and are read back at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import apsw
import nacl.signing
import pytest

from ringdrop.access import MIGRATIONS, Access, AccessLogEntry, LogWriter, Upload
from ringdrop.errors import StoreError
from ringdrop.identity import PeerId
from ringdrop.store.db import Database

PEER = PeerId(nacl.signing.SigningKey(b"p" * 32).verify_key.encode())
ROOT = b"r" * 32


def decision(at: float) -> AccessLogEntry:
    return AccessLogEntry(at, PEER, ROOT, "read", True, "in the open ring", "open")


def upload(at: float) -> Upload:
    return Upload(at, PEER, ROOT, 1000, "complete")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    db = Database(tmp_path / "db.sqlite3", MIGRATIONS)
    yield db
    db.close()


def test_close_commits_every_queued_entry_in_order(db: Database) -> None:
    writer = LogWriter(db.path)
    for at in range(3):
        writer.decision(decision(float(at)))
    writer.upload(upload(10.0))
    writer.upload(upload(11.0))
    writer.close()
    access = Access(db)
    assert [e.at for e in access.access_log()] == [2.0, 1.0, 0.0]
    assert [u.at for u in access.uploads()] == [11.0, 10.0]


def test_entries_wait_out_another_connections_write_lock_and_are_read_back_meanwhile(
    db: Database,
) -> None:
    writer = LogWriter(db.path)
    other = apsw.Connection(str(db.path))
    other.execute("BEGIN IMMEDIATE")
    try:
        writer.decision(decision(1.0))
        writer.upload(upload(2.0))
        assert not writer.flush(timeout=0.3)  # it cannot commit while the lock is held
        mine, theirs = Access(db), Access(db)
        mine.use_log_writer(writer)
        assert [e.at for e in mine.access_log()] == [1.0]
        assert [u.at for u in mine.uploads()] == [2.0]
        assert theirs.access_log() == []  # not committed: other readers cannot see it yet
    finally:
        other.execute("COMMIT")
        other.close()
    writer.close()
    mine.use_log_writer(None)
    assert [e.at for e in mine.access_log()] == [1.0]
    assert [u.at for u in mine.uploads()] == [2.0]


def test_reading_while_entries_commit_neither_misses_nor_repeats_one(db: Database) -> None:
    writer = LogWriter(db.path)
    access = Access(db)
    access.use_log_writer(writer)
    total = 1500
    queued = 0

    def queue_all() -> None:
        nonlocal queued
        for at in range(total):
            writer.decision(decision(float(at)))
            queued = at + 1
            if at % 5 == 0:
                writer.flush()  # many small commits: many moments for a read to fall between

    thread = threading.Thread(target=queue_all)
    thread.start()
    try:
        while True:
            before = queued
            seen = [e.at for e in access.access_log(limit=total)]
            after = queued
            assert len(seen) == len(set(seen))
            assert before <= len(seen) <= after
            assert sorted(seen) == [float(at) for at in range(len(seen))]
            if before == total:
                break
    finally:
        thread.join()
        writer.close()


def test_a_closed_writer_refuses_entries_rather_than_drop_them(db: Database) -> None:
    writer = LogWriter(db.path)
    writer.close()
    writer.close()  # harmless twice
    with pytest.raises(StoreError):
        writer.decision(decision(1.0))


def test_a_failure_that_will_not_heal_is_logged_and_does_not_hang_the_stop(
    db: Database, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ringdrop.access.log_writer._RETRY_PAUSE", 0.01)
    writer = LogWriter(db.path)
    with db.transaction() as conn:
        conn.execute("DROP TABLE uploads")
    writer.upload(upload(1.0))
    writer.close()
    assert any("Could not save 1 log entries" in r.getMessage() for r in caplog.records)
