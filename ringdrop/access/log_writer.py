"""The server's log writes (access decisions, uploads), committed in batches on their own thread.

A serving event loop must never wait for SQLite's write lock, which another process (a
`ringdrop ring add`, a backup tool) may hold for as long as it likes. So the loop only queues
entries; one thread with its own connection commits whatever has gathered in one transaction,
retrying as long as the lock is held elsewhere. `close()` returns only once every entry queued
before it is committed: a clean stop loses nothing.

Until committed, entries are also kept in memory, and `pending()` shows them together with a
consistent view of the database (the writer commits nothing meanwhile), so the process that
queued them reads them at once without waiting for the lock.

The logs stay bounded under attack: a peer's denials that follow each other closely share one
row (a count and the last one's time) and one place in the queue, whatever their number; and
the thread deletes what `Retention` no longer keeps, when it starts and then every minute.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import apsw

from ringdrop.access.access import insert_decision, insert_uploads, prune_logs
from ringdrop.access.records import AccessLogEntry, Retention, Upload
from ringdrop.access.schema import MIGRATIONS
from ringdrop.errors import StoreError
from ringdrop.store.db import Database

__all__ = ["LogWriter"]

_log = logging.getLogger("ringdrop.access")

_BATCH = 1000
_RETRY_PAUSE = 0.5
_GIVE_UP_AFTER = 5  # failures other than a lock held elsewhere
REPEAT_GAP = 60.0
"""A peer's denial within this many seconds of its previous one joins that one's row…"""
REPEAT_SPAN = 3600.0
"""…as long as the row covers at most this many seconds: a long attack is a row an hour."""
_RUNS = 1024  # peers whose latest denial row is remembered (the least recent are forgotten)
_PRUNE_EVERY = 60.0


class _Marker:
    """Set once every entry queued before it is committed."""

    def __init__(self, stop: bool = False) -> None:
        self.done = threading.Event()
        self.stop = stop


@dataclass
class _Run:
    """Denials of one peer sharing one access-log row: its first entry, the denials not yet
    written, the newest one's time, and the row once it is written."""

    entry: AccessLogEntry
    last_at: float
    total: int = 1
    """Denials in the row, written or not."""
    unwritten: int = 1
    row: int | None = None
    queued: bool = True
    """In the queue: more denials only add to `unwritten`."""

    def joins(self, entry: AccessLogEntry) -> bool:
        return entry.at - self.last_at <= REPEAT_GAP and entry.at - self.entry.at <= REPEAT_SPAN

    def view(self) -> AccessLogEntry:
        """The row as it stands with every denial written."""
        last = self.last_at if self.total > 1 else None
        return dataclasses.replace(self.entry, count=self.total, last_at=last)


_Item = AccessLogEntry | _Run | Upload | _Marker


