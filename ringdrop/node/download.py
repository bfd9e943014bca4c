"""The download engine: asks the sharer only for what the store lacks, verifies every byte on
arrival, survives dropped connections and killed processes, and exports the finished content.

Resume needs no bookkeeping of its own: the store's partial blobs record which chunk groups are
verified and durable, so every attempt — after a retry, a restart or a SIGKILL — starts from them.
A folder's small members (≤ 16 KiB) skip partial blobs: they come many to a stream and are
committed in groups (`batch_download`), and the store says which are complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

from ringdrop.bao import ChunkRanges
from ringdrop.errors import (
    IntegrityError,
    ProtocolError,
    RingdropError,
    TransferError,
    UnreachableError,
    WrongPeerError,
)
from ringdrop.node.batch_download import SMALL_MAX, Member, fetch_small_members
from ringdrop.node.progress import Tracker
from ringdrop.node.retry import RetryPolicy
from ringdrop.node.swarm import STRIPE_MIN, Provider, Striped, on_worker
from ringdrop.protocol import MemberSelection
from ringdrop.store import Store
from ringdrop.store.collection import Collection, check_size
from ringdrop.store.partial import PartialBlob, PartialWriter
from ringdrop.store.space import check_download
from ringdrop.ticket import Format

T = TypeVar("T")

# Large members of a collection fetched at once, each on its own QUIC stream (small ones come
# in members requests, see batch_download).
PARALLEL_MEMBERS = 4
# Seconds between syncs of a download's verified data while it runs.
FLUSH_INTERVAL = 1.0


class Source(Protocol):
    """An authenticated connection to a sharer, or to a provider (a ring member that holds the
    content)."""

    @property
    def address(self) -> str:
        """The direct address in use, for display."""
        ...

    @property
    def peer(self) -> str:
        """The peer id of the other end, as text."""
        ...

    def fetch(self, root: bytes, ranges: ChunkRanges) -> AsyncGenerator[bytes, None]:
        """The response stream for `ranges` of `root`, in pieces as they arrive. Raises
        AccessDeniedError or NotFoundError before any content; TransferError if the connection
        is lost."""
        ...

    def fetch_members(
        self, collection: bytes, members: Sequence[MemberSelection]
    ) -> AsyncGenerator[bytes, None]:
        """The body of a members request (PART frames) for `members` of `collection`."""
        ...


Connect = Callable[[], Awaitable[Source]]
More = Callable[[Source | None], Awaitable[list[Awaitable[Source]]]]
"""Providers besides the sharer: given the sharer's source (None if it could not be reached),
one awaitable for each provider it names or known otherwise, which connects to it (or raises).
The download starts without waiting for them: each joins the pool when it is reached, so a
provider that is offline costs nothing."""

# The first request for a blob of unproven size: its first stripe and its last chunk, which
# proves the size, so that several providers may then write the rest at once.
_HEAD = ChunkRanges([(0, STRIPE_MIN // 1024), (1 << 40, None)])


@dataclass(frozen=True)
class TransferStats:
    """What a finished transfer did."""

    total: int
    """Content bytes in all."""
    present: int
    """Content bytes that were already in the store when this run started."""
    received: int
    """Bytes received over the network in this run (stream bytes, hash tree included)."""
    seconds: float
    files: int
    first_byte: float | None = None
    """Seconds from the start to the first bytes of content from the network (None if none
    were needed): connecting, authenticating and the request's round trip."""


