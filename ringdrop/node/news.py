"""A ring's news between its owner and its members: the owner announces what it shares to a ring
(or withdraws) to every member the ring's manifest admits, retrying with backoff; a member's
node keeps what its rings' owners announce in its inbox, asks them for what it missed whenever
it starts serving, and fetches what arrives for a ring it follows into the follow's folder.

`NewsService` answers ANNOUNCE and SINCE on the serving side (blocking: run it on a thread);
`Announcer`, `CatchUp` and `Follower` are the serving node's tasks. Who may tell a member what
is checked twice: by the owner, who announces only to members its newest manifest admits, and
by the member, who keeps only announcements signed by the owner of a ring whose newest
manifest admits it, from that owner, and of a ring it holds or from an owner it knows.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Hashable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Generic, Literal, TypeVar

from ringdrop.access import AccessLogEntry, LogWriter
from ringdrop.access.announcement import (
    Announcement,
    announced_name,
    named_root,
    parse_announcement,
    sign_announcement,
)
from ringdrop.access.groups import held, own_due
from ringdrop.access.manifest import Manifest, parse_manifest
from ringdrop.access.news import Delivery, InboxEntry, Item, own_ring, refusal
from ringdrop.errors import (
    DiskFullError,
    ExistsError,
    InvalidAnnouncementError,
    InvalidManifestError,
    ProtocolError,
    RingdropError,
    TransferError,
)
from ringdrop.identity import PeerId
from ringdrop.node.dbthread import DatabaseThread
from ringdrop.node.rings import exchange_rings
from ringdrop.protocol import (
    MAX_ANNOUNCEMENTS,
    MAX_REACH,
    AnnounceRequest,
    News,
    ResponseHeader,
    SinceRequest,
)
from ringdrop.store import OnExisting
from ringdrop.store.db import Database
from ringdrop.ticket import Address
from ringdrop.transport import Connection
from ringdrop.transport.wake import woken

if TYPE_CHECKING:
    from ringdrop.node.node import Node

__all__ = [
    "Announcer",
    "CatchUp",
    "EventKind",
    "Follower",
    "NewsEvent",
    "NewsService",
    "check_news",
]

_log = logging.getLogger("ringdrop.news")

EventKind = Literal[
    "arrived",
    "withdrawn",
    "refused",
    "announced",
    "unreachable",
    "fetched",
    "waiting",
]

POLL = 0.25
"""Seconds between the owner's looks for news to send (another process may have shared)."""
FOLLOW_POLL = 2.0
"""Seconds between a member's looks for new follows and what waits for them."""
FIRST_RETRY = 5.0
LAST_RETRY = 900.0
"""The owner retries an unreachable member after 5 s, then twice as long each time, up to this."""
PARALLEL = 4
"""Members announced to at once."""
_NO_RING = "your peer id is in no ring of this node with that id"


@dataclass(frozen=True)
class NewsEvent:
    """Something the news did, for the serving log and the TUI: news arrived in the inbox (or
    was withdrawn), an owner's news was refused, this node announced to a member or could not
    reach it, a followed ring's content was fetched or waits in the inbox."""

    at: float
    kind: EventKind
    peer: PeerId
    """The other side: the sharer of what arrived, the member announced to."""
    ring: str
    name: str | None = None
    size: int | None = None
    count: int = 0
    entry: int | None = None
    """The inbox entry, on a member's side."""
    path: str | None = None
    reason: str | None = None
    via: str | None = None
    """How the member was reached, for an announcement: `direct ADDRESS` or `relay URL`."""

    @classmethod
    def about(
        cls,
        kind: EventKind,
        entry: InboxEntry,
        *,
        path: str | None = None,
        reason: str | None = None,
    ) -> NewsEvent:
        """The event, now, of an inbox entry on a member's side."""
        return cls(
            time.time(),
            kind,
            entry.owner,
            entry.ring,
            name=entry.name,
            size=entry.size,
            entry=entry.id,
            path=path,
            reason=reason,
        )


K = TypeVar("K", bound=Hashable)


class Backoff(Generic[K]):
    """When to try something again (a peer, an inbox entry): after `FIRST_RETRY` s, then twice
    as long each time, up to `LAST_RETRY`."""

    def __init__(self) -> None:
        self._failures: dict[K, int] = {}
        self._next: dict[K, float] = {}

    def ready(self, key: K, now: float) -> bool:
        return self._next.get(key, 0.0) <= now

    def failed(self, key: K, now: float) -> tuple[int, float]:
        """Counts a failure; how many in a row, and the seconds until the next try."""
        count = self._failures.get(key, 0) + 1
        self._failures[key] = count
        delay = min(LAST_RETRY, FIRST_RETRY * 2 ** (count - 1))
        self._next[key] = now + delay
        return count, delay

    def reset(self, key: K) -> None:
        self._failures.pop(key, None)
        self._next.pop(key, None)


