"""The server's log writes (access decisions, uploads), committed in batches on their own thread.

A serving event loop must never wait for SQLite's write lock, which another process (a
`ringdrop ring add`, a backup tool) may hold for as long as it likes. So the loop only queues
entries; one thread with its own connection commits whatever has gathered in one transaction,
retrying as long as the lock is held elsewhere. `close()` returns only once every entry queued
before it is committed: a clean stop loses nothing.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from pathlib import Path

from ringdrop.errors import StoreError
from ringdrop.store.access import AccessLogEntry, Upload, insert_decisions, insert_uploads
from ringdrop.store.db import Database
from ringdrop.store.schema import MIGRATIONS

__all__ = ["LogWriter"]

_log = logging.getLogger("ringdrop.store")

_BATCH = 1000
_RETRY_PAUSE = 0.5


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
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="ringdrop-log-writer", daemon=True)
        self._thread.start()

    def decision(self, entry: AccessLogEntry) -> None:
        self._put(entry)

    def upload(self, entry: Upload) -> None:
        self._put(entry)

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

    def _put(self, entry: AccessLogEntry | Upload) -> None:
        if self._closed:
            raise StoreError("The log writer is closed; the entry cannot be saved.")
        self._queue.put(entry)

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
        """Commits the batch, however long the write lock is held elsewhere."""
        warned = False
        while True:
            try:
                with self._db.transaction() as conn:
                    insert_decisions(conn, decisions)
                    insert_uploads(conn, uploads)
                return
            except StoreError as error:
                # The busy timeout ran out (or the disk failed): keep the entries and retry;
                # dropping them would leave decisions unrecorded.
                if not warned:
                    _log.warning(
                        "Cannot save %d log entries yet (%s); retrying",
                        len(decisions) + len(uploads),
                        error,
                    )
                    warned = True
                time.sleep(_RETRY_PAUSE)
