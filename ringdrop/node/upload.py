"""The body of an allowed get: the encoder's stream, read ahead on a worker thread, and the
upload log entry however the stream ends."""

from __future__ import annotations

import asyncio
from collections import deque

from ringdrop.access import UploadOutcome
from ringdrop.bao import Encoder
from ringdrop.errors import IntegrityError
from ringdrop.identity import PeerId
from ringdrop.node.server import Answer, Gate
from ringdrop.protocol import GetRequest

__all__ = ["PIECE", "READ_AHEAD", "Upload"]

PIECE = 256 * 1024
"""Bytes of the stream one read of the encoder gives (a leaf is never split)."""
READ_AHEAD = 2 * 1024 * 1024
"""Bytes read ahead of the network at most. A read waits for a worker thread, then for the
interpreter lock: on a busy machine a few milliseconds, in which the network moves a MiB. One
piece ahead left the sender waiting for it; this many hide the wait."""


class Upload:
    """An allowed get's body: the encoder's pieces, read ahead (up to `READ_AHEAD` bytes, on a
    worker thread: the encoder releases the interpreter lock) while the network takes them, and
    one entry in the upload log however the stream ends — finished, cut, or closed unstarted.

    A worker's turn reads until the read-ahead is full and hands each piece to the event loop
    as it comes; a new turn starts once half of it is gone, so that the loop waits on no thread
    while pieces are ready.

    A receiver that vanished (killed, its network gone) is noticed only when its connection
    times out, 30 s on; if it comes back for the same content first, its earlier upload is
    logged as interrupted then, not after the new one has completed. A receiver fetching from
    several providers asks one for several stripes at once: those ask for other ranges, and
    only a request for ranges an earlier one is still sending supersedes it. `open` holds the
    uploads under way by peer and content."""

    def __init__(
        self,
        gate: Gate,
        peer: PeerId,
        request: GetRequest,
        answer: Answer,
        open: dict[tuple[PeerId, bytes], list[Upload]],
    ) -> None:
        assert answer.encoder is not None
        self._gate, self._peer, self._request, self._answer = gate, peer, request, answer
        self._encoder: Encoder = answer.encoder
        self._loop = asyncio.get_running_loop()
        self._sent = 0
        self._last = 0
        self._logged = False
        self._ready: deque[bytes] = deque()
        self._ahead = 0
        """Bytes in `_ready`."""
        self._turn: asyncio.Future[None] | None = None
        """The worker's turn under way, if one is."""
        self._ended = False
        """The encoder gave its last piece."""
        self._error: BaseException | None = None
        self._stopping = False
        """Tells a turn under way to read no more."""
        self._waiter: asyncio.Future[None] | None = None
        self._open, self._key = open, (peer, request.content_hash)
        for earlier in list(open.get(self._key, ())):
            if not (earlier._request.ranges & request.ranges).is_empty():
                earlier._log("interrupted")
        open.setdefault(self._key, []).append(self)

    def __aiter__(self) -> Upload:
        return self

    async def __anext__(self) -> bytes:
        self._sent += self._last  # asking for more means the last piece went out
        self._last = 0
        while not self._ready:
            if self._error is not None:
                if isinstance(self._error, IntegrityError):
                    self._log("failed")
                raise self._error
            if self._ended:
                self._log("complete")
                raise StopAsyncIteration
            self._read_ahead()
            self._waiter = self._loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        piece = self._ready.popleft()
        self._ahead -= len(piece)
        self._read_ahead()
        self._last = len(piece)
        return piece

    async def aclose(self) -> None:
        self._stopping = True
        if self._turn is not None:
            # The turn under way ends first: nothing else may use the encoder meanwhile.
            await asyncio.wait([self._turn])
        self._ready.clear()
        self._log("interrupted")

    def _read_ahead(self) -> None:
        """Start a worker's turn once half of the read-ahead has gone to the network."""
        if (
            self._turn is None
            and not self._ended
            and not self._stopping
            and self._error is None
            and self._ahead <= READ_AHEAD // 2
        ):
            turn = asyncio.to_thread(self._read, READ_AHEAD - self._ahead)
            self._turn = asyncio.ensure_future(turn)
            self._turn.add_done_callback(self._turn_ended)

    def _read(self, budget: int) -> None:
        """A worker's turn: pieces until `budget` bytes are read or the stream ends."""
        while budget > 0 and not self._stopping:
            piece = self._encoder.read(PIECE)
            self._loop.call_soon_threadsafe(self._arrived, piece)
            if not piece:
                return
            budget -= len(piece)

    def _arrived(self, piece: bytes) -> None:
        if piece:
            self._ready.append(piece)
            self._ahead += len(piece)
        else:
            self._ended = True
        self._wake()

    def _turn_ended(self, turn: asyncio.Future[None]) -> None:
        # Runs after every piece the turn handed over: both came through the loop, in order.
        self._turn = None
        if not turn.cancelled() and turn.exception() is not None:
            self._error = turn.exception()
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _log(self, outcome: UploadOutcome) -> None:
        if not self._logged:
            self._logged = True
            under_way = self._open.get(self._key, [])
            if self in under_way:
                under_way.remove(self)
                if not under_way:
                    del self._open[self._key]
            completed = (self._request.content_hash,) if outcome == "complete" else ()
            gate, request, answer = self._gate, self._request, self._answer
            gate.finished(self._peer, request, answer, self._sent, outcome, completed)