Checked = tuple[Manifest, list[Announcement]]
"""A ring's manifest and announcements, checked to be what their sender may say."""


def check_news(sender: PeerId, news: News) -> Checked | str:
    """The ring manifest and announcements in `news`, if they are what `sender` may say: the
    owner's manifest, and announcements the owner signed for that ring; else what is wrong."""
    try:
        manifest = parse_manifest(news.manifest)
        announcements = [parse_announcement(raw) for raw in news.announcements]
    except (InvalidManifestError, InvalidAnnouncementError) as error:
        return str(error)
    if manifest.owner != sender:
        return "a ring's news comes only from the ring's owner, and the sender is not it"
    for announcement in announcements:
        if announcement.owner != manifest.owner:
            return "an announcement is not signed by the ring's owner"
        if announcement.ring_id != manifest.ring_id:
            return "an announcement is of another ring than its manifest"
    return manifest, announcements


def sign_items(node: Node, uid: bytes, ring: str, items: Sequence[Item]) -> list[bytes]:
    """The owner's announcements of `items` in its ring, signed now with how it is reached."""
    relay = node.home_relay
    addresses = node.reachable_at()[:MAX_REACH]
    signed = []
    for item in items:
        signed.append(
            sign_announcement(
                node.identity,
                ring_id=uid,
                ring_name=ring,
                sequence=item.sequence,
                at=int(item.at),
                kind=item.kind,
                root=item.root,
                format=item.format or "blob",
                size=item.size or 0,
                name=announced_name(item.name, item.root),
                relay=relay,
                addresses=addresses,
                mtime_ns=item.mtime_ns if item.format == "blob" else None,
                executable=item.executable and item.format == "blob",
            ).raw
        )
    return signed