class Download:
    """One download of `root` (a blob or a collection) into `store`."""

    def __init__(
        self,
        store: Store,
        connect: Connect,
        root: bytes,
        format: Format,
        name: str,
        tracker: Tracker,
        retry: RetryPolicy,
        more: More | None = None,
    ) -> None:
        self._store = store
        self._connect = connect
        self._more = more
        self._pool: list[Provider] = []
        """The providers reached, the sharer first; it grows as others join."""
        self._joining: set[asyncio.Task[Source]] = set()
        """Providers still being reached."""
        self._sources: dict[str, Source] = {}
        self.by_provider: dict[str, int] = {}
        """Content bytes first verified from each provider (peer id text), over all attempts."""
        self._root = root
        self._format = format
        self._name = name
        self._tracker = tracker
        self._retry = retry
        self._received = 0
        self._present = 0
        self._started = time.monotonic()
        self._first_byte: float | None = None
        self._connected = False
        """Whether a connection of this download ever worked: only then is one retried."""
        self._counted: set[bytes] = set()
        """Roots whose already-present bytes were counted: a retry must not count them again."""
        self.collection: Collection | None = None
        """A collection's decoded listing, once `run` has read it (for the caller to reuse)."""

    async def run(self) -> TransferStats:
        """Fetches until the content is complete in the store, retrying lost connections."""
        with self._store.temp_tag(self._root, self._format):
            try:
                return await self._run()
            finally:
                self._stop_joining()

    async def _run(self) -> TransferStats:
        started = self._started = time.monotonic()
        attempt = 1
        while True:
            try:
                files = await self._attempt()
                break
            except (WrongPeerError, ProtocolError):
                raise  # another key at the address, or a peer that broke the protocol
            except TransferError as error:
                if not self._connected:
                    if isinstance(error, UnreachableError):
                        raise _not_answering(error) from error
                    raise
                if attempt >= self._retry.attempts:
                    raise TransferError(
                        f"{error} (gave up after {attempt} attempts; what was verified is kept)",
                        kind="gave-up",
                    ) from error
                attempt += 1
                self._tracker.update(
                    state="retrying", attempt=attempt, message=str(error), rate=0.0
                )
                await asyncio.sleep(self._retry.delay(attempt))
        total = self._tracker.current.total or 0
        return TransferStats(
            total=total,
            present=self._present,
            received=self._received,
            seconds=time.monotonic() - started,
            files=files,
            first_byte=self._first_byte,
        )

    async def _attempt(self) -> int:
        collection = None
        if self._format == "collection":
            collection = self.collection = self._complete_collection()
            if collection is not None and self._missing(collection) == []:
                self._account_present(collection)
                self._keep()
                return len(collection.entries)
        elif (blob := self._store.blob(self._root)) is not None:
            self._tracker.update(total=blob.size)
            self._present_once(blob.size)
            self._keep()
            return 1
        self._tracker.update(state="connecting")
        source = await self._connect_all()
        self._connected = True
        self._tracker.update(state="transferring", address=source.address)
        if self._format == "blob":
            await self._fetch_blob(source, self._root, self._name, "blob", count=True)
            return 1
        if collection is None:  # else already read above
            if self._store.blob(self._root) is None:
                # Untagged until it parses and every member is here: a blob that hashes right
                # but is no valid collection must not be tagged as one (the temp tag taken in
                # run() keeps it, and the members, from GC meanwhile).
                await self._fetch_blob(source, self._root, self._name, "collection", count=False)
            collection = self.collection = self._store.collection(self._root)
        self._account_present(collection)
        missing = self._missing(collection)
        check_download(self._store.path, (e.size for e in missing), self._name)
        await self._fetch_members(source, missing)
        self._keep()
        return len(collection.entries)

    async def _fetch_members(self, source: Source, missing: list[Member]) -> None:
        """Fetches a folder's missing members: the small ones in batches spread over the
        providers, the large ones each on its own, a few at a time."""
        # A small member with a download under way (from an older version) resumes as a file.
        started = {p.root for p in self._store.partials()}
        small = [m for m in missing if m.size <= SMALL_MAX and m.root not in started]
        large = [m for m in missing if m.size > SMALL_MAX or m.root in started]
        limit = asyncio.Semaphore(PARALLEL_MEMBERS)

        async def member(entry: Member) -> None:
            async with limit:
                await self._fetch_blob(source, entry.root, entry.name, "blob", count=True)
            if entry.copies > 1:
                current = self._tracker.current
                self._tracker.update(
                    done=current.done + entry.size * (entry.copies - 1),
                    files_done=current.files_done + entry.copies - 1,
                )

        failed: RingdropError | None = None
        try:
            async with asyncio.TaskGroup() as group:
                # A folder's small files are spread over the providers as its large ones are.
                live = [self._sources[p.peer] for p in self._pool if p.dropped is None]
                live = live or [source]
                for at, holder in enumerate(live):
                    part = small[at :: len(live)]
                    if part:
                        group.create_task(self._fetch_small(holder, part))
                for entry in large:
                    group.create_task(member(entry))
        except* RingdropError as failures:
            # One member's failure stops its siblings; the first error stands for them all,
            # so a lost connection is retried like a single file's. It is raised after the
            # except* clause: Python before 3.11.4 wraps one raised inside it in a group.
            failed = _first(failures)
        if failed is not None:
            raise failed from None

    async def _connect_all(self) -> Source:
        """The sharer's source, and (with `more`) the other providers joining the pool as they
        are reached; when the sharer cannot be reached, the first provider reached stands in
        for it. Asking the sharer about providers costs a round trip before the first request:
        with none, the download is one request, as from a sharer alone."""
        self._stop_joining()
        error: TransferError | None = None
        try:
            source: Source | None = await self._connect()
        except (WrongPeerError, ProtocolError):
            raise
        except TransferError as failed:
            if self._more is None:
                raise
            source, error = None, failed
        reaching = [] if self._more is None else await self._more(source)
        self._pool, self._sources = [], {}
        joining = {asyncio.ensure_future(r) for r in reaching}
        if source is None:
            source = await self._first_reached(joining)
            if source is None:
                assert error is not None
                raise error
        self._join(source)
        for task in joining:
            self._joining.add(task)
            task.add_done_callback(self._joined)
        return source

    @staticmethod
    async def _first_reached(joining: set[asyncio.Task[Source]]) -> Source | None:
        """The first provider reached (the others go on joining), or None if none can be."""
        while joining:
            done, _ = await asyncio.wait(joining, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                joining.discard(task)  # the others reached at once stay, to join the pool
                if not task.cancelled() and task.exception() is None:
                    return task.result()
        return None

    def _joined(self, task: asyncio.Task[Source]) -> None:
        self._joining.discard(task)
        if not task.cancelled() and task.exception() is None:
            self._join(task.result())

    def _join(self, source: Source) -> None:
        self._pool.append(Provider(source, source.peer))
        self._sources[source.peer] = source
        if len(self._pool) > 1:
            self._tracker.update(providers=self._shown())

    def _stop_joining(self) -> None:
        for task in self._joining:
            task.cancel()
        self._joining.clear()

    def _many(self) -> bool:
        """Whether other providers are in the pool or on their way: then a blob is striped."""
        return len(self._pool) > 1 or bool(self._joining)

    def _shown(self) -> tuple[tuple[str, int], ...]:
        """The providers for progress: each in the pool with the bytes it sent so far."""
        return tuple(
            (p.peer, self.by_provider.get(p.peer, 0)) for p in self._pool if p.dropped is None
        )

    def _from_provider(self, provider: Provider, n: int) -> None:
        self.by_provider[provider.peer] = self.by_provider.get(provider.peer, 0) + n
        self._tracker.update(providers=self._shown())

    async def _fetch_small(self, source: Source, members: list[Member]) -> None:
        def counted(n: int) -> None:
            self._count_received(n)
            self.by_provider[source.peer] = self.by_provider.get(source.peer, 0) + n

        await fetch_small_members(self._store, source, self._root, members, self._tracker, counted)

    def _count_received(self, n: int) -> None:
        if self._first_byte is None and n:
            self._first_byte = time.monotonic() - self._started
        self._received += n

    def _keep(self) -> None:
        """Tags the complete content by its root, so it stays and can be shared again."""
        self._store.set_tag(
            self._root.hex(), self._root, format=self._format, display_name=self._name
        )

    def _complete_collection(self) -> Collection | None:
        return self._store.collection(self._root) if self._store.blob(self._root) else None

    def _missing(self, collection: Collection) -> list[Member]:
        """Members not complete in the store, one per distinct root: a file that appears twice
        is fetched once, and its copies count as done when it completes."""
        complete = self._store.complete_roots(e.root for e in collection.entries)
        members: dict[bytes, Member] = {}
        for index, entry in enumerate(collection.entries):
            if entry.root in members:
                members[entry.root].copies += 1
            elif entry.root not in complete:
                members[entry.root] = Member(index, entry.root, entry.name, entry.size)
        return list(members.values())

    def _account_present(self, collection: Collection) -> None:
        """Sets totals from the collection; counts members already complete as present."""
        if self._tracker.current.total is not None:
            return
        stored = self._store.complete_roots(e.root for e in collection.entries)
        here = [e for e in collection.entries if e.root in stored]
        complete, done_files = sum(e.size for e in here), len(here)
        self._tracker.update(
            total=collection.total_size, files_total=len(collection.entries), files_done=done_files
        )
        self._present_once(complete)

    def _show_file(self, name: str, size: int | None, done: int, count: bool) -> None:
        if not count:
            return
        self._tracker.file_started(name, size, done)
        if self._format == "blob" and size is not None:
            self._tracker.update(total=size)

    def _present_once(self, n: int) -> None:
        self._present += n
        self._tracker.update(
            present=self._tracker.current.present + n, done=self._tracker.current.done + n
        )

    async def _fetch_blob(
        self, source: Source, root: bytes, name: str, format: Format, *, count: bool
    ) -> None:
        """Fetches what the store lacks of blob `root` and makes it complete and tagged.

        Whatever writes the store (opening and closing the partial, verifying and writing what
        arrives, syncing it) runs on a worker thread, one call at a time: the event loop goes on
        receiving meanwhile, and what arrived during one write is the next write's piece.
        """
        partial = await on_worker(self._store.partial, root, undo=lambda p: p.close())
        try:
            if count and root not in self._counted:
                self._counted.add(root)
                self._present_once(partial.valid_bytes)
            self._show_file(name, partial.size, partial.valid_bytes, count)
            while not partial.complete:
                if self._many() and partial.size_proven:
                    await self._fetch_striped(partial, name, count)
                    continue
                ranges = partial.missing()
                if self._many():
                    # First what proves the size, so that several may then write at once.
                    ranges = (ranges & _HEAD) | ChunkRanges([(1 << 40, None)])
                writer = await on_worker(partial.writer, ranges)
                turn = asyncio.Lock()  # the writer is used by one thread call at a time
                # Progress becomes durable on a timer too, not only when more data arrives.
                flusher = asyncio.create_task(_flush_every(writer, turn, FLUSH_INTERVAL))
                try:
                    async with contextlib.aclosing(source.fetch(root, ranges)) as pieces:
                        async for piece in pieces:
                            self._count_received(len(piece))
                            before = writer.verified_bytes
                            had_size = partial.size is not None
                            valid_before = partial.valid_bytes
                            async with turn:
                                await on_worker(writer.write, piece)
                            if format == "collection" and partial.size is not None:
                                check_size(partial.size)  # refused before it fills the disk
                            if not had_size:
                                self._show_file(name, partial.size, valid_before, count)
                            if count:
                                self._tracker.received(writer.verified_bytes - before, name)
                            self._credit(source, writer.verified_bytes - before)
                finally:
                    flusher.cancel()
                    async with turn:
                        pass  # a flush under way ends before the writer is used again
                try:
                    await on_worker(writer.finish)
                except IntegrityError as error:
                    raise TransferError(f"the sharer ended the stream early: {error}") from error
            # Re-hashing a large file takes seconds: off the event loop, so that the other
            # streams keep flowing meanwhile.
            tag = root.hex() if root == self._root and format == "blob" else None
            await on_worker(partial.promote, tag=tag, display_name=name, format=format)
        finally:
            await on_worker(partial.close)
        if count and self._format == "collection":
            self._tracker.file_finished(name)

    def _credit(self, source: Source, n: int) -> None:
        if n:
            self.by_provider[source.peer] = self.by_provider.get(source.peer, 0) + n

    async def _fetch_striped(self, partial: PartialBlob, name: str, count: bool) -> None:
        """The rest of `partial` from every provider in the pool at once."""

        def received(provider: Provider, n: int) -> None:
            self._count_received(n)
            self._from_provider(provider, n)
            if count:
                self._tracker.received(n, name)

        striped = Striped(partial, self._pool, received)
        try:
            await striped.run()
        finally:
            self._tracker.update(providers=self._shown())


def _not_answering(error: UnreachableError) -> UnreachableError:
    """The likely cause first, then what was tried (from the transport) as a note."""
    unanswered = UnreachableError(
        "the sharer did not answer: is its node serving?", kind="not-serving"
    )
    unanswered.add_note(str(error))
    return unanswered


def _first(group: BaseExceptionGroup[RingdropError]) -> RingdropError:
    """The first error of a (possibly nested) exception group."""
    first = group.exceptions[0]
    return _first(first) if isinstance(first, BaseExceptionGroup) else first


async def _flush_every(writer: PartialWriter, turn: asyncio.Lock, seconds: float) -> None:
    while True:
        await asyncio.sleep(seconds)
        async with turn:
            if writer.size is not None:
                await on_worker(writer.flush)


def export_target(dest: Path | None, name: str) -> Path:
    """Where content called `name` goes, as `cp` and `curl -o` decide: into the current folder
    without `dest`; inside `dest` under its own name if `dest` is an existing folder; otherwise
    `dest` itself is the result (the file, or the folder holding a collection's files)."""
    if dest is None:
        return Path.cwd() / name
    dest = dest.expanduser()
    return dest / name if dest.is_dir() else dest
