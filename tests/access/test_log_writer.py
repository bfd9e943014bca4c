"""The log writer: entries queued by a server are committed off its thread, survive another
connection holding the write lock, are never lost on close, and are read back at once."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import apsw
import nacl.signing
import pytest

from ringdrop.access import MIGRATIONS, Access, AccessLogEntry, LogWriter, Retention, Upload
from ringdrop.access.log_writer import REPEAT_GAP, REPEAT_SPAN
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
    other.set_busy_timeout(10_000)  # the writer prunes the logs as it starts
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
    db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    writer = LogWriter(db.path, retry_pause=0.01)
    with db.transaction() as conn:
        conn.execute("DROP TABLE uploads")
    writer.upload(upload(1.0))
    writer.close()
    assert any("Could not save 1 log entries" in r.getMessage() for r in caplog.records)


# Bounded growth: repeated denials share a row, and old entries are pruned.

OTHER = PeerId(nacl.signing.SigningKey(b"q" * 32).verify_key.encode())


def denial(at: float, peer: PeerId = PEER, root: bytes = ROOT) -> AccessLogEntry:
    return AccessLogEntry(at, peer, root, "read", False, "not a member", None)


def rows(db: Database) -> list[tuple[float, bool, int, float | None]]:
    return [(e.at, e.allowed, e.count, e.last_at) for e in Access(db).access_log(limit=1000)]


def test_a_peers_repeated_denials_share_one_row(db: Database) -> None:
    writer = LogWriter(db.path)
    for i in range(1000):
        writer.decision(denial(100.0 + i / 10, root=bytes([i % 256]) * 32))
    writer.close()
    assert rows(db) == [(100.0, False, 1000, 199.9)]
    assert Access(db).access_log()[0].root == bytes(32)  # the first denial's content


def test_denials_join_the_row_across_commits(db: Database) -> None:
    writer = LogWriter(db.path)
    writer.decision(denial(1.0))
    assert writer.flush(timeout=10)
    writer.decision(denial(2.0))
    writer.decision(denial(3.0))
    writer.close()
    assert rows(db) == [(1.0, False, 3, 3.0)]


def test_other_peers_pauses_and_allowed_requests_start_new_rows(db: Database) -> None:
    writer = LogWriter(db.path)
    writer.decision(denial(0.0))
    writer.decision(denial(1.0, peer=OTHER))
    writer.decision(denial(2.0))
    writer.decision(decision(3.0))  # allowed: a denial after it starts afresh
    writer.decision(denial(4.0))
    writer.decision(denial(5.0 + REPEAT_GAP))
    writer.close()
    assert rows(db) == [
        (5.0 + REPEAT_GAP, False, 1, None),
        (4.0, False, 1, None),
        (3.0, True, 1, None),
        (1.0, False, 1, None),
        (0.0, False, 2, 2.0),
    ]


def test_a_row_covers_an_hour_of_a_long_attack_at_most(db: Database) -> None:
    writer = LogWriter(db.path)
    step = REPEAT_GAP / 2
    within = int(REPEAT_SPAN / step) + 1  # at 0, step, … REPEAT_SPAN
    for i in range(within + 1):
        writer.decision(denial(i * step))
    writer.close()
    assert [count for _, _, count, _ in rows(db)] == [1, within]


def test_denials_queued_behind_a_held_lock_take_one_place_and_read_back_counted(
    db: Database,
) -> None:
    writer = LogWriter(db.path)
    assert writer.flush(timeout=10)  # its first pruning is done
    other = apsw.Connection(str(db.path))
    other.execute("BEGIN IMMEDIATE")
    try:
        for i in range(10_000):
            writer.decision(denial(float(i) / 1000))
        mine = Access(db)
        mine.use_log_writer(writer)
        with writer.pending() as (pending, _):
            assert len(pending) == 1
        assert [(e.count, e.last_at) for e in mine.access_log()] == [(10_000, 9.999)]
    finally:
        other.execute("COMMIT")
        other.close()
    writer.close()
    assert rows(db) == [(0.0, False, 10_000, 9.999)]


def test_the_writer_prunes_entries_beyond_the_retention(db: Database) -> None:
    now = time.time()
    access = Access(db)
    for i in range(10):
        access.log_upload(PEER, ROOT, i, "complete", at=now - 3 * 86400 + i)
        access.decide(PEER, ROOT, now=now - 3 * 86400 + i)
    for i in range(8):
        access.log_upload(PEER, ROOT, 100 + i, "complete", at=now - 60 + i)
        access.decide(PEER, ROOT, now=now - 60 + i)
    writer = LogWriter(db.path, Retention(days=2, entries=5))
    writer.close()
    assert [u.bytes_sent for u in access.uploads()] == [107, 106, 105, 104, 103]
    assert [e.at for e in access.access_log()] == [now - 60 + i for i in (7, 6, 5, 4, 3)]


def test_the_writer_keeps_entries_within_the_retention(db: Database) -> None:
    now = time.time()
    access = Access(db)
    for i in range(4):
        access.log_upload(PEER, ROOT, i, "complete", at=now - 86400 + i)
    LogWriter(db.path, Retention(days=2, entries=5)).close()
    assert [u.bytes_sent for u in access.uploads()] == [3, 2, 1, 0]