class NewsService:
    """Answers ANNOUNCE (as a member) and SINCE (as an owner) for a serving node; blocking,
    call it on a thread. Every answer is logged in the access log."""

    def __init__(self, node: Node, logs: LogWriter) -> None:
        self._node = node
        self._access = node._access
        self._logs = logs

    def screen(
        self, peer: PeerId, request: AnnounceRequest, reads: Database
    ) -> ResponseHeader | Checked:
        """The refusal of news this node would take from nobody, decided on `reads` (the serving
        connection, which waits for no write): forged or malformed news, a ring another key
        owns here, an owner it does not know. Otherwise the news checked, for `announce`."""
        now = time.time()
        checked = check_news(peer, request.news)
        root = _first_root(request.news)
        if isinstance(checked, str):
            return self._refuse(peer, "announce", root, None, checked, now)
        manifest, _ = checked
        with reads.snapshot() as conn:
            reason = refusal(conn, manifest, asked=False)
        if reason is None:
            return checked
        return self._refuse(peer, "announce", root, manifest.name, reason, now)

    def announce(
        self, peer: PeerId, request: AnnounceRequest, checked: Checked | None = None
    ) -> tuple[ResponseHeader, list[InboxEntry]]:
        """Keeps the news an owner announces, if it may (`checked`: what `screen` found, so that
        the signatures are not verified twice); the answer, and the inbox entries that
        changed."""
        now = time.time()
        root = _first_root(request.news)
        if checked is None:
            found = check_news(peer, request.news)
            if isinstance(found, str):
                return self._refuse(peer, "announce", root, None, found, now), []
            checked = found
        manifest, announcements = checked
        reason, changed = self._access.accept_news(
            self._node.peer_id, manifest, announcements, asked=False, now=now
        )
        if reason is not None:
            return self._refuse(peer, "announce", root, manifest.name, reason, now), []
        self._log(peer, "announce", root, manifest.name, True, "the ring's owner announced", now)
        return ResponseHeader("allowed"), self._access.inbox_entries(changed)

    def screen_since(
        self, peer: PeerId, request: SinceRequest, reads: Database
    ) -> ResponseHeader | None:
        """The refusal of a since request decided on `reads` (the serving connection, which
        waits for no write): no own ring of that id, or its manifest does not admit the peer.
        None when `since` must answer it, and while that ring is due to be signed again (its
        manifest may not say who its members are now)."""
        now = time.time()
        with reads.snapshot() as conn:
            ring = own_ring(conn, request.ring_id)
            if ring is not None and ring[0] in own_due(conn, now):
                return None
            manifest = held(conn, request.ring_id) if ring is not None else None
        return self._closed(peer, ring, manifest, now)

    def since(self, peer: PeerId, request: SinceRequest) -> tuple[ResponseHeader, News | None]:
        """The news of an own ring after the asker's sequence number, if the ring admits it."""
        now = time.time()
        self._access.sign_due(self._node.identity)
        ring = self._access.own_ring(request.ring_id)
        manifest = self._access.manifest(request.ring_id) if ring is not None else None
        refused = self._closed(peer, ring, manifest, now)
        if refused is not None:
            return refused, None
        assert ring is not None  # refused otherwise
        assert manifest is not None
        ring_id, name, sequence = ring
        items, more = self._access.news_since(ring_id, request.sequence, MAX_ANNOUNCEMENTS)
        raws = sign_items(self._node, request.ring_id, name, items)
        told = items[-1].sequence if more else max([sequence, *(i.sequence for i in items)])
        reach = None
        if request.relay is not None or request.addresses:
            addresses = [Address(ipaddress.ip_address(h), p) for h, p in request.addresses]
            reach = (request.relay, addresses)
        self._access.mark_sent(ring_id, peer, max(told, request.sequence), reach)
        self._log(peer, "since", bytes(32), name, True, "a member asked for the news", now)
        return ResponseHeader("allowed"), News(manifest.raw, tuple(raws), more)

    def _closed(
        self,
        peer: PeerId,
        ring: tuple[int, str, int] | None,
        manifest: Manifest | None,
        now: float,
    ) -> ResponseHeader | None:
        """Why a since request for the own ring `ring`, whose newest manifest is `manifest`, is
        refused to `peer` (logged), or None if that manifest admits it."""
        if ring is None or manifest is None or manifest.owner != self._node.peer_id:
            return self._refuse(peer, "since", bytes(32), None, _NO_RING, now)
        if not manifest.admits(peer, now):
            return self._refuse(peer, "since", bytes(32), ring[1], _NO_RING, now)
        return None

    def _refuse(
        self,
        peer: PeerId,
        operation: Literal["announce", "since"],
        root: bytes,
        ring: str | None,
        reason: str,
        now: float,
    ) -> ResponseHeader:
        self._log(peer, operation, root, ring, False, reason, now)
        return ResponseHeader("denied", reason)

    def _log(
        self,
        peer: PeerId,
        operation: Literal["announce", "since"],
        root: bytes,
        ring: str | None,
        allowed: bool,
        reason: str,
        now: float,
    ) -> None:
        self._logs.decision(AccessLogEntry(now, peer, root, operation, allowed, reason, ring))


def _first_root(news: News) -> bytes:
    """The root the first announcement names, for the access log (zeros if it has none): a
    forgery is logged with the content it named."""
    root = named_root(news.announcements[0]) if news.announcements else None
    return bytes(32) if root is None else root


class _Rounds(ABC, Generic[K]):
    """A task of the serving node: a round now, then again once woken or after `poll` seconds,
    until cancelled. A round may start work for a key (a peer) in a task of its own, one at a
    time per key and `PARALLEL` at most, not before the key's backoff allows; those tasks are
    cancelled with the loop, and its database connection is closed."""

    def __init__(self, node: Node, poll: float, *, wake_when_done: bool = False) -> None:
        self._node = node
        self._poll = poll
        self._wake_when_done = wake_when_done
        self._wake = asyncio.Event()
        self._backoff: Backoff[K] = Backoff()
        self._running: dict[K, asyncio.Task[None]] = {}
        self._db = DatabaseThread("ringdrop-news")

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        try:
            while True:
                await self._round()
                self._wake.clear()
                await woken(self._wake, self._poll)
        finally:
            for task in self._running.values():
                task.cancel()
            await asyncio.gather(*self._running.values(), return_exceptions=True)
            self._db.close()

    @abstractmethod
    async def _round(self) -> None: ...

    def _may_start(self, key: K, now: float) -> bool:
        return (
            len(self._running) < PARALLEL
            and key not in self._running
            and self._backoff.ready(key, now)
        )

    def _start(self, key: K, work: Coroutine[object, object, None]) -> None:
        task = asyncio.create_task(work)
        self._running[key] = task
        task.add_done_callback(functools.partial(self._done, key))

    def _done(self, key: K, _: asyncio.Task[None]) -> None:
        self._running.pop(key, None)
        if self._wake_when_done:
            self._wake.set()


