"""When a download tries again, and how long it waits before it does."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How often a download connects again after losing its connection, and how long it waits."""

    attempts: int = 8
    """Connection attempts in all, the first included."""
    first_delay: float = 0.5
    max_delay: float = 10.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt `attempt` (2, 3, …)."""
        return float(min(self.max_delay, self.first_delay * 2 ** (attempt - 2)))
