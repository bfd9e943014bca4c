"""Transfer progress as data: what a progress bar needs (bytes, rate, ETA, per file, connection
state), with the rate counting only bytes that crossed the network in this run."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Literal

State = Literal["connecting", "transferring", "retrying", "exporting", "done", "failed"]

# The rate is measured over this many recent seconds, so it follows changes within moments.
_RATE_WINDOW = 5.0


@dataclass(frozen=True)
class FileProgress:
    """One file in flight (several are, for a folder: members travel on parallel streams)."""

    name: str
    done: int
    total: int | None


@dataclass(frozen=True)
class Progress:
    """One snapshot of a transfer. Byte counts are content bytes, not wire bytes."""

    name: str
    state: State
    total: int | None
    """Content bytes in all, once known."""
    done: int
    """Verified content bytes, including those present before this run."""
    present: int
    """Bytes that were already present when this run started (never counted into the rate)."""
    rate: float
    """Bytes per second received recently."""
    address: str | None = None
    """How the sharer is reached now: `direct ADDRESS` or `relay URL`."""
    attempt: int = 1
    attempts: int = 1
    files_done: int = 0
    files_total: int = 1
    active: tuple[FileProgress, ...] = ()
    providers: tuple[tuple[str, int], ...] = ()
    """When more than the sharer serve the download: each provider in use (peer id) with the
    content bytes received from it so far."""
    """The files being received right now."""
    message: str | None = None

    @property
    def eta(self) -> float | None:
        """Seconds left at the current rate, when it can be told."""
        if self.total is None or self.rate <= 0:
            return None
        return max(0.0, (self.total - self.done) / self.rate)

    @property
    def fraction(self) -> float | None:
        if not self.total:
            return None if self.total is None else 1.0
        return self.done / self.total


ProgressCallback = Callable[[Progress], object]


class Tracker:
    """Accumulates a transfer's progress and reports snapshots, at most every `interval` s."""

    def __init__(
        self, name: str, callback: ProgressCallback | None, attempts: int, interval: float = 0.2
    ) -> None:
        self._callback = callback
        self._interval = interval
        self._last_report = 0.0
        self._samples: deque[tuple[float, int]] = deque()
        self._received = 0
        self._active: dict[str, FileProgress] = {}
        self.current = Progress(
            name=name, state="connecting", total=None, done=0, present=0, rate=0.0,
            attempts=attempts,
        )  # fmt: skip

    def update(self, *, force: bool = False, **changes: object) -> None:
        self.current = replace(self.current, **changes)  # type: ignore[arg-type]
        self._report(force or "state" in changes)

    def file_started(self, name: str, total: int | None, done: int) -> None:
        self._active[name] = FileProgress(name, done, total)
        self.current = replace(self.current, active=tuple(self._active.values()))

    def file_finished(self, name: str) -> None:
        self._active.pop(name, None)
        self.current = replace(
            self.current,
            active=tuple(self._active.values()),
            files_done=self.current.files_done + 1,
        )
        self._report(False)

    def received(self, content_bytes: int, file: str | None = None) -> None:
        """Content bytes of `file` verified from the network just now."""
        now = time.monotonic()
        self._received += content_bytes
        self._samples.append((now, self._received))
        while self._samples and now - self._samples[0][0] > _RATE_WINDOW:
            self._samples.popleft()
        first_time, first_count = self._samples[0]
        span = now - first_time
        rate = (self._received - first_count) / span if span > 0.2 else self.current.rate
        if file in self._active:
            entry = self._active[file]
            self._active[file] = replace(entry, done=entry.done + content_bytes)
        self.current = replace(
            self.current,
            done=self.current.done + content_bytes,
            rate=rate,
            active=tuple(self._active.values()),
        )
        self._report(False)

    def _report(self, force: bool) -> None:
        if self._callback is None:
            return
        now = time.monotonic()
        if force or now - self._last_report >= self._interval:
            self._last_report = now
            self._callback(self.current)