class Announcer(_Rounds[PeerId]):
    """The owner's side, while it serves: tells each member its rings admit the news it has
    not been told, at once when there is news, and again with backoff when a member cannot
    be reached. A member heard from is tried again at once."""

    def __init__(self, node: Node, on_event: Callable[[NewsEvent], object]) -> None:
        super().__init__(node, POLL, wake_when_done=True)
        self._on_event = on_event

    def heard_from(self, peer: PeerId) -> None:
        """`peer` reached this node: a member that could not be reached can be now."""
        self._backoff.reset(peer)
        self._wake.set()

    async def _round(self) -> None:
        access, own = self._node._access, self._node.peer_id
        due = await self._db(access.news_due, own)
        by_peer: dict[PeerId, list[Delivery]] = {}
        for delivery in due:
            by_peer.setdefault(delivery.peer, []).append(delivery)
        now = time.monotonic()
        for peer, deliveries in by_peer.items():
            if self._may_start(peer, now):
                self._start(peer, self._deliver(peer, deliveries))

    async def _deliver(self, peer: PeerId, deliveries: list[Delivery]) -> None:
        try:
            relay, addresses = await self._db(self._node._access.member_reach, peer)
            connection = await self._node.connect(peer, addresses, relay)
        except RingdropError as error:
            self._failed(peer, deliveries[0].ring, str(error))
            return
        try:
            for delivery in deliveries:
                if not await self._tell(connection, delivery):
                    return
            self._backoff.reset(peer)
        except RingdropError as error:
            self._failed(peer, deliveries[0].ring, str(error))
        except Exception:
            _log.exception("Announcing to %s failed", peer)
            self._failed(peer, deliveries[0].ring, "an internal error")
        finally:
            await connection.close()

    async def _tell(self, connection: Connection, delivery: Delivery) -> bool:
        """Sends one ring's untold news to its member; False if the member refused it."""
        access, peer = self._node._access, delivery.peer
        # Read after how to reach the member: a since request that taught it also said what
        # the member was told then (Access.mark_sent), so that nothing is told twice.
        told = max(delivery.sent, await self._db(access.sent_to, delivery.ring_id, peer))
        while True:
            items, more = await self._db(
                access.news_since, delivery.ring_id, told, MAX_ANNOUNCEMENTS
            )
            last = (
                items[-1].sequence
                if more
                else max([delivery.sequence, told, *(i.sequence for i in items)])
            )
            if items:
                manifest = await self._db(access.manifest, delivery.uid)
                if manifest is None:
                    return True
                raws = sign_items(self._node, delivery.uid, delivery.ring, items)
                news = News(manifest.raw, tuple(raws))
                header = await connection.announce(AnnounceRequest(news))
                if header.status != "allowed":
                    self._failed(peer, delivery.ring, header.reason or header.status, refused=True)
                    return False
                shares = [i for i in items if i.kind == "share"]
                self._on_event(
                    NewsEvent(
                        time.time(),
                        "announced",
                        peer,
                        delivery.ring,
                        name=shares[0].name if len(shares) == 1 else None,
                        count=len(items),
                        via=connection.address,
                    )
                )
            await self._db(access.mark_sent, delivery.ring_id, peer, last)
            told = last
            if not more:
                return True

    def _failed(self, peer: PeerId, ring: str, reason: str, *, refused: bool = False) -> None:
        count, delay = self._backoff.failed(peer, time.monotonic())
        if count == 1:
            kind: EventKind = "refused" if refused else "unreachable"
            self._on_event(
                NewsEvent(time.time(), kind, peer, ring, reason=f"{reason}; again in {delay:g} s")
            )


