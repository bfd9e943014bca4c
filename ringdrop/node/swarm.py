"""Fetching one blob from several providers at once: the blob's missing chunks cut into stripes
aligned to 16 KiB chunk groups (1 to 4 MiB), handed out from one queue, one or two in flight per
provider, every range verified as it arrives.

Each provider's rate is tracked. A stripe held by a provider far slower than the median is also
asked of a faster one, and once the queue is empty an idle provider takes a copy of a stripe
still in flight (the end game): whichever copy completes first wins and the other is cancelled.
A provider that sends a range that does not verify is dropped for this content (and named in
the log); one that vanishes costs only its stripes in flight, which go back to the queue. The
partial blob's bitfield records what verified, so the download resumes across providers and
restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from ringdrop.bao import ChunkRanges
from ringdrop.errors import (
    AccessDeniedError,
    IntegrityError,
    NotFoundError,
    ProtocolError,
    RingdropError,
    TransferError,
)
from ringdrop.store.partial import PartialBlob, PartialWriter

__all__ = [
    "IN_FLIGHT",
    "SLOW",
    "STRIPE_MAX",
    "STRIPE_MIN",
    "Fetcher",
    "Provider",
    "Striped",
    "on_worker",
    "stripes",
]

_log = logging.getLogger(__name__)

GROUP_CHUNKS = 16
STRIPE_MIN = 1 << 20
STRIPE_MAX = 4 << 20
IN_FLIGHT = 2
"""Stripes in flight per provider: one arriving while the next request is on its way."""
SLOW = 4.0
"""A provider whose rate is below the median's by this factor is far slower."""
STRIPES_PER_PROVIDER = 8
"""Stripes per provider at least, while stripes stay within their bounds: a provider that
vanishes or lags costs one stripe of many."""


class Fetcher(Protocol):
    """A provider's connection: the response stream for some ranges of a blob."""

    def fetch(self, root: bytes, ranges: ChunkRanges) -> AsyncGenerator[bytes, None]:
        """Pieces as they arrive; raises the provider's refusal or the lost connection."""
        ...


@dataclass(eq=False)
class Provider:
    """One provider of this download: what it sent and how fast."""

    source: Fetcher
    peer: str
    received: int = 0
    """Content bytes first verified from this provider (a copy's repeats are not counted)."""
    busy: float = 0.0
    """Seconds it had at least one stripe in flight."""
    streamed: int = 0
    """Bytes it streamed (repeats included): with `busy`, its rate."""
    active: int = 0
    dropped: str | None = None
    """Why it is no longer asked (None while it is)."""
    _busy_since: float | None = None

    @property
    def rate(self) -> float | None:
        """Stream bytes a second while it had stripes in flight; None before a measure."""
        busy = self.busy + (time.monotonic() - self._busy_since if self._busy_since else 0.0)
        return self.streamed / busy if busy > 0.5 and self.streamed else None

    def started(self) -> None:
        if self.active == 0:
            self._busy_since = time.monotonic()
        self.active += 1

    def stopped(self) -> None:
        self.active -= 1
        if self.active == 0 and self._busy_since is not None:
            self.busy += time.monotonic() - self._busy_since
            self._busy_since = None


@dataclass(eq=False)
class _Stripe:
    ranges: ChunkRanges
    copies: dict[Provider, asyncio.Task[None]] = field(default_factory=dict)
    done: bool = False
    """A copy completed it: the others are being cancelled, and no new one starts."""