class LogWriter:
    """Commits queued log entries to the data directory's database from a thread of its own."""

    def __init__(
        self, path: Path, retention: Retention | None = None, *, retry_pause: float = _RETRY_PAUSE
    ) -> None:
        """`retry_pause`: seconds between attempts to commit entries the database refused."""
        self._retry_pause = retry_pause
        # Its own connection: the serving side's reads never queue behind this one's lock.
        self._db = Database(path, MIGRATIONS)
        self._retention = retention or Retention()
        self._pruned_at: float | None = None
        self._runs: OrderedDict[bytes, _Run] = OrderedDict()
        """Each recent denier's latest run, least recent first; changed under _order."""
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        # Entries queued and not yet committed, oldest first. _order keeps the lists in the
        # queue's order (a commit drops as many as it wrote from their heads); it is never held
        # for I/O, so queueing (on the event loop) never waits. _view is held across each
        # COMMIT, with the removal of what it wrote, and by readers; the COMMIT never waits for
        # another process, since the writer holds SQLite's write lock by then.
        self._order = threading.Lock()
        self._view = threading.Lock()
        self._pending_decisions: list[AccessLogEntry | _Run] = []
        self._pending_uploads: list[Upload] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ringdrop-log-writer", daemon=True)
        self._thread.start()

    def decision(self, entry: AccessLogEntry) -> None:
        """Queues a decision; a denial that closely follows the same peer's last one only adds
        to that one's row (and takes no more room in the queue)."""
        self._check_open()
        peer = entry.peer_id.raw
        with self._order:
            if entry.allowed:
                self._runs.pop(peer, None)
                self._pending_decisions.append(entry)
                self._queue.put(entry)
                return
            run = self._runs.get(peer)
            if run is not None and run.joins(entry):
                run.unwritten += 1
                run.total += 1
                run.last_at = entry.at
                self._runs.move_to_end(peer)
                if not run.queued:
                    run.queued = True
                    self._queue.put(run)
                return
            run = self._runs[peer] = _Run(entry, entry.at)
            self._runs.move_to_end(peer)
            if len(self._runs) > _RUNS:
                self._runs.popitem(last=False)
            self._pending_decisions.append(run)
            self._queue.put(run)

    def upload(self, entry: Upload) -> None:
        self._check_open()
        with self._order:
            self._pending_uploads.append(entry)
            self._queue.put(entry)

    @contextmanager
    def pending(self) -> Iterator[tuple[list[AccessLogEntry], list[Upload]]]:
        """The decisions and uploads queued but not committed, oldest first; while the block
        runs nothing is committed, so a read of the database in it neither misses nor repeats
        any of them."""
        with self._view:
            with self._order:
                decisions = [
                    d.view() if isinstance(d, _Run) else d for d in self._pending_decisions
                ]
                uploads = list(self._pending_uploads)
            yield decisions, uploads

    def flush(self, timeout: float | None = None) -> bool:
        """Waits until every entry queued so far is committed; False if `timeout` ran out."""
        if self._closed:
            return True
        marker = _Marker()
        self._queue.put(marker)
        return marker.done.wait(timeout)

    def close(self) -> None:
        """Commits everything queued, then stops the thread and closes the connection.

        Blocks while another process holds the write lock: run it off the event loop.
        """
        if self._closed:
            return
        self._closed = True
        marker = _Marker(stop=True)
        self._queue.put(marker)
        marker.done.wait()
        self._thread.join()
        self._db.close()

    def _check_open(self) -> None:
        if self._closed:
            raise StoreError("The log writer is closed; the entry cannot be saved.")

    def _run(self) -> None:
        stopping = False
        while not stopping:
            try:
                batch = [self._queue.get(timeout=self._prune_due())]
            except queue.Empty:
                batch = []
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            decisions = [item for item in batch if isinstance(item, AccessLogEntry | _Run)]
            uploads = [item for item in batch if isinstance(item, Upload)]
            if decisions or uploads or self._prune_due() == 0:
                self._commit(decisions, uploads)
            for item in batch:
                if isinstance(item, _Marker):
                    stopping = stopping or item.stop
                    item.done.set()

    def _prune_due(self) -> float:
        """Seconds until the logs are next pruned (0: now)."""
        if self._pruned_at is None:
            return 0.0
        return max(0.0, self._pruned_at + _PRUNE_EVERY - time.monotonic())

    def _take(self, decisions: list[AccessLogEntry | _Run]) -> list[tuple[_Run, int, float]]:
        """What each run in `decisions` gathered since its last write: the run, how many
        denials, the newest one's time. They now count as written: later ones queue it anew."""
        taken = []
        with self._order:
            for item in decisions:
                if isinstance(item, _Run):
                    taken.append((item, item.unwritten, item.last_at))
                    item.unwritten, item.queued = 0, False
        return taken

    def _commit(self, decisions: list[AccessLogEntry | _Run], uploads: list[Upload]) -> None:
        """Commits the batch (and prunes the logs when it is time), however long the write
        lock is held elsewhere.

        Any other failure (a full disk, a damaged database) is retried a few times, then the
        batch is given up with an error in the log: waiting for ever would hang the server's
        stop on something that will not heal by itself.
        """
        taken = self._take(decisions)
        warned = False
        failures = 0
        while True:
            viewing = False
            try:
                prune = self._prune_due() == 0
                with self._db.transaction() as conn:
                    first_rows = _write(conn, decisions, taken)
                    insert_uploads(conn, uploads)
                    if prune:
                        prune_logs(conn, self._retention, time.time())
                    self._view.acquire()
                    viewing = True
                # Committed: the entries are in the database now, no longer pending.
                for run, row in first_rows:
                    run.row = row
                if prune:
                    self._pruned_at = time.monotonic()
                self._forget(decisions, uploads)
                return
            except StoreError as error:
                count = len(decisions) + len(uploads)
                if not isinstance(error.__cause__, apsw.BusyError | apsw.LockedError):
                    failures += 1
                    if failures >= _GIVE_UP_AFTER:
                        _log.error("Could not save %d log entries: %s", count, error)
                        with self._view:
                            self._forget(decisions, uploads)
                        self._pruned_at = time.monotonic()
                        return
                if not warned:
                    _log.warning("Cannot save %d log entries yet (%s); retrying", count, error)
                    warned = True
                time.sleep(self._retry_pause)
            finally:
                if viewing:
                    self._view.release()

    def _forget(self, decisions: list[AccessLogEntry | _Run], uploads: list[Upload]) -> None:
        """Drops a batch from the pending lists; the caller holds _view. Uploads are the heads
        of theirs; a run is pending only until its first write, so decisions go by identity."""
        written = {id(item) for item in decisions}
        with self._order:
            self._pending_decisions = [d for d in self._pending_decisions if id(d) not in written]
        del self._pending_uploads[: len(uploads)]


def _write(
    conn: apsw.Connection,
    decisions: list[AccessLogEntry | _Run],
    taken: list[tuple[_Run, int, float]],
) -> list[tuple[_Run, int]]:
    """Writes a batch's decisions in order, in the caller's transaction; the rows of the runs
    written for the first time (the caller records them once the transaction commits)."""
    counts = iter(taken)
    first_rows = []
    for item in decisions:
        if isinstance(item, AccessLogEntry):
            insert_decision(conn, item)
            continue
        run, count, last_at = next(counts)
        if run.row is None:
            last = last_at if count > 1 else None
            entry = dataclasses.replace(run.entry, count=count, last_at=last)
            first_rows.append((run, insert_decision(conn, entry)))
        elif count:
            conn.execute(
                "UPDATE access_log SET count = count + ?, last_at = ? WHERE id = ?",
                (count, last_at, run.row),
            )
    return first_rows
