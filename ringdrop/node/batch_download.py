"""Fetching a collection's small members: a few members requests, each bringing thousands of
members back to back on one stream; each member checked on arrival and committed to the store
in groups (one transaction, one sync per group).

Members of at most 16 KiB live inline in the database once complete, and a download of one is
all or nothing (it is a single chunk group), so they need no partial blob: their bytes wait in
memory until their group is committed. `Store.commit_small` verifies every member against its
root before anything is written, and the group's transaction makes the whole group durable or
none of it: after a crash, a member is either complete and verified in the store, or missing and
asked for again. A crash loses at most what is not yet committed: the group being committed
and the one filling meanwhile, a few times `COMMIT_BYTES` (4 MiB) in all.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from ringdrop.bao import ChunkRanges
from ringdrop.errors import IntegrityError, NotServedError, RingdropError
from ringdrop.node.progress import Tracker
from ringdrop.protocol import MemberSelection, MembersReader
from ringdrop.store import Store
from ringdrop.store.blobs import INLINE_MAX

__all__ = ["COMMIT_BYTES", "SMALL_MAX", "Member", "MembersSource", "fetch_small_members"]

SMALL_MAX = INLINE_MAX
"""Members up to this size are fetched in members requests and committed in groups."""
# Members per request: at most 7 bytes each (a whole member, index gaps below 2**28), so a
# request always fits the protocol's 64 KiB; its answer is up to 128 MiB of small members.
# Few requests matter: the sharer decides and logs once per request, a sync each.
REQUEST_MEMBERS = 8192
# Requests in flight at once, so that one's round trip hides behind the other's data.
IN_FLIGHT = 2
# A group is committed when it holds this many bytes or members, or is this old.
COMMIT_BYTES = 4 << 20
COMMIT_MEMBERS = 2048
COMMIT_INTERVAL = 0.5

_HEADER = 8


class MembersSource(Protocol):
    def fetch_members(
        self, collection: bytes, members: Sequence[MemberSelection]
    ) -> AsyncGenerator[bytes, None]:
        """The body of a members request for `members` of `collection`, in pieces. Raises
        AccessDeniedError or NotFoundError before any content; TransferError if the connection
        is lost."""
        ...


@dataclass(slots=True)
class Member:
    """A member to fetch: the position of its first entry in the collection, its root, name
    and size, and how many entries of the collection share its root."""

    index: int
    root: bytes
    name: str
    size: int
    copies: int = 1


async def fetch_small_members(
    store: Store,
    source: MembersSource,
    collection: bytes,
    members: Sequence[Member],
    tracker: Tracker,
    on_bytes: Callable[[int], object],
) -> None:
    """Fetches `members` (each at most `SMALL_MAX` bytes, complete nowhere in the store) of
    `collection` and commits them. `on_bytes` gets the stream bytes of each piece received."""
    committer = _Committer(store, tracker)
    limit = asyncio.Semaphore(IN_FLIGHT)

    async def one_request(chunk: Sequence[Member]) -> None:
        async with limit:
            await _fetch_chunk(source, collection, chunk, committer, on_bytes)

    # Spread over at least IN_FLIGHT requests, so that they overlap from the start.
    size = max(1, min(REQUEST_MEMBERS, -(-len(members) // IN_FLIGHT)))
    failed: RingdropError | None = None
    try:
        async with asyncio.TaskGroup() as group:
            for start in range(0, len(members), size):
                group.create_task(one_request(members[start : start + size]))
    except* RingdropError as failures:
        # The first error stands for the requests it stopped, as for a single file's. It is
        # raised after the except* clause: Python before 3.11.4 wraps one raised inside it in
        # a group.
        first = failures.exceptions[0]
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        failed = first
    finally:
        # What verified before a failure is kept: the next attempt will not ask for it.
        await asyncio.shield(committer.commit())
    if failed is not None:
        raise failed from None


async def _fetch_chunk(
    source: MembersSource,
    collection: bytes,
    chunk: Sequence[Member],
    committer: _Committer,
    on_bytes: Callable[[int], object],
) -> None:
    selections = [MemberSelection(m.index, ChunkRanges.all()) for m in chunk]
    reader = MembersReader(len(chunk))
    pending: list[bytes] = []
    pending_bytes = 0
    async with contextlib.aclosing(source.fetch_members(collection, selections)) as pieces:
        async for piece in pieces:
            on_bytes(len(piece))
            for event in reader.feed(piece):
                member = chunk[event.position]
                if not event.last:
                    pending.append(event.data)
                    pending_bytes += len(event.data)
                    if pending_bytes > _HEADER + SMALL_MAX:  # memory stays bounded
                        raise _not_small(member)
                    continue
                pending_bytes = 0
                if event.missing:
                    raise NotServedError(
                        f"the sharer no longer has {member.name} of this folder (or it changed "
                        "on the sharer's disk)"
                    )
                if pending:
                    pending.append(event.data)
                    stream, pending = b"".join(pending), []
                else:
                    stream = event.data
                committer.add(member, _content(member, stream))
            await committer.maybe_commit()
    reader.finish()


def _content(member: Member, stream: bytes) -> bytes:
    """The content in a small member's whole stream: its size header, then its only chunk
    group. The root is checked when the group is committed; this checks the shape."""
    size = int.from_bytes(stream[:_HEADER], "little")
    if len(stream) < _HEADER or size > SMALL_MAX or len(stream) != _HEADER + size:
        raise _not_small(member)
    return stream[_HEADER:]


def _not_small(member: Member) -> IntegrityError:
    return IntegrityError(
        f"the sharer sent a stream for {member.name} that is not the small file its folder lists"
    )


class _Committer:
    """Verified members waiting for their group commit, and the progress they make.

    A group commits on a worker thread (its sync takes milliseconds) while the streams go on
    filling the next group; one commit runs at a time, and a group that grows to twice its
    size waits for it, so memory stays bounded.
    """

    def __init__(self, store: Store, tracker: Tracker) -> None:
        self._store = store
        self._tracker = tracker
        self._items: list[tuple[bytes, bytes]] = []
        self._members: list[Member] = []
        self._bytes = 0
        self._started = time.monotonic()
        self._running: asyncio.Task[None] | None = None

    def add(self, member: Member, content: bytes) -> None:
        if not self._items:
            self._started = time.monotonic()
        self._items.append((member.root, content))
        self._members.append(member)
        self._bytes += len(content)

    async def maybe_commit(self) -> None:
        full = self._bytes >= COMMIT_BYTES or len(self._items) >= COMMIT_MEMBERS
        old = bool(self._items) and time.monotonic() - self._started >= COMMIT_INTERVAL
        if self._running is not None and (self._running.done() or self._bytes >= 2 * COMMIT_BYTES):
            await self._wait()
        if self._running is None and (full or old):
            self._running = asyncio.create_task(self._commit(*self._take()))

    async def commit(self) -> None:
        """Commits everything waiting, and returns once it is durable."""
        await self._wait()
        if self._items:
            await self._commit(*self._take())

    async def _wait(self) -> None:
        if self._running is not None:
            running, self._running = self._running, None
            await running

    def _take(self) -> tuple[list[tuple[bytes, bytes]], list[Member]]:
        taken = self._items, self._members
        self._items, self._members, self._bytes = [], [], 0
        return taken

    async def _commit(self, items: list[tuple[bytes, bytes]], members: list[Member]) -> None:
        await asyncio.to_thread(self._store.commit_small, items)
        # Progress counts a group once it is durable.
        self._tracker.received(sum(m.size for m in members))
        current = self._tracker.current
        self._tracker.update(
            done=current.done + sum((m.copies - 1) * m.size for m in members),
            files_done=current.files_done + sum(m.copies for m in members),
        )
