"""Serving a members request: one access decision for the collection, then each selected
member's verified stream in PART frames, packed into pieces of about 256 KiB.

A member inherits the collection's verdict, as for single gets. The gate admits the request only
for a collection this node recorded, attached itself to a ring that admits the peer, and the
member roots are those recorded for it (`Gate.admit_members`). Each member goes into the upload
log (queued for the log writer); the serving log gets one event per request.
"""

from __future__ import annotations

from collections import deque
from typing import Literal

from ringdrop.access import UploadOutcome
from ringdrop.bao import Encoder
from ringdrop.errors import IntegrityError, RingdropError
from ringdrop.identity import PeerId
from ringdrop.node.server import Answer, Gate
from ringdrop.protocol import MAX_PART_BYTES, MemberPart, MembersRequest, encode
from ringdrop.store import Store
from ringdrop.transport import Reply

__all__ = ["MembersServer", "MembersUpload"]

# Bytes asked of an encoder at once: it may return up to one chunk group (16 KiB) more, which
# stays well within a part (MAX_PART_BYTES).
_READ = 64 * 1024
assert _READ + 32 * 1024 <= MAX_PART_BYTES
# Encoders opened together, in one read transaction: bounds the files held open at once.
_OPEN_AT_ONCE = 64


class MembersServer:
    """Answers members requests for one serving node."""

    def __init__(self, store: Store, gate: Gate, piece: int) -> None:
        self.store = store
        self.piece = piece
        """Bytes handed to the transport at once: several small members' parts."""
        self._gate = gate

    def reply(self, peer: PeerId, request: MembersRequest) -> Reply:
        header, roots = self._gate.admit_members(peer, request)
        # Named here, on a worker thread: the log entry is made on the event loop.
        answer = self._gate.named(Answer(header), peer, request.content_hash)
        if header.status != "allowed":
            self._gate.finished(peer, request, answer, 0, "complete")
            return Reply(header)
        upload = MembersUpload(self, peer, request, roots, answer)
        return Reply(header, upload)

    def finished(
        self,
        peer: PeerId,
        request: MembersRequest,
        answer: Answer,
        sent: list[tuple[bytes, int, UploadOutcome]],
        outcome: UploadOutcome,
    ) -> None:
        self._gate.uploaded(peer, sent)
        total = sum(n for _, n, _ in sent)
        completed = tuple(root for root, _, done in sent if done == "complete")
        self._gate.finished(peer, request, answer, total, outcome, completed)


class MembersUpload:
    """The body of an allowed members request: PART frames, pulled as the QUIC window opens.

    A member whose blob is gone, or whose file changed (before or while it is read), ends with
    a *missing* part; the others still go. Logged once however the stream ends.
    """

    def __init__(
        self,
        server: MembersServer,
        peer: PeerId,
        request: MembersRequest,
        roots: tuple[bytes, ...],
        answer: Answer,
    ) -> None:
        self._server = server
        self._peer = peer
        self._request = request
        self._answer = answer
        self._roots = roots
        self._ranges = [m.ranges for m in request.members]
        self._next = 0
        """The position of the next member to open."""
        self._open: deque[Encoder | None] = deque()
        self._current: Encoder | None = None
        self._current_sent = 0
        self._sent: list[tuple[bytes, int, UploadOutcome]] = []
        self._logged = False

    def __aiter__(self) -> MembersUpload:
        return self

    async def __anext__(self) -> bytes:
        out = bytearray()
        while len(out) < self._server.piece:
            part = self._part(self._server.piece - len(out))
            if part is None:
                break
            out += encode(part)
        if not out:
            self._log("complete")
            raise StopAsyncIteration
        return bytes(out)

    async def aclose(self) -> None:
        self._log("interrupted")

    def _part(self, room: int) -> MemberPart | None:
        """The next part, of at most about `room` bytes; None after the last member."""
        if self._current is None:
            if not self._open:
                if self._next >= len(self._roots):
                    return None
                self._open.extend(self._open_next())
            self._current, self._current_sent = self._open.popleft(), 0
            if self._current is None:
                return self._end("failed", missing=True)
        try:
            # The encoder may overshoot by one chunk group; small reads keep its buffer small.
            data = self._current.read(max(1, min(room, _READ)))
        except IntegrityError:
            return self._end("failed", missing=True)
        self._current_sent += len(data)
        if self._current.done:
            return self._end("complete", data)
        return MemberPart(data)

    def _end(self, outcome: UploadOutcome, data: bytes = b"", missing: bool = False) -> MemberPart:
        position = len(self._sent)
        self._sent.append((self._roots[position], self._current_sent, outcome))
        self._current = None
        return MemberPart(data, last=True, missing=missing)

    def _open_next(self) -> list[Encoder | None]:
        start, end = self._next, min(self._next + _OPEN_AT_ONCE, len(self._roots))
        self._next = end
        wanted = list(zip(self._roots[start:end], self._ranges[start:end], strict=True))
        try:
            return self._server.store.encoders(wanted)
        except RingdropError:
            return [None] * len(wanted)

    def _log(self, outcome: Literal["complete", "interrupted"]) -> None:
        if self._logged:
            return
        self._logged = True
        if self._current is not None:
            self._sent.append((self._roots[len(self._sent)], self._current_sent, "interrupted"))
        self._server.finished(self._peer, self._request, self._answer, self._sent, outcome)
