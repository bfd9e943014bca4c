"""The server's log writes (access decisions, uploads), committed in batches on their own thread.

A serving event loop must never wait for SQLite's write lock, which another process (a
`ringdrop ring add`, a backup tool) may hold for as long as it likes. So the loop only queues
entries; one thread with its own connection commits whatever has gathered in one transaction,
retrying as long as the lock is held elsewhere. `close()` returns only once every entry queued
before it is committed: a clean stop loses nothing.

Until committed, entries are also kept in memory, and `pending()` shows them together with a
consistent view of the database (the writer commits nothing meanwhile), so the process that
queued them reads them at once without waiting for the lock.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import apsw

from ringdrop.access.access import insert_decisions, insert_uploads
from ringdrop.access.records import AccessLogEntry, Upload
from ringdrop.access.schema import MIGRATIONS
from ringdrop.errors import StoreError
from ringdrop.store.db import Database

__all__ = ["LogWriter"]

_log = logging.getLogger("ringdrop.access")

_BATCH = 1000
_RETRY_PAUSE = 0.5
_GIVE_UP_AFTER = 5  # failures other than a lock held elsewhere


class _Marker:
    """Set once every entry queued before it is committed."""

    def __init__(self, stop: bool = False) -> None:
        self.done = threading.Event()
        self.stop = stop


_Item = AccessLogEntry | Upload | _Marker


class LogWriter:
    """Commits queued log entries to the data directory's database from a thread of its own."""

    def __init__(self, path: Path) -> None:
        # Its own connection: the serving side's reads never queue behind this one's lock.
        self._db = Database(path, MIGRATIONS)
        self._queue: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        # Entries queued and not yet committed, oldest first. _order keeps the lists in the
        # queue's order (a commit drops as many as it wrote from their heads); it is never held
        # for I/O, so queueing (on the event loop) never waits. _view is held across each
        # COMMIT, with the removal of what it wrote, and by readers; the COMMIT never waits for
        # another process, since the writer holds SQLite's write lock by then.
        self._order = threading.Lock()
        self._view = threading.Lock()
        self._pending_decisions: list[AccessLogEntry] = []
        self._pending_uploads: list[Upload] = []
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ringdrop-log-writer", daemon=True)
        self._thread.start()

    def decision(self, entry: AccessLogEntry) -> None:
        self._check_open()
        with self._order:
            self._pending_decisions.append(entry)
            self._queue.put(entry)

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
            yield list(self._pending_decisions), list(self._pending_uploads)

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
            batch = [self._queue.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            decisions = [item for item in batch if isinstance(item, AccessLogEntry)]
            uploads = [item for item in batch if isinstance(item, Upload)]
            if decisions or uploads:
                self._commit(decisions, uploads)
            for item in batch:
                if isinstance(item, _Marker):
                    stopping = stopping or item.stop
                    item.done.set()

    def _commit(self, decisions: list[AccessLogEntry], uploads: list[Upload]) -> None:
        """Commits the batch, however long the write lock is held elsewhere.

        Any other failure (a full disk, a damaged database) is retried a few times, then the
        batch is given up with an error in the log: waiting for ever would hang the server's
        stop on something that will not heal by itself.
        """
        warned = False
        failures = 0
        while True:
            viewing = False
            try:
                with self._db.transaction() as conn:
                    insert_decisions(conn, decisions)
                    insert_uploads(conn, uploads)
                    self._view.acquire()
                    viewing = True
                # Committed: the entries are in the database now, no longer pending.
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
                        return
                if not warned:
                    _log.warning("Cannot save %d log entries yet (%s); retrying", count, error)
                    warned = True
                time.sleep(_RETRY_PAUSE)
            finally:
                if viewing:
                    self._view.release()

    def _forget(self, decisions: list[AccessLogEntry], uploads: list[Upload]) -> None:
        """Drops a batch from the pending lists (their heads); the caller holds _view."""
        del self._pending_decisions[: len(decisions)]
        del self._pending_uploads[: len(uploads)]
