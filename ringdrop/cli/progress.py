"""Progress on stderr: one line redrawn in place on a terminal; elsewhere (a log file, a pipe)
an occasional plain line, so that scripts' output stays clean."""

from __future__ import annotations

import shutil
import sys
import time
from types import TracebackType
from typing import Self, TextIO

from ringdrop import display
from ringdrop.node.progress import Progress

# Without a terminal, a transfer prints a line this often (and on every retry).
LOG_INTERVAL = 10.0
# A terminal line is redrawn at most this often for byte-count progress (the node throttles
# transfers itself; imports and checks report every few MiB).
_REDRAW_INTERVAL = 0.1


class StatusLine:
    """The line at the bottom of a terminal that progress redraws; plain lines elsewhere."""

    def __init__(self, out: TextIO | None = None) -> None:
        self.out = out or sys.stderr
        self.is_tty = self.out.isatty()
        self._shown = False

    def show(self, text: str) -> None:
        """Redraws the line (terminal only), cut to the terminal's width so it never wraps."""
        if not self.is_tty:
            return
        width = shutil.get_terminal_size().columns - 1
        if len(text) > width:
            text = text[: max(0, width - 1)] + "…"
        print(f"\r\033[K{text}", end="", file=self.out, flush=True)
        self._shown = True

    def log(self, text: str) -> None:
        """Prints `text` as a line of its own, above the status line on a terminal."""
        self.clear()
        print(text, file=self.out, flush=True)

    def clear(self) -> None:
        if self._shown:
            print("\r\033[K", end="", file=self.out, flush=True)
            self._shown = False

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.clear()


class BytesProgress(StatusLine):
    """`label: 45%  1.2 GiB / 2.6 GiB` for local work (hashing an import, checking the store);
    call it with (done, total)."""

    def __init__(self, label: str, out: TextIO | None = None) -> None:
        super().__init__(out)
        self._label = label
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < _REDRAW_INTERVAL and done < total:
            return
        self._last = now
        percent = f"{100 * done // total:3d}%" if total else "100%"
        self.show(f"{self._label}: {percent}  {display.size(done)} / {display.size(total)}")


class TransferProgress(StatusLine):
    """A download's progress: percent, bytes, rate, ETA, and the file in flight for a folder."""

    def __init__(self, out: TextIO | None = None) -> None:
        super().__init__(out)
        self._last_log = time.monotonic()
        self._last_state = ""
        self._last_address: str | None = None

    def __call__(self, progress: Progress) -> None:
        text = describe(progress)
        if self.is_tty:
            if progress.state == "retrying" and progress.state != self._last_state:
                self.log(text)  # kept on screen: why the transfer paused
            else:
                self.show(text)
        elif self._due(progress):
            self.log(text)
        self._last_state = progress.state

    def _due(self, progress: Progress) -> bool:
        now = time.monotonic()
        if progress.state == "retrying" and progress.state != self._last_state:
            return True
        if progress.address != self._last_address and progress.state == "transferring":
            moved = self._last_address is not None  # a move between paths is news, the first not
            self._last_address = progress.address
            if moved:
                return True
        if progress.state == "transferring" and now - self._last_log >= LOG_INTERVAL:
            self._last_log = now
            return True
        return False


def describe(progress: Progress) -> str:
    """One line about a transfer in any state."""
    name = display.safe(progress.name)
    attempt = f" (attempt {progress.attempt}/{progress.attempts})" if progress.attempt > 1 else ""
    if progress.state == "connecting":
        return f"{name}: connecting to the sharer…{attempt}"
    if progress.state == "retrying":
        reason = display.safe(progress.message or "connection lost")
        return f"{name}: {reason}; retrying{attempt}"
    if progress.state == "exporting":
        return f"{name}: writing the files…"
    return f"{name}: {_amounts(progress)}{_current_file(progress)}"


def _amounts(progress: Progress) -> str:
    fraction = progress.fraction
    percent = "  ?%" if fraction is None else f"{int(100 * fraction):3d}%"
    parts = [percent, f"{display.size(progress.done)} / {display.size(progress.total)}"]
    if progress.rate > 0:
        parts.append(display.rate(progress.rate))
    eta = progress.eta
    if eta is not None and progress.done < (progress.total or 0):
        parts.append(f"ETA {display.clock(eta)}")
    if len(progress.providers) > 1:
        parts.append(f"{len(progress.providers)} providers")
    elif progress.address:
        parts.append(display.safe(progress.address))
    return "  ".join(parts)


def _current_file(progress: Progress) -> str:
    if progress.files_total <= 1 or not progress.active:
        return ""
    first = progress.active[0]
    file_part = display.safe(first.name)
    if first.total:
        file_part += f" {100 * first.done // first.total}%"
    if len(progress.active) > 1:
        file_part += f" (+{len(progress.active) - 1} more)"
    return f"  [{progress.files_done}/{progress.files_total} files] {file_part}"
