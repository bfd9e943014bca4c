"""Publishing this node's record: `PUT <pkarr relay>/<z32 key>` with the signed packet's payload,
on every change and every 5 minutes otherwise (iroh's `DEFAULT_REPUBLISH_INTERVAL`), retried
after 1, 2, 3 … seconds while it fails (iroh's `PublisherService`, capped here at the interval).

Timestamps are microseconds that only grow, even across restarts and a clock set back: the last
one is kept in the data directory, and a relay keeps the record with the newest timestamp.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ringdrop.discovery.record import Record, sign, z32_encode
from ringdrop.discovery.resolve import LOOKUP_TIMEOUT
from ringdrop.errors import StoreError
from ringdrop.identity import Identity
from ringdrop.store.files import replace_atomically
from ringdrop.transport.wake import woken

# Imported where it is used: it takes long to load, and only `serve` publishes.
if TYPE_CHECKING:
    import httpx

__all__ = ["REPUBLISH_INTERVAL", "Published", "Publisher", "Timestamps"]

REPUBLISH_INTERVAL = 300.0
TIMESTAMP_FILE = "record-timestamp"


class Timestamps:
    """Strictly increasing microsecond timestamps, the last one kept in `path`."""

    def __init__(self, path: Path) -> None:
        self._path = path
        try:
            self._last = int(path.read_text().strip() or 0)
        except FileNotFoundError:
            self._last = 0
        except (OSError, ValueError) as error:
            raise StoreError(f"{path} cannot be read ({error}); delete it") from error

    def next(self) -> int:
        stamp = max(time.time_ns() // 1000, self._last + 1)
        replace_atomically(self._path, f"{stamp}\n".encode())
        self._last = stamp
        return stamp


@dataclass(frozen=True)
class Published:
    """What a publishing round did: the record, and the services that refused or failed it."""

    record: Record
    failures: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.failures


class Publisher:
    """Keeps `identity`'s record published on the pkarr relays `services` while `run` runs.

    `update` sets what the record says; `on_result` hears each round's outcome."""

    def __init__(
        self,
        identity: Identity,
        services: tuple[str, ...],
        timestamps: Timestamps,
        *,
        interval: float = REPUBLISH_INTERVAL,
        on_result: Callable[[Published], object] | None = None,
    ) -> None:
        self._identity = identity
        self._services = services
        self._timestamps = timestamps
        self._interval = interval
        self._on_result = on_result
        self._record: Record | None = None
        self._changed = asyncio.Event()

    def update(self, record: Record) -> None:
        """Publish `record` (its timestamp is set when it is sent) now if it says something new."""
        if self._record is None or replace(record, timestamp=0) != replace(
            self._record, timestamp=0
        ):
            self._record = record
            self._changed.set()

    async def run(self) -> None:
        failed = 0
        while True:
            await self._changed.wait()
            self._changed.clear()
            record = self._record
            assert record is not None
            result = await self.publish(record)
            if self._on_result is not None:
                self._on_result(result)
            failed = 0 if result.ok else failed + 1
            wait = self._interval if result.ok else min(float(failed), self._interval)
            await woken(self._changed, wait)
            self._changed.set()  # a change, the interval's end or a retry: publish again

    async def publish(self, record: Record) -> Published:
        """Signs `record` with a new timestamp and sends it to every service at once."""
        import httpx

        # The loop must not wait on the disk (the timestamp file is synced).
        record = replace(record, timestamp=await asyncio.to_thread(self._timestamps.next))
        payload = sign(self._identity, record)[32:]  # a relay names the key in its URL
        key = z32_encode(record.peer_id.raw)
        async with httpx.AsyncClient(
            timeout=LOOKUP_TIMEOUT, follow_redirects=False, headers={"User-Agent": "ringdrop"}
        ) as client:
            outcomes = await asyncio.gather(
                *(_put(client, f"{url.rstrip('/')}/{key}", payload) for url in self._services)
            )
        failures = tuple(
            f"{url}: {problem}"
            for url, problem in zip(self._services, outcomes, strict=True)
            if problem is not None
        )
        return Published(record, failures)


async def _put(client: httpx.AsyncClient, url: str, payload: bytes) -> str | None:
    """None if the relay took the record, else what went wrong."""
    import httpx

    try:
        response = await client.put(url, content=payload)
    except httpx.TimeoutException:
        return "no answer in time"
    except httpx.HTTPError as error:
        return f"the request failed ({type(error).__name__}: {error})"
    if not response.is_success:
        return f"HTTP status {response.status_code}: {response.text[:200]}"
    return None
