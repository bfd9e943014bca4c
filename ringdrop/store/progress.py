"""Progress reporting: `(done, total)` in bytes of the user's content, over several passes."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["Meter", "ProgressFn"]

ProgressFn = Callable[[int, int], object]
"""Called with (bytes done, bytes total); raising from it cancels the work."""


class Meter:
    """Adds up the bytes of every pass over `total` bytes and reports them as one figure.

    A copy-then-hash import reads each byte twice: with `passes=2`, a 1 GiB file reports
    0 … 1 GiB once over both passes, so a progress bar moves steadily and ends at the total.
    """

    def __init__(self, total: int, callback: ProgressFn | None, passes: int = 1) -> None:
        self.total = total
        self._callback = callback
        self._passes = passes
        self._units = 0

    def add(self, n: int) -> None:
        self._units += n
        if self._callback is not None:
            self._callback(min(self._units // self._passes, self.total), self.total)

    def native(self) -> Callable[[int, int], None] | None:
        """A callback for the native module, which reports (done, total) for one file."""
        if self._callback is None:
            return None
        last = 0

        def report(done: int, _total: int) -> None:
            nonlocal last
            self.add(done - last)
            last = done

        return report
