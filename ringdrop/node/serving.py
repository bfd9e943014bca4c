"""What `serve` answers requests through (the gate, the members, rings and news services, the
uploads and the rate limit): loaded when a node serves, not by the commands that never do."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterable, Callable, Sequence
from typing import TYPE_CHECKING

from ringdrop.access import MIGRATIONS, LogWriter
from ringdrop.access.news import InboxEntry
from ringdrop.identity import PeerId
from ringdrop.node.batch_upload import MembersServer
from ringdrop.node.dbthread import DatabaseThread
from ringdrop.node.news import Announcer, CatchUp, EventKind, Follower, NewsEvent, NewsService
from ringdrop.node.ratelimit import Limited, RateLimit
from ringdrop.node.rings import RingService
from ringdrop.node.server import Answer, Gate, ServeEvent
from ringdrop.node.upload import Upload
from ringdrop.protocol import (
    AboutRequest,
    AnnounceRequest,
    GetRequest,
    HaveRequest,
    MembersRequest,
    Request,
    ResponseHeader,
    RingsRequest,
    SinceRequest,
)
from ringdrop.store.reader import ServingReads
from ringdrop.transport import Reply

if TYPE_CHECKING:
    from ringdrop.node.node import Node

__all__ = ["Counted", "Serving"]

# The server answers a members request with PART frames of about this size.
PIECE = 256 * 1024


class Serving:
    """What a serving node reads through: the gate (its own database connection) and the log
    writer, opened on a thread while the network side starts."""

    def __init__(self, node: Node, on_event: Callable[[ServeEvent], object] | None) -> None:
        self.logs = LogWriter(node._store.db.path, node.config.retention)
        self.reads = ServingReads(node._store.layout, MIGRATIONS)
        node._access.use_log_writer(self.logs)
        self.gate = Gate(self.reads, self.logs, on_event, reserve=node.config.serve_rings)
        self.members = MembersServer(node._store, self.gate, PIECE)
        self.rings = RingService(node._access, node.identity, self.gate, self.logs)
        self.limit = None if node.limit_rate is None else RateLimit(node.limit_rate)
        self.uploads: dict[tuple[PeerId, bytes], list[Upload]] = {}
        """The gets being answered, by peer and content (see `Upload`)."""
        self.news = NewsService(node, self.logs)
        self.writes = DatabaseThread("ringdrop-requests")
        """Where news and ring requests, which write the node's database, wait for its lock."""
        self._announcer: Announcer | None = None
        self._follower: Follower | None = None
        self._on_news: Callable[[NewsEvent], object] = lambda _: None

    def start_news(
        self, node: Node, on_news: Callable[[NewsEvent], object]
    ) -> list[asyncio.Task[None]]:
        """The news tasks of a serving node: announcing to members, asking owners for what
        was missed, fetching followed rings' content."""
        self._on_news = on_news
        self._announcer = Announcer(node, on_news)
        self._follower = Follower(node, on_news)
        catch_up = CatchUp(node, self._arrived, on_news)
        return [
            asyncio.create_task(self._announcer.run()),
            asyncio.create_task(catch_up.run()),
            asyncio.create_task(self._follower.run()),
        ]

    def _arrived(self, entries: Sequence[InboxEntry], asked: bool) -> None:
        for entry in entries:
            kind: EventKind = "withdrawn" if entry.state == "withdrawn" else "arrived"
            self._on_news(NewsEvent.about(kind, entry, reason="asked" if asked else None))
        if entries and self._follower is not None:
            self._follower.wake()

    async def reply(self, peer: PeerId, request: Request) -> Reply:
        # The decision reads SQLite and opening the content touches files: neither may hold up
        # the loop that moves every other transfer's packets.
        gate = self.gate
        if self._announcer is not None:
            self._announcer.heard_from(peer)
        if isinstance(request, AnnounceRequest):
            # A stranger's news is refused here: it never queues behind this node's writes.
            screened = await asyncio.to_thread(self.news.screen, peer, request, self.reads.db)
            if isinstance(screened, ResponseHeader):
                gate.finished(peer, request, Answer(screened), 0, "complete")
                return Reply(screened)
            header, entries = await self.writes(self.news.announce, peer, request, screened)
            gate.finished(peer, request, Answer(header), 0, "complete")
            self._arrived(entries, False)
            return Reply(header)
        if isinstance(request, SinceRequest):
            refused = await asyncio.to_thread(self.news.screen_since, peer, request, self.reads.db)
            if refused is None:
                header, news = await self.writes(self.news.since, peer, request)
            else:
                header, news = refused, None
            gate.finished(peer, request, Answer(header), 0, "complete")
            return Reply(header, news=news)
        if isinstance(request, MembersRequest):
            reply = await asyncio.to_thread(self.members.reply, peer, request)
            return self._limited(reply)
        if isinstance(request, RingsRequest | AboutRequest | HaveRequest):
            # Refusals and answers with nothing to keep never queue behind this node's writes.
            decided = await asyncio.to_thread(self.rings.screen, peer, request, self.reads.db)
            if decided is None:
                decided = await self.writes(self.rings.answer, peer, request)
            header, info = decided
            gate.finished(peer, request, Answer(header), 0, "complete")
            return Reply(header, info=info)
        answer = await asyncio.to_thread(gate.answer, peer, request)
        if answer.encoder is None:
            gate.finished(peer, request, answer, 0, "complete")
            return Reply(answer.header, catalog=answer.catalog)
        assert isinstance(request, GetRequest)  # only a get has content to send
        upload = Upload(gate, peer, request, answer, self.uploads)
        return self._limited(Reply(answer.header, upload))

    def _limited(self, reply: Reply) -> Reply:
        if self.limit is None or reply.body is None:
            return reply
        return dataclasses.replace(reply, body=Limited(reply.body, self.limit))

    async def close(self, node: Node) -> None:
        # A request under way on the thread still reads and logs: it finishes first.
        await self.writes.drain()
        self.reads.close()
        # Commits every queued entry, waiting out another process's write lock.
        await asyncio.to_thread(self.logs.close)
        node._access.use_log_writer(None)


class Counted:
    """A reply's body that tells `on_sent` of each piece it hands to the transport."""

    def __init__(
        self, body: AsyncIterable[bytes], peer: str, on_sent: Callable[[str, int], object]
    ) -> None:
        self._body = aiter(body)
        self._peer = peer
        self._on_sent = on_sent

    def __aiter__(self) -> Counted:
        return self

    async def __anext__(self) -> bytes:
        piece = await anext(self._body)
        self._on_sent(self._peer, len(piece))
        return piece

    async def aclose(self) -> None:
        close = getattr(self._body, "aclose", None)
        if close is not None:
            await close()
