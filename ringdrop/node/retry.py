"""When a download tries again: only after a connection that worked was lost, with backoff."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """Retries are for a connection that was working: a sharer that restarts, a network that
    drops for a moment. When the first connection of a download finds nobody, every address
    and the relay have had their chance within that attempt, and trying again would only
    repeat its message: the download fails at once and says why."""

    attempts: int = 8
    """Connection attempts in all, the first included."""
    first_delay: float = 0.5
    max_delay: float = 10.0

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt `attempt` (2, 3, …)."""
        return float(min(self.max_delay, self.first_delay * 2 ** (attempt - 2)))