def stripe_bytes(size: int, providers: int) -> int:
    """How large stripes are for a blob of `size` bytes among `providers`: 1 to 4 MiB, whole
    chunk groups, at least `STRIPES_PER_PROVIDER` per provider while that fits."""
    wanted = size // max(1, providers * STRIPES_PER_PROVIDER)
    group = GROUP_CHUNKS * 1024
    return max(STRIPE_MIN, min(STRIPE_MAX, wanted // group * group))


def stripes(missing: ChunkRanges, size: int, stripe: int) -> list[ChunkRanges]:
    """`missing` cut at every multiple of `stripe` bytes (whole chunk groups), in order."""
    step = stripe // 1024
    chunks = -(-size // 1024)
    found = []
    for start, end in missing:
        stop = chunks if end is None else min(end, chunks)
        at = start
        while at < stop:
            cut = min(stop, (at // step + 1) * step)
            found.append(ChunkRanges([(at, cut)]))
            at = cut
    return found


class Striped:
    """Fetches what `partial` lacks from `providers` at once. `partial`'s size must be proven.
    `providers` may grow while it runs: one that joins is given stripes at the next turn.

    `received(provider, n)` hears each count of newly verified content bytes.
    """

    def __init__(
        self,
        partial: PartialBlob,
        providers: list[Provider],
        received: Callable[[Provider, int], None],
    ) -> None:
        assert partial.size is not None
        assert partial.size_proven
        self._partial = partial
        self._size = partial.size
        self._providers = providers
        self._received = received
        self._turn = asyncio.Lock()
        self._queue: deque[_Stripe] = deque()
        self._flying: list[_Stripe] = []
        self._errors: list[RingdropError] = []

    async def run(self) -> None:
        """Until the blob is complete; TransferError once no provider is left."""
        size = stripe_bytes(self._size, len(self._providers))
        self._queue.extend(_Stripe(r) for r in stripes(self._partial.missing(), self._size, size))
        try:
            while not self._partial.missing().is_empty():
                self._assign()
                tasks: set[asyncio.Future[None]] = set()
                for stripe in self._flying:
                    tasks.update(stripe.copies.values())
                if not tasks:
                    if not self._live():
                        raise self._gave_up()
                    if not self._queue:  # what is missing was not cut into stripes yet
                        self._queue.extend(
                            _Stripe(r) for r in stripes(self._partial.missing(), self._size, size)
                        )
                        continue
                # A second at most: rates change, and a lagging stripe may be copied.
                await asyncio.wait(tasks, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                self._settle()
        finally:
            await self._cancel_all()

    def _live(self) -> list[Provider]:
        return [p for p in self._providers if p.dropped is None]

    def _gave_up(self) -> TransferError:
        reasons = "; ".join(f"{p.peer[:8]}…: {p.dropped}" for p in self._providers)
        error = TransferError(f"No provider is left to fetch from ({reasons}).")
        if self._errors:
            error.__cause__ = self._errors[-1]
        return error

    def _assign(self) -> None:
        live = self._live()
        rates = [r for p in live if (r := p.rate) is not None]
        # Imported here: only a download from several providers gets this far, and statistics
        # (with decimal and fractions) is some 2 ms of every `get`'s start otherwise.
        import statistics

        median = statistics.median(rates) if rates else None
        for provider in sorted(live, key=lambda p: -(p.rate or 0.0)):
            while provider.dropped is None and provider.active < IN_FLIGHT:
                stripe = self._next_for(provider, median)
                if stripe is None:
                    break
                self._start(provider, stripe)

    def _next_for(self, provider: Provider, median: float | None) -> _Stripe | None:
        rate = provider.rate
        fast = median is not None and rate is not None and rate >= median
        if fast:
            assert median is not None
            lagging = [
                s for s in self._flying
                if not s.done and len(s.copies) == 1 and provider not in s.copies
                and (r := next(iter(s.copies)).rate) is not None and r * SLOW < median
            ]  # fmt: skip
            if lagging:
                return lagging[0]
        if self._queue:
            if provider.active and rate is not None and median is not None and rate * SLOW < median:
                return None  # a far slower provider keeps one stripe, not two
            return self._queue.popleft()
        # The end game: the queue is empty; a copy of the stripe in flight longest.
        for stripe in self._flying:
            if not stripe.done and len(stripe.copies) == 1 and provider not in stripe.copies:
                return stripe
        return None

    def _start(self, provider: Provider, stripe: _Stripe) -> None:
        if stripe not in self._flying:
            self._flying.append(stripe)
        provider.started()
        _log.debug("stripe %s to %s (copy %d)", list(stripe.ranges), provider.peer[:8],
                   len(stripe.copies) + 1)  # fmt: skip
        stripe.copies[provider] = asyncio.ensure_future(self._copy(provider, stripe))

    def _settle(self) -> None:
        """Takes in the copies that ended: a completed stripe cancels its other copies; a
        failed copy drops its provider, and its stripe goes back to the queue if no other
        copy is under way."""
        for stripe in list(self._flying):
            for provider, task in list(stripe.copies.items()):
                if not task.done():
                    continue
                del stripe.copies[provider]
                provider.stopped()
                error = None if task.cancelled() else task.exception()
                if error is None and not task.cancelled():
                    stripe.done = True
                    _log.debug("stripe %s done by %s", list(stripe.ranges), provider.peer[:8])
                    for other in stripe.copies.values():
                        other.cancel()  # the slower copy
                    continue
                if isinstance(error, RingdropError):
                    self._drop(provider, error)
                elif error is not None:
                    raise error
            if not stripe.copies:
                self._flying.remove(stripe)
                left = stripe.ranges & self._partial.missing()
                if not left.is_empty():
                    self._queue.appendleft(_Stripe(left))

    def _drop(self, provider: Provider, error: RingdropError) -> None:
        self._errors.append(error)
        if isinstance(error, IntegrityError):
            provider.dropped = "it sent data that does not match the content's hash"
            _log.warning(
                "Dropped provider %s for %s: %s", provider.peer, self._partial.root.hex(), error
            )
        elif isinstance(error, AccessDeniedError | NotFoundError):
            provider.dropped = "it does not serve this content to this node"
        else:
            provider.dropped = f"it could not be reached ({error})"
        if isinstance(error, ProtocolError):
            _log.warning("Dropped provider %s: %s", provider.peer, error)
        for stripe in self._flying:
            task = stripe.copies.get(provider)
            if task is not None:
                task.cancel()

    async def _cancel_all(self) -> None:
        tasks = [t for s in self._flying for t in s.copies.values()]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        for stripe in self._flying:
            for provider in stripe.copies:
                provider.stopped()
        self._flying.clear()

    async def _copy(self, provider: Provider, stripe: _Stripe) -> None:
        """One provider's copy of one stripe: fetches what is still missing of it and writes
        what verifies; the first copy to complete makes the others moot."""
        partial = self._partial
        async with self._turn:
            ranges = stripe.ranges & partial.missing()
            if ranges.is_empty():
                return
            writer: PartialWriter = await on_worker(partial.writer, ranges, shared=True)
        try:
            pieces = provider.source.fetch(partial.root, ranges)
            async with contextlib.aclosing(pieces) as stream:
                async for piece in stream:
                    provider.streamed += len(piece)
                    async with self._turn:
                        before = partial.valid()

                        def credit(got: ChunkRanges, before: ChunkRanges = before) -> None:
                            new = (got - before).byte_count(self._size)
                            if new:
                                provider.received += new
                                self._received(provider, new)

                        # Credited even when this copy is cancelled meanwhile: what verified
                        # is in the partial either way.
                        credit(await on_worker(writer.write, piece, undo=credit))
            async with self._turn:
                try:
                    await on_worker(writer.finish)
                except IntegrityError as error:
                    raise TransferError(f"the provider ended the stream early: {error}") from error
        finally:
            async with self._turn:
                await on_worker(writer.close)


T = TypeVar("T")


async def on_worker(
    call: Callable[..., T], *args: object, undo: Callable[[T], object] | None = None, **kw: object
) -> T:
    """`call(*args, **kw)` on a worker thread. Cancelled meanwhile, it waits for the call to end
    before it passes the cancellation on (nothing else may touch what the call works on while
    it runs), and hands a result it will not return to `undo`."""
    future = asyncio.ensure_future(asyncio.to_thread(call, *args, **kw))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        while not future.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([future])
        if undo is not None and not future.cancelled() and future.exception() is None:
            undo(future.result())
        raise