class CatchUp(_Rounds[PeerId]):
    """A member's side, while it serves: asks the owner of each ring it holds (and of each ring
    it follows) for the news after the last it has, once each time it starts serving, and
    again when a new follow names the owner; an owner it cannot reach is tried again with
    backoff (the owner also announces once it reaches this node)."""

    def __init__(
        self,
        node: Node,
        on_arrived: Callable[[list[InboxEntry], bool], object],
        on_event: Callable[[NewsEvent], object],
    ) -> None:
        super().__init__(node, FOLLOW_POLL)
        self._on_arrived = on_arrived
        self._on_event = on_event
        self._asked: dict[PeerId, tuple[int, ...]] = {}

    async def _round(self) -> None:
        access, own = self._node._access, self._node.peer_id
        owners = await self._db(access.news_owners, own)
        follows = await self._db(access.follows)
        now = time.monotonic()
        for owner in owners:
            followed = tuple(f.id for f in follows if f.owner == owner)
            if self._asked.get(owner) != followed and self._may_start(owner, now):
                self._start(owner, self._ask(owner, followed))

    async def _ask(self, owner: PeerId, followed: tuple[int, ...]) -> None:
        node = self._node
        try:
            connection = await node.connect(owner, [], None)
        except RingdropError as error:
            self._backoff.failed(owner, time.monotonic())
            _log.info("Could not ask %s for its rings' news: %s", owner, error)
            return
        try:
            await exchange_rings(connection, node._access, node.peer_id)
            held = await self._db(node._access.held_manifests)
            now = time.time()
            for manifest in held:
                if manifest.owner == owner and manifest.admits(node.peer_id, now):
                    await self._since(connection, manifest)
            self._asked[owner] = followed
            self._backoff.reset(owner)
        except RingdropError as error:
            self._backoff.failed(owner, time.monotonic())
            _log.info("Asking %s for its rings' news failed: %s", owner, error)
        finally:
            await connection.close()

    async def _since(self, connection: Connection, manifest: Manifest) -> None:
        node, access = self._node, self._node._access
        relay = node.home_relay
        addresses = tuple((str(a.ip), a.port) for a in node.reachable_at()[:MAX_REACH])
        after = await self._db(access.ring_cursor, manifest.ring_id)
        while True:
            request = SinceRequest(manifest.ring_id, after, relay, addresses)
            _, news = await connection.since(request)
            if news is None:
                return
            checked = check_news(manifest.owner, news)
            if isinstance(checked, str):
                self._on_event(
                    NewsEvent(time.time(), "refused", manifest.owner, manifest.name, reason=checked)
                )
                return
            got, announcements = checked
            reason, changed = await self._db(
                access.accept_news, node.peer_id, got, announcements, asked=True
            )
            if reason is not None:
                self._on_event(
                    NewsEvent(time.time(), "refused", manifest.owner, manifest.name, reason=reason)
                )
                return
            entries = await self._db(access.inbox_entries, changed)
            self._on_arrived(entries, True)
            if not news.more or not announcements:
                return
            after = max(a.sequence for a in announcements)


class Follower(_Rounds[int]):
    """A member's side, while it serves: fetches each new inbox entry of a followed ring into
    the follow's folder, one at a time, as `get` would (resuming, with the follow's policy for
    existing names). An entry larger than the follow's cap, one that does not fit on the disk
    and one that cannot be exported waits in the inbox, saying why; one whose sharer cannot be
    reached is tried again later."""

    def __init__(self, node: Node, on_event: Callable[[NewsEvent], object]) -> None:
        super().__init__(node, FOLLOW_POLL)
        self._on_event = on_event

    async def _round(self) -> None:
        waiting = await self._db(self._node._access.followed)
        now = time.monotonic()
        for entry, follow in waiting:
            if self._backoff.ready(entry.id, now):
                await self._fetch(entry, follow.dest, follow.existing, follow.max_size)

    async def _fetch(
        self, entry: InboxEntry, dest: str, existing: OnExisting, max_size: int | None
    ) -> None:
        node = self._node
        if max_size is not None and entry.size > max_size:
            note = f"larger than the follow's cap of {max_size} bytes"
            await self._db(node._access.set_inbox_state, entry.id, "new", note=note)
            self._on_event(NewsEvent.about("waiting", entry, reason=note))
            return
        try:
            received = await node.fetch_news(
                entry.id, Path(dest), existing=existing, make_dest=True
            )
        except (DiskFullError, ExistsError, ProtocolError) as error:
            note = str(error)
            await self._db(node._access.set_inbox_state, entry.id, "new", note=note)
            self._on_event(NewsEvent.about("waiting", entry, reason=note))
            return
        except TransferError as error:
            _, delay = self._backoff.failed(entry.id, time.monotonic())
            self._on_event(
                NewsEvent.about("waiting", entry, reason=f"{error}; again in {delay:g} s")
            )
            return
        except RingdropError as error:
            await self._db(node._access.set_inbox_state, entry.id, "new", note=str(error))
            self._on_event(NewsEvent.about("waiting", entry, reason=str(error)))
            return
        self._backoff.reset(entry.id)
        self._on_event(NewsEvent.about("fetched", entry, path=str(received.path)))


def process_alive(pid: int | None) -> bool:
    """Whether a process of that id runs (a fetch it started may still be under way)."""
    if pid is None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
