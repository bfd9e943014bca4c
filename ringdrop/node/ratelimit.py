"""The serving node's upload rate limit: one token bucket shared by every upload, so that the
node sends at most `rate` bytes a second to all peers together (a home uplink's share)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterable, AsyncIterator

__all__ = ["Limited", "RateLimit"]


class RateLimit:
    """A token bucket of `rate` bytes a second holding at most `burst` bytes (default: a tenth
    of a second's worth, at least 64 KiB). A piece larger than what the bucket holds is sent
    on credit: its sender, and those after it, wait until the bucket has paid it back, so the
    average never exceeds the rate and the waits are in arrival order."""

    def __init__(self, rate: int, burst: int | None = None) -> None:
        if rate <= 0:
            raise ValueError(f"a rate limit is a positive number of bytes a second, not {rate}")
        self.rate = rate
        self._burst = burst if burst is not None else max(64 * 1024, rate // 10)
        self._tokens = float(self._burst)
        self._at = time.monotonic()

    async def take(self, size: int) -> None:
        """Waits until `size` more bytes may go."""
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self.rate)
        self._at = now
        self._tokens -= size
        if self._tokens < 0:
            await asyncio.sleep(-self._tokens / self.rate)


class Limited:
    """An upload's body whose pieces go out no faster than `limit` allows; closing it closes
    the body beneath."""

    def __init__(self, body: AsyncIterable[bytes], limit: RateLimit) -> None:
        self._body = body
        self._pieces: AsyncIterator[bytes] = aiter(body)
        self._limit = limit

    def __aiter__(self) -> Limited:
        return self

    async def __anext__(self) -> bytes:
        piece = await anext(self._pieces)
        await self._limit.take(len(piece))
        return piece

    async def aclose(self) -> None:
        close = getattr(self._body, "aclose", None)
        if close is not None:
            await close()
