"""`Node`: the application service the CLI and the TUI share — sharing, serving, receiving, and
the management of rings, peers and grants. It holds the business rules; its clients hold none."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import ipaddress
import logging
import os
import threading
import time
from collections.abc import (
    AsyncGenerator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Sequence,
)
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ringdrop.access import MIGRATIONS, OPEN_RING, Access, PeerRef
from ringdrop.access.announcement import parse_announcement
from ringdrop.access.manifest import Manifest
from ringdrop.access.news import Follow, InboxEntry, InboxState
from ringdrop.bao import ChunkRanges
from ringdrop.discovery import Resolver
from ringdrop.errors import (
    AlreadyServedError,
    AmbiguousError,
    DiscoveryDisabledError,
    ExistsError,
    NotFoundError,
    ProtocolError,
    RelayDisabledError,
    RelayRefusedError,
    RingdropError,
    SettingsError,
    StoreError,
    TicketError,
    TransferError,
    UnsafePathError,
    UsageError,
    WrongPeerError,
)
from ringdrop.identity import KEY_FILE, Identity, PeerId
from ringdrop.node.addresses import local_addresses, machine_ips
from ringdrop.node.config import (
    Config,
    RelayPolicy,
    StunServer,
    TicketRelay,
    discovery_from,
    relay_policy_from,
    relays_from,
    stun_servers_from,
)
from ringdrop.node.dial import Route, dial
from ringdrop.node.download import Download, Source, TransferStats, export_target
from ringdrop.node.manage import Management
from ringdrop.node.progress import ProgressCallback, Tracker
from ringdrop.node.receipts import Receipt, read_receipts, record_receipt
from ringdrop.node.retry import RetryPolicy
from ringdrop.node.rings import ask_about, exchange_rings, tell_have
from ringdrop.node.send import TEXT_MAX, TEXT_NAME, Fetched, Fetches, is_text
from ringdrop.protocol import (
    CatalogEntry,
    GetRequest,
    MemberSelection,
    MembersRequest,
    Provider,
    Request,
)
from ringdrop.shortcode import ShortCode
from ringdrop.store import ExportResult, ImportMode, OnExisting, Store, default_data_dir
from ringdrop.store.export import free_name
from ringdrop.store.files import FileLock
from ringdrop.store.names import validate_name
from ringdrop.store.progress import ProgressFn
from ringdrop.store.space import check_receive
from ringdrop.ticket import Address, Format, Ticket
from ringdrop.transport import Connection, Dialer, PathInfo, RelayState, choose_home_relay

if TYPE_CHECKING:
    from ringdrop.discovery import Published, Record, Services
    from ringdrop.node.codes import CodeOffer
    from ringdrop.node.news import NewsEvent
    from ringdrop.node.server import ServeEvent
    from ringdrop.transport import Limits, Reply, Server

_log = logging.getLogger(__name__)

# Tickets offer these addresses instead of the machine's interfaces when set (comma-separated
# IPs), e.g. RINGDROP_ADDRESSES=127.0.0.1 for a demo or test on one machine.
ADDRESSES_ENV = "RINGDROP_ADDRESSES"

SERVE_LOCK = "serve.lock"
RECORD_TIMESTAMP = "record-timestamp"
# How often `serve` checks whether what its record says changed (a new public address).
_RECORD_CHECK = 30.0
MAX_PUBLISHED_ADDRESSES = 8
# How often `serve` checks whether a ring's manifest is due to be signed again.
_RESIGN_CHECK = 600.0
# Once `serve` is told it is done, how long it waits at most for its peers to disconnect.
DRAIN = 10.0


@dataclass(frozen=True)
class Received:
    """A finished download: where it was written and what the transfer did."""

    path: Path
    stats: TransferStats
    route: PathInfo | None = None
    """How the sharer was reached for most of the bytes (None if nothing had to be fetched)."""
    traffic: dict[str, int] = dataclasses.field(default_factory=dict)
    """Datagram bytes received by kind of path: `direct`, `relay`."""
    paths: tuple[tuple[float, PathInfo], ...] = ()
    """Every path the sharer was reached by, with when (seconds since the download started,
    as `stats.first_byte`): the first of each connection, then each move."""
    moved: int = 0
    """Bytes put in place without a copy (handed over by the store, or cloned)."""
    copied: int = 0
    """Bytes the export had to write."""
    providers: dict[str, int] = dataclasses.field(default_factory=dict)
    """Content bytes received from each provider (peer id text), the sharer included."""


@dataclass(frozen=True)
class Sent:
    """A finished `Node.send`: what was offered, and who fetched all of it."""

    share: Share
    receivers: tuple[Fetched, ...]
    offer: CodeOffer | None = None
    """The short code it was offered under, with the receiver that redeemed it."""


@dataclass(frozen=True)
class Share:
    """Content this node offers: what it is and who may read it."""

    root: bytes
    name: str
    format: Format
    size: int
    rings: tuple[str, ...]
    ticket: Ticket
    excluded: int = 0
    """Files of a shared folder left out by --exclude patterns or its .ringdropignore."""
    skipped: tuple[str, ...] = ()
    """Names in a shared folder that are not regular files (symbolic links, sockets…)."""


@dataclass(frozen=True)
class InboxItem:
    """An announcement in this node's inbox: what a ring's owner shared (or withdrew), when it
    arrived, and where it stands — `new`, `fetching`, `received` (at `path`), `dismissed` or
    `withdrawn`. `note` says why a followed ring's content waits here."""

    id: int
    arrived_at: float
    announced_at: float
    ring: str
    sharer: PeerId
    nickname: str | None
    name: str
    format: Format
    size: int
    state: InboxState
    root: bytes
    path: str | None
    note: str | None
    asked: bool
    """It came in answer to this node's own request for news (not pushed by the owner)."""


class Node(Management):
    """One data directory's node: its identity, store, rings and settings.

    The one API of the application: sharing, serving and receiving here, and the management of
    rings, peers, grants, attachments and logs in `Management`. `_store` and `_access`, the layers
    beneath, are private to the node package (and tests of it); the CLI and the TUI call only
    the node's public methods.

    `relays` (URLs) and `stun` (`HOST:PORT` or (host, port)) choose the relay and STUN servers;
    None takes $RINGDROP_RELAY / $RINGDROP_STUN, else the public defaults; `("disabled",)` or
    `()` turns them off. Bad values raise `SettingsError` before anything is opened.
    `addresses` (IP addresses) are the ones tickets name; None takes $RINGDROP_ADDRESSES, else
    this machine's interfaces. `relay_policy` says which relays a ticket (or a discovery
    record) may make this node use (`public`, the default, or `any`; None takes
    $RINGDROP_RELAY_POLICY): see `config.TicketRelay`. `discovery` (pkarr relay URLs, chosen
    like `relays`, see `config.discovery_from`) is where `serve` publishes this node's record
    and where peers are looked up by key; `publish_addresses` (None: config.json's) puts its
    addresses in it.
    A data directory that does not exist yet is created (`created` says so), unless `create`
    is false: then it is a `NotFoundError`, so that a mistyped path given to a command that only
    reads is not silently a new, empty node.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        relays: Iterable[str] | None = None,
        stun: Iterable[str | StunServer] | None = None,
        addresses: Iterable[str] | None = None,
        relay_policy: str | None = None,
        discovery: Iterable[str] | None = None,
        publish_addresses: bool | None = None,
        create: bool = True,
    ) -> None:
        self._ips = None if addresses is None else _ips(addresses, "addresses")
        self.relay_policy: RelayPolicy = relay_policy_from(relay_policy)
        self.relays: tuple[str, ...] = relays_from(relays)
        self.discovery: Services = discovery_from(discovery)
        self.stun_servers: tuple[StunServer, ...] = stun_servers_from(stun)
        self.data_dir = data_dir = default_data_dir() if data_dir is None else data_dir
        # The identity key is what makes a folder a data directory: it is never deleted.
        self.created = not (data_dir / KEY_FILE).exists()
        """Whether opening this node made a new data directory (and a new peer id)."""
        if self.created and not create:
            raise NotFoundError(
                f"there is no data directory at {data_dir}", kind="data-dir", name=str(data_dir)
            )
        self._store = Store(data_dir, MIGRATIONS)
        self._access = Access(self._store.db)
        self.identity = Identity.load_or_create(data_dir)
        self.config = Config.load_or_create(data_dir)
        self.publish_addresses = (
            self.config.publish_addresses if publish_addresses is None else publish_addresses
        )
        self.limit_rate: int | None = self.config.limit_rate
        """The upload rate limit `serve` keeps, bytes a second for all peers (None: none)."""
        self._resolver = (
            Resolver(self.discovery, allow_relay=self._relay_allowed)
            if self.discovery.enabled
            else None
        )

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def peer_id(self) -> PeerId:
        return self.identity.peer_id

    @property
    def home_relay(self) -> str | None:
        """The relay that tickets name and `serve` stays connected to, once chosen: the one
        saved in config.json while it is still among `relays`. None when relaying is disabled
        or none is chosen yet (see `choose_home_relay`). Never blocks."""
        if self.relays and self.config.home_relay in self.relays:
            return self.config.home_relay
        return None

    async def choose_home_relay(self) -> str | None:
        """The home relay, chosen now if it is not yet: the configured relay with the lowest
        latency (the first, if none answers within 3 s), saved so that tickets and the server
        agree. None when relaying is disabled."""
        if not self.relays or self.home_relay is not None:
            return self.home_relay
        found = await choose_home_relay(self.relays)
        config = dataclasses.replace(self.config, home_relay=found or self.relays[0])
        await asyncio.to_thread(config.save, self.data_dir)
        self.config = config
        return config.home_relay

    def _ticket_relay(self) -> str | None:
        """The home relay for a ticket: chosen now if it is not yet, which can take seconds the
        first time. For callers outside an event loop; those inside one choose it first."""
        if not self.relays or self.home_relay is not None:
            return self.home_relay
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # Its own thread and event loop: a caller may be inside one.
            return pool.submit(asyncio.run, self.choose_home_relay()).result()

    # -- sharing ------------------------------------------------------------------------------

    def share(
        self,
        path: Path,
        *,
        rings: Iterable[str] = (),
        open: bool = False,
        reference: bool = False,
        exclude: Sequence[str] = (),
        progress: ProgressFn | None = None,
        addresses: bool = True,
        relay: bool = True,
    ) -> Share:
        """Imports a file or folder and attaches it to `rings` (and the `open` ring if `open`).
        Without `addresses`, its ticket names no address of this machine; without `relay`, not
        the home relay; without both, only this node's key (the receiver finds it through
        discovery).

        A folder's files that the gitignore-style `exclude` patterns, or its own
        `.ringdropignore`, match are left out (and counted in the result)."""
        self.check_ticket_reach(addresses=addresses, relay=relay)
        rings = list(rings) + ([OPEN_RING] if open else [])
        self._check_rings(rings)
        mode: ImportMode = "reference" if reference else "copy"
        name = path.absolute().name
        format: Format
        excluded, skipped = 0, tuple[str, ...]()
        if path.is_dir():
            imported = self._store.import_directory(
                path, mode=mode, progress=progress, exclude=exclude
            )
            root, size, format = imported.info.root, imported.collection.total_size, "collection"
            excluded, skipped = imported.excluded, imported.skipped
            self._access.record_collection(root, (e.root for e in imported.collection.entries))
        elif exclude:
            raise StoreError(f"{path} is a single file: exclusions apply to folders only")
        elif path.exists():
            # Its time and mode travel in its tickets: a blob's root covers only its bytes.
            st = path.stat()
            info, _ = self._store.import_file(path, mode=mode, progress=progress)
            root, size, format = info.root, info.size, "blob"
            self._access.record_file(root, st.st_mtime_ns, bool(st.st_mode & 0o111))
        else:
            raise NotFoundError(f"{path} does not exist")
        for ring in rings:
            self._access.attach(root, ring, name=name, format=format, size=size)
        share = self.describe(
            root, name=name, format=format, size=size, at=None if addresses else (), relay=relay
        )
        return dataclasses.replace(share, excluded=excluded, skipped=skipped)

    def shares(self) -> list[Share]:
        """Everything in the store under a tag (shared or received), newest first.

        Two queries whatever the number of shares (tags with their blobs' sizes, and every
        root's rings); a collection's total size still needs reading the collection."""
        shares = []
        addresses = self.addresses()  # enumerating interfaces once, not once per share
        rings = self._access.rings_by_root()
        files = self._access.files()
        for tag, blob_size in self._store.tagged_blobs():
            name = tag.display_name or tag.root.hex()[:16]
            size = _collection_size(self, tag.root) if tag.format == "collection" else blob_size
            file = files.get(tag.root) if tag.format == "blob" else None
            ticket = self.ticket(tag.root, tag.format, name, size, at=addresses, file=file)
            shares.append(Share(tag.root, name, tag.format, size, rings.get(tag.root, ()), ticket))
        return shares

    def find_share(self, text: str) -> Share:
        """The share whose hash starts with `text` (at least 6 hex digits) or whose name is it."""
        text = text.strip().lower()
        matches = [
            s for s in self.shares()
            if s.name.lower() == text or (len(text) >= 6 and s.root.hex().startswith(text))
        ]  # fmt: skip
        if not matches:
            raise NotFoundError(f"nothing shared matches {text!r}", kind="share")
        if len({m.root for m in matches}) > 1:
            raise AmbiguousError(f"{text!r} matches several shares", kind="share")
        return matches[0]

    def unshare(self, root: bytes) -> None:
        """Detaches `root` from every ring and drops its tags, so GC may reclaim it."""
        for attachment in self._access.attachments(root):
            self._access.detach(root, attachment.ring)
        for tag in self._store.tags():
            if tag.root == root:
                self._store.delete_tag(tag.name)

    # -- sending once -------------------------------------------------------------------------

    async def send(
        self,
        path: Path | None = None,
        *,
        text: str | None = None,
        rings: Sequence[str] = (),
        times: int = 1,
        code: ShortCode | None = None,
        expires: float | None = None,
        addresses: bool = True,
        progress: ProgressFn | None = None,
        ready: Callable[[Share], object] | None = None,
        on_event: Callable[[ServeEvent], object] | None = None,
        on_fetched: Callable[[Fetched], object] | None = None,
        on_sent: Callable[[str, int], object] | None = None,
        host: str = "::",
    ) -> Sent:
        """Shares `path` (or `text`), serves until `times` receivers have fetched all of it,
        then stops, and says who fetched it; cancelling stops it too. `ready` gets the share
        once the server listens; `on_fetched` hears of each receiver done (see send.py).

        Who may fetch it: the members of `rings`; without rings, anyone with the ticket (the
        open ring). Either way only while this runs: the rings it attached are detached when
        it ends, and content it brought into the store leaves the listing (GC reclaims it), so
        the ticket is good for this one send. A file or folder is served from where it is
        (no copy), and must not change meanwhile.

        With `code`, the ticket goes only to whoever redeems the code (see `offer_code`), for
        `expires` seconds (default `CODE_EXPIRES`), and only that one receiver may fetch, through
        a ring of its own, never the open ring: so no `rings`, and `times` is 1. `ready` then
        waits until the code is held on the relay too. The send ends once the receiver has all
        of it, or says it is finished (a receiver that had it all before fetches nothing), or
        its time is up; `Sent.offer` names it. A code that ends badly raises its
        `RendezvousError` (guessed, expired, taken)."""
        rings = self._rings_to_send_to(path, text, rings, times, code, addresses)
        tagged = {tag.name for tag in self._store.tags()}
        share, added = self._share_for_send(path, text, rings, progress, addresses)
        fetches = Fetches(self._to_fetch(share), times)
        try:
            return await self._serve_send(
                share, fetches, code, expires, ready, on_event, on_fetched, on_sent, host
            )
        finally:
            for ring in added:
                self._access.detach(share.root, ring)
            if share.root.hex() not in tagged:
                self._store.delete_tag(share.root.hex())

    def _rings_to_send_to(
        self,
        path: Path | None,
        text: str | None,
        rings: Sequence[str],
        times: int,
        code: ShortCode | None,
        addresses: bool,
    ) -> list[str]:
        """Checks a `send`'s arguments before anything is hashed; the rings it will attach."""
        if (path is None) == (text is None):
            raise UsageError("give a file or folder to send, or a text, not both")
        if times < 1:
            raise UsageError(f"the number of receivers must be 1 or more, not {times}")
        if code is not None and (rings or times != 1):
            raise UsageError(
                "a short code lets exactly one receiver fetch, through a ring of its own: "
                "send to rings, or to several receivers, with a ticket"
            )
        rings = [] if code is not None else list(rings) or [OPEN_RING]
        self._check_rings(rings)
        self.check_ticket_reach(addresses=addresses, relay=True)
        if code is not None:
            from ringdrop.node.codes import rendezvous_relay

            rendezvous_relay(code, self.relays)  # no relay to meet on: say so before hashing
        return rings

    def _share_for_send(
        self,
        path: Path | None,
        text: str | None,
        rings: Sequence[str],
        progress: ProgressFn | None,
        addresses: bool,
    ) -> tuple[Share, list[str]]:
        """The share a `send` offers, attached to `rings`; and the rings it was not in before,
        which the send detaches when it ends."""
        if path is not None:
            share = self.share(path, reference=True, progress=progress, addresses=addresses)
        else:
            assert text is not None
            share = self._share_text(text, addresses)
        before = set(share.rings)
        added = [ring for ring in rings if ring not in before]
        for ring in added:
            self._access.attach(share.root, ring, name=share.name, format=share.format,
                               size=share.size)  # fmt: skip
        return dataclasses.replace(share, rings=tuple(sorted(before | set(added)))), added

    async def _serve_send(
        self,
        share: Share,
        fetches: Fetches,
        code: ShortCode | None,
        expires: float | None,
        ready: Callable[[Share], object] | None,
        on_event: Callable[[ServeEvent], object] | None,
        on_fetched: Callable[[Fetched], object] | None,
        on_sent: Callable[[str, int], object] | None,
        host: str,
    ) -> Sent:
        """Serves `share` until `fetches` says enough receivers have all of it (or its code's
        receiver is done, or its time is up)."""
        over = asyncio.Event()
        offering: list[asyncio.Task[CodeOffer]] = []

        def served(event: ServeEvent) -> None:
            fetched = fetches.served(event)
            if on_event is not None:
                on_event(event)
            if fetched is not None and on_fetched is not None:
                on_fetched(fetched)
            if fetches.finished.is_set():
                over.set()

        def listening(port: int) -> None:
            if code is None:
                if ready is not None:
                    ready(share)
                return
            # The code is offered once the server listens: its receiver connects at once.
            offer = asyncio.ensure_future(
                self.offer_code(
                    share,
                    code,
                    expires=expires,
                    on_ready=None if ready is None else lambda _: ready(share),
                )
            )
            offer.add_done_callback(lambda _: over.set())
            offering.append(offer)

        try:
            await self.serve(on_event=served, ready=listening, host=host, on_sent=on_sent,
                             done=over)  # fmt: skip
            for offer in offering:
                # Its receiver says it is finished once it has closed its connection.
                await asyncio.wait([offer], timeout=DRAIN)
                if offer.done():
                    return Sent(share, tuple(fetches.done), offer.result())
        finally:
            for offer in offering:
                if not offer.done():
                    offer.cancel()
                    with contextlib.suppress(asyncio.CancelledError, RingdropError):
                        await offer
        return Sent(share, tuple(fetches.done))

    def _to_fetch(self, share: Share) -> set[bytes]:
        """What a receiver of `share` fetches: its root, and a folder's members with content."""
        needed = {share.root}
        if share.format == "collection":
            needed |= {e.root for e in self._store.collection(share.root).entries if e.size}
        return needed

    def _share_text(self, text: str, addresses: bool) -> Share:
        data = text.encode()
        if len(data) > TEXT_MAX:
            raise UsageError(
                f"a text may have {TEXT_MAX} bytes, and this has {len(data)}: send it as a file"
            )
        info, _ = self._store.import_bytes(data, display_name=TEXT_NAME)
        at = None if addresses else ()
        return self.describe(info.root, name=TEXT_NAME, format="blob", size=info.size, at=at)

    def _check_rings(self, rings: Iterable[str]) -> None:
        known = {r.name.lower() for r in self._access.rings()}
        for ring in rings:
            if ring.lower() not in known:
                raise NotFoundError(f"there is no ring called {ring!r}", kind="ring", name=ring)

    # -- serving ------------------------------------------------------------------------------

    def server_pid(self) -> int | None:
        """The pid of the process serving this data directory, if one is."""
        lock = FileLock(self.data_dir / SERVE_LOCK)
        if lock.acquire(blocking=False):
            lock.release()
            return None
        try:
            return int((self.data_dir / SERVE_LOCK).read_text().strip() or 0) or None
        except (OSError, ValueError):
            return None

    async def serve(
        self,
        *,
        on_event: Callable[[ServeEvent], object] | None = None,
        ready: Callable[[int], object] | None = None,
        host: str = "::",
        on_relay: Callable[[RelayState], object] | None = None,
        limits: Limits | None = None,
        on_record: Callable[[Published], object] | None = None,
        on_news: Callable[[NewsEvent], object] | None = None,
        on_sent: Callable[[str, int], object] | None = None,
        done: asyncio.Event | None = None,
    ) -> None:
        """Listens on the configured port, and through the home relay, and answers requests
        until cancelled, keeping this node's address record published (with discovery on).
        Unless `done` is given, it meanwhile tells its rings' members the news (what was shared
        to a ring or withdrawn from it), asks the owners of the rings it is in for what it
        missed, and fetches what arrives for a followed ring into its folder. `on_relay` hears
        whether the home relay is connected, `on_record` each publication's outcome, `on_news`
        what the news did; `limits` replaces the transport's defaults (connections, requests,
        timeouts); `on_sent` hears of content bytes as they go out, with the peer's id. Once
        `done` is set, serving ends as soon as no peer is connected (after `DRAIN` seconds at
        most), so that the receivers finish with what was sent."""
        lock = FileLock(self.data_dir / SERVE_LOCK)
        if not lock.acquire(blocking=False):
            pid = self.server_pid()
            who = f"process {pid}" if pid is not None else "another process"
            raise AlreadyServedError(f"this data directory is already being served by {who}", pid)
        try:
            (self.data_dir / SERVE_LOCK).write_text(f"{os.getpid()}\n")
            await self._serve(
                on_event, ready, host, limits, on_relay, on_record, on_news, on_sent, done
            )
        finally:
            lock.release()

    async def _serve(
        self,
        on_event: Callable[[ServeEvent], object] | None,
        ready: Callable[[int], object] | None,
        host: str,
        limits: Limits | None,
        on_relay: Callable[[RelayState], object] | None,
        on_record: Callable[[Published], object] | None,
        on_news: Callable[[NewsEvent], object] | None,
        on_sent: Callable[[str, int], object] | None,
        done: asyncio.Event | None,
    ) -> None:
        # The network side starts first (the port, the home relay's connection, STUN) and the
        # store's serving connections open meanwhile on a thread; requests that arrive before
        # they are open wait for them.
        from ringdrop.node.serving import Counted, Serving
        from ringdrop.transport import Reply

        opened = threading.Event()
        serving: list[Serving] = []
        gate_open: asyncio.Future[Serving] = asyncio.get_running_loop().create_future()

        async def handler(peer: PeerId, request: Request) -> Reply:
            reply = await (await asyncio.shield(gate_open)).reply(peer, request)
            if on_sent is None or reply.body is None:
                return reply
            return Reply(reply.header, Counted(reply.body, str(peer), on_sent))

        def known(peers: Sequence[PeerId]) -> Sequence[bool]:
            if not opened.wait(_OPEN_TIMEOUT) or not serving:
                return [False] * len(peers)
            return serving[0].gate.knows(peers)

        server, relay = await self._listen(handler, known, limits, host, on_relay)
        background: list[asyncio.Task[None]] = []
        if self.discovery.pkarr:
            background.append(asyncio.create_task(self._publish(server, relay, on_record)))
        background.append(asyncio.create_task(self._keep_manifests_valid()))
        try:
            serving.append(await asyncio.to_thread(Serving, self, on_event))
            if done is None:  # a one-shot send tells no ring anything
                background += serving[0].start_news(self, on_news or (lambda _: None))
            opened.set()
            gate_open.set_result(serving[0])
            if ready is not None:
                ready(server.port)
            await (done or asyncio.Event()).wait()
            # The last bytes may still be on their way: the receiver closes its connection
            # once it has them all.
            drained = asyncio.get_running_loop().time() + DRAIN
            while server.established and asyncio.get_running_loop().time() < drained:
                await asyncio.sleep(0.05)
        finally:
            opened.set()  # whatever waits for the gate stops waiting
            await _cancel_all(background)
            await server.close()
            gate_open.cancel()
            if serving:
                await serving[0].close(self)

    async def _listen(
        self,
        handler: Callable[[PeerId, Request], Awaitable[Reply]],
        known: Callable[[Sequence[PeerId]], Sequence[bool]],
        limits: Limits | None,
        host: str,
        on_relay: Callable[[RelayState], object] | None,
    ) -> tuple[Server, str | None]:
        """Opens the port and the home relay's connection; the server, and the relay chosen."""
        from ringdrop.transport import Reach, serve

        reach = Reach(
            relay=await self.choose_home_relay(),
            stun=self.stun_servers,
            addresses=tuple((str(a.ip), a.port) for a in self._addresses_or_none()),
            own=machine_ips(),
        )
        server = await serve(
            self.identity,
            self.config.port,
            handler,
            limits,
            host=host,
            reach=reach,
            on_relay=on_relay,
            known=known,
        )
        return server, reach.relay

    async def _keep_manifests_valid(self) -> None:
        """Signs this node's rings again while it serves, before their manifests' validity
        runs out (past half of it), so that members that ask get one that is valid."""
        while True:
            with contextlib.suppress(RingdropError):
                await asyncio.to_thread(self._access.sign_due, self.identity)
            await asyncio.sleep(_RESIGN_CHECK)

    async def _publish(
        self, server: Server, relay: str | None, on_record: Callable[[Published], object] | None
    ) -> None:
        """Keeps this node's record published: its home relay, and its addresses (those
        tickets name, and the public one STUN found) only if it was asked to publish them."""
        from ringdrop.discovery import Publisher, Record, Timestamps

        timestamps = await asyncio.to_thread(Timestamps, self.data_dir / RECORD_TIMESTAMP)
        publisher = Publisher(self.identity, self.discovery.pkarr, timestamps, on_result=on_record)
        running = asyncio.create_task(publisher.run())
        try:
            while True:
                addresses: tuple[Address, ...] = ()
                if self.publish_addresses:
                    found = list(self._addresses_or_none())
                    if server.reflexive is not None:
                        host, port = server.reflexive
                        found.append(Address(ipaddress.ip_address(host), port))
                    addresses = tuple(dict.fromkeys(found))[:MAX_PUBLISHED_ADDRESSES]
                record = Record(self.peer_id, relay, addresses)
                if not record.empty:
                    publisher.update(record)
                await asyncio.sleep(_RECORD_CHECK)
        finally:
            running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running

    # -- short codes --------------------------------------------------------------------------

    async def offer_code(
        self,
        share: Share,
        code: ShortCode | None = None,
        *,
        expires: float | None = None,
        on_ready: Callable[[CodeOffer], object] | None = None,
    ) -> CodeOffer:
        """Offers `share` under `code` (default: a new one) on the relay its nameplate picks,
        for `expires` seconds (default `CODE_EXPIRES`). A receiver that redeems it is admitted
        to this content alone, through a ring of its own, until it says it is finished or
        `expires` seconds later; then the ring is removed and the offer (with the receiver's
        peer id) returned. Serve meanwhile, so that the receiver can fetch (`send` with a code
        does both). `on_ready` hears the code once it is held on the relay: that is when to
        show it.

        Raises `RendezvousError`: `guessed` (a receiver's key confirmation failed: the code is
        ended for good), `expired`, `taken` (another sender holds the nameplate)."""
        # Here, not at the top: the rendezvous pulls in SPAKE2 and the relay's WebSocket client,
        # which a node that never uses a code (most commands) need not load.
        from ringdrop.node.codes import CODE_EXPIRES, offer_code

        code = ShortCode.generate() if code is None else code
        return await offer_code(
            self._access,
            share.ticket,
            code,
            self.relays,
            expires=CODE_EXPIRES if expires is None else expires,
            on_ready=on_ready,
        )

    def redeeming_code(
        self, code: ShortCode, *, timeout: float | None = None
    ) -> contextlib.AbstractAsyncContextManager[Ticket]:
        """The ticket that the sender of `code` hands over, which admits this node until the
        block is left (the sender is then told this node is finished). Raises
        `RendezvousError`: `guessed`, `unanswered` (no sender within `timeout` seconds, default
        `RECEIVE_TIMEOUT`), `busy` (another receiver has it) or `taken`."""
        from ringdrop.node.codes import RECEIVE_TIMEOUT, redeeming_code

        timeout = RECEIVE_TIMEOUT if timeout is None else timeout
        return redeeming_code(code, self.relays, self.peer_id, timeout=timeout)

    async def receive_code(
        self,
        code: ShortCode,
        dest: Path | None = None,
        *,
        timeout: float | None = None,
        on_ticket: Callable[[Ticket], object] | None = None,
        existing: OnExisting = "refuse",
        keep: bool | None = None,
        progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
    ) -> Received:
        """Redeems `code` and fetches what its ticket names as `get` does, with `get`'s
        options; `on_ticket` hears the ticket first."""
        async with self.redeeming_code(code, timeout=timeout) as ticket:
            if on_ticket is not None:
                on_ticket(ticket)
            return await self.get(
                ticket, dest, existing=existing, keep=keep, progress=progress, retry=retry
            )

    # -- receiving ----------------------------------------------------------------------------

    async def get(
        self,
        ticket: Ticket,
        dest: Path | None = None,
        *,
        existing: OnExisting = "refuse",
        keep: bool | None = None,
        progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        providers: Sequence[str] = (),
    ) -> Received:
        """Downloads the ticket's content (resuming what is already verified) and exports it,
        from the sharer and at once from every ring member that holds it (those the sharer
        names, and `providers`: peer ids or nicknames given by hand).

        `dest` follows `cp`: an existing folder receives the content under its name, any other
        path is the result (see `export_target`). An existing result is refused, overwritten or
        kept beside a numbered new one, as `existing` says. Unless `keep` (default: the config's
        `keep_received`), the store hands its copy over to the exported file and keeps a
        reference to it (see ringdrop/store/export.py). An error names the ticket's peer and
        content (`RingdropError.peer`, `.root`).
        """
        with _about(ticket):
            self._check_reachable(ticket)  # fails at once, where retrying could not help
            # The way to the sharer opens first (a socket asking STUN for its public address,
            # the ticket's relay): it is ready by the time the store's checks are done.
            by_hand = [self.resolve_peer(p) for p in providers]
            source = _Source(self, ticket.peer_id, ticket.addresses, ticket.relay)
            swarm = _Swarm(self, ticket.content_hash, ticket.peer_id, by_hand)
            try:
                received = await self._get(
                    ticket, source, swarm, dest, existing, keep, progress, retry or RetryPolicy()
                )
            except TransferError as error:
                if isinstance(error.__cause__, RelayRefusedError):
                    # The download gave up: say so, as the error it gave up on.
                    raise RelayRefusedError(str(error), error.__cause__.relay) from error
                raise
            finally:
                await source.close()
                await swarm.close()
        receipt = Receipt(
            time.time(),
            ticket.peer_id,
            ticket.content_hash,
            ticket.name or received.path.name,
            ticket.format,
            received.stats.total,
            received.path,
        )
        try:
            await asyncio.to_thread(record_receipt, self.data_dir, receipt)
        except OSError as error:  # the content is in place: that is what the caller asked for
            _log.warning("could not record what was received: %s", error)
        return received

    async def get_text(
        self,
        ticket: Ticket,
        *,
        progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
    ) -> str:
        """The text a `send` of a text offers (see `is_text`): fetched and verified like any
        content, then shown rather than written anywhere; the store does not keep it listed."""
        if not is_text(ticket):
            raise UsageError("the ticket names a file or folder, not a text")
        root = ticket.content_hash
        had = self._store.tag(root.hex()) is not None
        retry = retry or RetryPolicy()
        with _about(ticket):
            self._check_reachable(ticket)
            self._remember(ticket)
            source = _Source(self, ticket.peer_id, ticket.addresses, ticket.relay)
            tracker = source.tracker = Tracker(TEXT_NAME, progress, retry.attempts)
            download = Download(
                self._store, source.connect, root, "blob", TEXT_NAME, tracker, retry
            )
            try:
                await download.run()
            finally:
                await source.close()
            data = await asyncio.to_thread(self._store.read_bytes, root, TEXT_MAX)
        if not had:
            self._store.delete_tag(root.hex())
        tracker.update(state="done", force=True)
        return data.decode("utf-8", errors="replace")

    def receipts(self, limit: int = 200) -> list[Receipt]:
        """What this node received (by any command or process), newest first."""
        return read_receipts(self.data_dir, limit)

    async def _get(
        self,
        ticket: Ticket,
        source: _Source,
        swarm: _Swarm,
        dest: Path | None,
        existing: OnExisting,
        keep: bool | None,
        progress: ProgressCallback | None,
        retry: RetryPolicy,
    ) -> Received:
        keep = self.config.keep_received if keep is None else keep
        name = _safe_name(ticket)
        target, done = await self._plan_target(ticket, self.export_target(ticket, dest), existing)
        if ticket.size is not None and not done:
            self._check_space(ticket, name, target, keep)
        self._remember(ticket)
        tracker = source.tracker = Tracker(name, progress, retry.attempts)
        download, stats = await self._download(ticket, source, swarm, tracker, retry)
        self._record_rings(ticket, download)
        if done:
            tracker.update(state="done", force=True)
            return _received(target, stats, source, download)
        tracker.update(state="exporting")
        result = await self._export(ticket, target, existing, keep)
        tracker.update(state="done", force=True)
        return _received(result.path, stats, source, download, result)

    async def _plan_target(
        self, ticket: Ticket, target: Path, existing: OnExisting
    ) -> tuple[Path, bool]:
        """Where the content goes, and whether it is already there: an export a crash cut
        short is finished first, and a rerun of one that finished has nothing to do (nor to
        refuse); any other file in the way is refused or stepped around, as `existing` says."""
        finished = await asyncio.to_thread(self._store.finish_export, ticket.content_hash)
        if finished is not None and (
            finished == target or (existing == "rename" and finished.parent == target.parent)
        ):
            return finished, True
        if existing != "rename" and self._already_there(ticket, target):
            return target, True
        if os.path.lexists(target):
            if existing == "refuse":
                raise ExistsError(f"{target} already exists", path=str(target))
            if existing == "rename":
                return free_name(target), False
        return target, False

    async def _download(
        self,
        ticket: Ticket,
        source: _Source,
        swarm: _Swarm,
        tracker: Tracker,
        retry: RetryPolicy,
    ) -> tuple[Download, TransferStats]:
        """Fetches into the store what it lacks of the ticket's content, from the sharer and
        the swarm, and tells the swarm who served it."""
        root, format = ticket.content_hash, ticket.format
        await asyncio.to_thread(self._forget_lost_references, root, format)
        download = Download(
            self._store,
            source.connect,
            root,
            format,
            _safe_name(ticket),
            tracker,
            retry,
            more=swarm.more,
        )
        try:
            source.started = time.monotonic()  # the origin of the download's own times
            stats = await download.run()
            await swarm.tell(source, download.by_provider)
        finally:
            await source.close()
            await swarm.close()
        return download, stats

    def _record_rings(self, ticket: Ticket, download: Download) -> None:
        """Records what a re-share of the received content needs to carry on."""
        root = ticket.content_hash
        if ticket.format == "collection":
            # Received folders can be re-shared: attaching one must cover its members.
            collection = download.collection
            if collection is None:
                collection = self._store.collection(root)
            self._access.record_collection(root, (e.root for e in collection.entries))
        elif ticket.mtime_ns is not None or ticket.executable:
            # Kept, so that a ticket for it printed here (a re-share) carries them on.
            self._access.record_file(root, ticket.mtime_ns, ticket.executable)

    async def _export(
        self, ticket: Ticket, target: Path, existing: OnExisting, keep: bool
    ) -> ExportResult:
        """Puts the store's verified content at `target`."""
        root = ticket.content_hash
        # The export runs on a thread, which cancelling this coroutine (Ctrl-C) cannot stop: it
        # checks this event at every progress step instead, and removes what it started.
        stop = threading.Event()

        def stop_if_asked(done: int, total: int) -> None:
            if stop.is_set():
                raise _ExportStoppedError

        def export() -> ExportResult:
            if ticket.format == "collection":
                return self._store.export_collection(
                    root, target, existing=existing, keep=keep, progress=stop_if_asked
                )
            return self._store.export(
                root,
                target,
                existing=existing,
                keep=keep,
                progress=stop_if_asked,
                mtime_ns=ticket.mtime_ns,
                executable=ticket.executable,
            )

        try:
            return await asyncio.to_thread(export)
        except asyncio.CancelledError:
            stop.set()
            raise

    def _already_there(self, ticket: Ticket, target: Path) -> bool:
        """Whether `target` holds exactly the ticket's content, exported there earlier by this
        node and handed over: every file is the store's reference to it, unchanged."""
        root = ticket.content_hash
        if not os.path.lexists(target) or self._store.blob(root) is None:
            return False
        if ticket.format != "collection":
            return self._store.is_reference_to(root, target)
        try:
            entries = self._store.collection(root).entries
        except RingdropError:
            return False
        return self._store.are_references_to(
            (e.root, target.joinpath(*e.name.split("/"))) for e in entries
        )

    def export_target(self, ticket: Ticket, dest: Path | None) -> Path:
        """Where `get(ticket, dest)` puts the content (before any --rename)."""
        return export_target(dest, _safe_name(ticket)).absolute()

    def _check_space(self, ticket: Ticket, name: str, target: Path, keep: bool) -> None:
        """Fails now rather than at 90 % when the content cannot fit (`store/space.py` says
        how much room a receive needs where)."""
        assert ticket.size is not None
        started = self._store.blob(ticket.content_hash) is not None or any(
            p.root == ticket.content_hash for p in self._store.partials()
        )
        check_receive(self.data_dir, target, ticket.size, started=started, keep=keep, name=name)

    def _forget_lost_references(self, root: bytes, format: Format) -> None:
        """Content handed over to an earlier export that was since edited, moved or deleted
        is fetched again rather than exported from a file that no longer holds it."""
        roots = [root]
        if format == "collection" and self._store.blob(root) is not None:
            with contextlib.suppress(RingdropError):
                roots += [e.root for e in self._store.collection(root).entries]
        self._store.forget_broken_references(roots)

    def discard_download(self, ticket: Ticket) -> None:
        """Deletes what an unfinished download of the ticket's content verified so far (the
        parts of its files still being downloaded; complete files of a folder stay until
        `store gc`, as other content does)."""
        roots = [ticket.content_hash]
        if ticket.format == "collection" and self._store.blob(ticket.content_hash) is not None:
            roots += [e.root for e in self._store.collection(ticket.content_hash).entries]
        pending = {p.root for p in self._store.partials()}
        for root in roots:
            if root in pending:
                with self._store.partial(root) as partial:
                    partial.discard()

    async def sync_rings(self, peers: Sequence[str] = ()) -> list[Manifest]:
        """Exchanges ring manifests (RINGS) with `peers` (peer ids or nicknames; default: the
        owners of the rings this node holds manifests of), each dialled by key: newer versions
        are kept here and passed on there. Returns the manifests kept; peers that cannot be
        reached are skipped."""
        held = await asyncio.to_thread(self._access.held_manifests)
        targets = [self.resolve_peer(p) for p in peers] or list(
            dict.fromkeys(m.owner for m in held if m.owner != self.peer_id)
        )
        kept: list[Manifest] = []
        for peer_id in targets:
            addresses = await asyncio.to_thread(self._access.addresses_of, peer_id)
            try:
                connection = await self.connect(peer_id, addresses, None)
            except RingdropError:
                continue
            try:
                kept += await exchange_rings(connection, self._access, self.peer_id)
            except RingdropError:
                continue
            finally:
                await connection.close()
        return kept

    async def remote_catalog(self, peer: str) -> list[CatalogEntry]:
        """What `peer` (a ticket, or a peer whose addresses a used ticket taught us) lets this
        node download; needs the catalog grant on that node."""
        try:
            ticket = Ticket.decode(peer)
            self._check_reachable(ticket)
            peer_id, addresses, relay = ticket.peer_id, list(ticket.addresses), ticket.relay
            self._remember(ticket)
        except TicketError:
            peer_id = self._access.resolve_peer(peer)
            addresses, relay = self._addresses_of(peer_id), None
        connection = await self.connect(peer_id, addresses, relay)
        try:
            header, entries = await connection.catalog()
            header.raise_for_status()
            return list(entries)
        finally:
            await connection.close()

    # -- a ring's news ---------------------------------------------------------------------------

    def inbox(self) -> list[InboxItem]:
        """What the owners of this node's rings announced to it, oldest first. An entry whose
        fetch was cut short (its process is gone) is `new` again: fetching it resumes."""
        nicknames = self.nicknames()
        return [_inbox_item(e, nicknames.get(e.owner)) for e in self._access.inbox()]

    def inbox_item(self, entry: int) -> InboxItem:
        """The inbox entry numbered `entry`."""
        found = self._access.inbox_entries([entry])
        if not found:
            raise NotFoundError(f"the inbox holds no entry {entry}", kind="inbox", name=str(entry))
        return _inbox_item(found[0], self.nickname(found[0].owner))

    def dismiss(self, entry: int) -> InboxItem:
        """Sets an inbox entry aside: it is not fetched, nor shown as new."""
        item = self.inbox_item(entry)
        if item.state == "fetching":
            raise StoreError(f"{item.name} is being fetched; stop that first")
        self._access.set_inbox_state(entry, "dismissed", note=None)
        return self.inbox_item(entry)

    def inbox_ticket(self, entry: int) -> Ticket:
        """The ticket the inbox entry `entry` stands for: the content its sharer announced,
        reached as the signed announcement says (a single file with its time and mode)."""
        found = self._access.inbox_entries([entry])
        if not found:
            raise NotFoundError(f"the inbox holds no entry {entry}", kind="inbox", name=str(entry))
        held = found[0]
        announcement = parse_announcement(held.raw)
        return Ticket(
            peer_id=held.owner,
            addresses=announcement.addresses,
            content_hash=held.root,
            format=held.format,
            name=held.name,
            size=held.size,
            relay=announcement.relay,
            mtime_ns=announcement.mtime_ns if held.format == "blob" else None,
            executable=announcement.executable and held.format == "blob",
        )

    async def fetch_news(
        self,
        entry: int,
        dest: Path | None = None,
        *,
        existing: OnExisting = "refuse",
        keep: bool | None = None,
        progress: ProgressCallback | None = None,
        retry: RetryPolicy | None = None,
        make_dest: bool = False,
    ) -> Received:
        """Fetches what the inbox entry `entry` announced, as `get` fetches a ticket's content
        (resuming what is verified already, exporting to `dest` by the same rules): from its
        sharer, reached as the signed announcement says (and by the peer book and
        discovery). `make_dest` creates `dest` as a folder first. Content received this way
        was received under the announcing ring: this node may serve it to the ring's members
        where the ring lets members serve."""
        item = self.inbox_item(entry)
        if item.state == "withdrawn":
            raise NotFoundError(f"its sharer withdrew {item.name}", kind="inbox")
        (held,) = self._access.inbox_entries([entry])
        if item.state == "fetching" and held.fetcher != os.getpid():
            raise StoreError(f"{item.name} is being fetched by process {held.fetcher}")
        ticket = self.inbox_ticket(entry)
        if make_dest and dest is not None:
            dest.mkdir(parents=True, exist_ok=True)
        self._access.set_inbox_state(entry, "fetching", fetcher=os.getpid())
        try:
            received = await self.get(
                ticket, dest, existing=existing, keep=keep, progress=progress, retry=retry
            )
        except BaseException:
            back = "new" if item.state in ("new", "fetching") else item.state
            self._access.set_inbox_state(entry, back, only_from=("fetching",))
            raise
        manifest = self._access.manifest(held.uid)
        if manifest is not None:
            self._access.record_received(held.root, [manifest])
        self._access.set_inbox_state(entry, "received", path=str(received.path))
        return received

    def follow(
        self,
        peer: PeerRef,
        ring: str,
        into: Path,
        *,
        existing: OnExisting = "refuse",
        max_size: int | None = None,
    ) -> Follow:
        """Follows `peer`'s ring called `ring` into the folder `into` (created if need be).
        `peer` is the owner's id or nickname, or one of its tickets (whose addresses are then
        where this node asks it for news). While this node serves, what the ring's owner
        announces is fetched there, unless it is larger than `max_size` bytes or does not fit
        (then it waits in the inbox). The owner enters the peer book: its news is taken from
        now on. Following again changes the folder, the policy and the cap."""
        try:
            ticket = Ticket.decode(peer) if isinstance(peer, str) else None
        except TicketError:
            ticket = None
        if ticket is not None:
            self._remember(ticket)  # its addresses: where to ask the owner for its news
        owner = ticket.peer_id if ticket is not None else self._peer_id(peer)
        if owner == self.peer_id:
            raise UsageError("this node owns its rings: what it shares to them is here already")
        into = into.expanduser().absolute()
        if into.exists() and not into.is_dir():
            raise ExistsError(f"{into} exists and is not a folder", path=str(into))
        into.mkdir(parents=True, exist_ok=True)
        if max_size is not None and max_size < 0:
            raise ValueError(f"a size cap cannot be negative ({max_size})")
        return self._access.add_follow(owner, ring, str(into), existing, max_size)

    def unfollow(self, peer: PeerRef, ring: str) -> PeerId:
        """Stops following `peer`'s ring `ring` (what it fetched stays)."""
        owner = self._peer_id(peer)
        self._access.remove_follow(owner, ring)
        return owner

    def follows(self) -> list[Follow]:
        """The rings this node follows into folders."""
        return self._access.follows()

    def reachable_at(self) -> tuple[Address, ...]:
        """The addresses tickets name (see `addresses`); none when they cannot be told."""
        return self._addresses_or_none()

    def dialer(self, relay: str | None, addresses: Sequence[Address] = ()) -> Dialer:
        """The start of a connection to a peer at `addresses` whose relay is `relay`, opened
        now (see `transport.Dialer`): the relay is used if relaying is enabled here and the
        relay policy allows it (`config.TicketRelay`). Needs a running event loop."""
        use = TicketRelay.of(relay, self.relays, self.relay_policy)
        return Dialer(
            self.identity,
            relay=use.url,
            relay_public_only=use.public_only,
            stun=self.stun_servers,
            own=machine_ips(),
            addresses=addresses,
            relay_refused=use.refused,
        )

    async def connect(
        self,
        peer_id: PeerId,
        addresses: list[Address],
        relay: str | None,
        on_path: Callable[[PathInfo], object] | None = None,
        dialer: Dialer | None = None,
    ) -> Connection:
        """An authenticated connection to `peer_id`: its addresses and its relay raced (the
        relay as `dialer` says, by default one made now: used only if relaying is enabled here
        and the relay policy allows it), then where the peer book says it was reached and what
        its published record says (see node/dial.py, where a record's relay meets the same
        policy); then the best path found by probing. Addresses learnt from a record that led
        to the peer replace the book's. Raises `RelayRefusedError` if nothing answered and the
        ticket's relay was refused."""
        local_ips = [str(a.ip) for a in self._addresses_or_none()]
        own = machine_ips()
        hints = Route(tuple(addresses), relay)
        unused = [dialer] if dialer is not None else []

        async def attempt(route: Route) -> Connection:
            start = unused.pop() if unused and route == hints else None
            if start is None:
                start = self.dialer(route.relay, route.addresses)
            return await start.connect(
                peer_id, route.addresses, local_ips=local_ips, machine_ips=own, on_path=on_path
            )

        book = await asyncio.to_thread(self._access.addresses_of, peer_id)
        known = Route(tuple(book), None) if set(book) - set(hints.addresses) else None
        try:
            if hints.empty and known is None and self._resolver is None:
                raise DiscoveryDisabledError(
                    f"{peer_id.short()}… is known only by its key, which is looked up through "
                    "discovery, and discovery is disabled here",
                    peer=str(peer_id),
                )
            dialled = await dial(
                peer_id, hints, attempt, self._resolver, known=known, usable=self._usable_record
            )
        except (WrongPeerError, ProtocolError):
            raise
        except TransferError as error:
            if TicketRelay.of(relay, self.relays, self.relay_policy).refused is None:
                raise
            raise RelayRefusedError(str(error), relay or "") from error
        finally:
            for start in unused:
                start.close()
        record = dialled.record
        if record is not None and record.addresses:
            await asyncio.to_thread(self._access.remember_addresses, peer_id, record.addresses)
        return dialled.connection

    def _relay_allowed(self, url: str) -> bool:
        """Whether a relay that a discovery record names may be dialled: as for a ticket's."""
        return TicketRelay.of(url, self.relays, self.relay_policy).url is not None

    def _usable_record(self, record: Record) -> Route:
        """The route a record names, as this node may dial it: its relay meets the policy a
        ticket's does (`dialer`), so a record cannot point this node at a private service."""
        return Route(record.addresses, record.relay)

    def _check_reachable(self, ticket: Ticket) -> None:
        known = self._access.addresses_of(ticket.peer_id)
        if ticket.key_only and self._resolver is None and not known:
            raise DiscoveryDisabledError(
                "the ticket names only the sharer's key, which is looked up through discovery, "
                "and discovery is disabled here"
            )
        if not ticket.addresses and not self.relays and self._resolver is None and not known:
            raise RelayDisabledError(
                f"the ticket names no address of the sharer, only its relay {ticket.relay}, "
                "and relaying is disabled here"
            )
        refused = TicketRelay.of(ticket.relay, self.relays, self.relay_policy).refused
        if not ticket.addresses and refused is not None:
            raise RelayRefusedError(
                f"The ticket names no address of the sharer, only its relay. {refused}",
                ticket.relay or "",
            )

    def _addresses_or_none(self) -> tuple[Address, ...]:
        try:
            return self.addresses()
        except StoreError:
            return ()

    def _remember(self, ticket: Ticket) -> None:
        """Keeps the sharer's addresses, so that `remote list` can reach it by name later (a
        ticket without any leaves what is known)."""
        if ticket.addresses:
            self._access.remember_addresses(ticket.peer_id, ticket.addresses)

    def _addresses_of(self, peer_id: PeerId) -> list[Address]:
        """The peer book's addresses of `peer_id`; with discovery, none is fine."""
        addresses = self._access.addresses_of(peer_id)
        if not addresses and self._resolver is None:
            raise NotFoundError(
                f"no address is known for {peer_id}, and discovery is disabled here",
                kind="peer-address",
                peer=str(peer_id),
            )
        return addresses

    def describe(
        self,
        root: bytes,
        *,
        name: str,
        format: Format,
        size: int,
        at: tuple[Address, ...] | None = None,
        relay: bool = True,
    ) -> Share:
        rings = tuple(a.ring for a in self._access.attachments(root))
        ticket = self.ticket(root, format, name, size, at=at, relay=relay)
        return Share(root, name, format, size, rings, ticket)

    def ticket(
        self,
        root: bytes,
        format: Format,
        name: str | None,
        size: int | None,
        *,
        at: tuple[Address, ...] | None = None,
        relay: bool = True,
        file: tuple[int | None, bool] | None = None,
    ) -> Ticket:
        """A ticket for `root` naming `at` (default: this node's addresses; `()` for none) and,
        if `relay`, the home relay (chosen now if it is not yet). One with neither is found by
        discovery, which `check_ticket_reach` requires. A single file's ticket carries its time
        and executable bit: `file`, or else as recorded when it was shared or received."""
        addresses = self.addresses() if at is None else at
        self.check_ticket_reach(addresses=bool(addresses), relay=relay)
        if format == "blob" and file is None:
            file = self._access.file(root)
        mtime_ns, executable = file or (None, False)
        return Ticket(
            peer_id=self.peer_id,
            addresses=addresses,
            content_hash=root,
            format=format,
            name=name,
            size=size,
            relay=self._ticket_relay() if relay else None,
            mtime_ns=mtime_ns,
            executable=executable,
        )

    def check_ticket_reach(self, *, addresses: bool, relay: bool) -> None:
        """Raises unless a ticket with (or without) addresses and relay could reach this node:
        one without addresses needs a relay (chosen now if it is not yet), or, without a relay
        too, discovery."""
        if addresses:
            return
        if relay and self._ticket_relay() is None:
            raise RelayDisabledError(
                "a ticket without addresses (none asked for, or none that another machine could "
                "use) reaches the sharer only through a relay, and relaying is disabled here"
            )
        if not relay and not self.discovery.pkarr:
            raise DiscoveryDisabledError(
                "a ticket that names only this node's key is found through the address record "
                "this node publishes, and discovery is disabled here"
            )

    def addresses(self) -> tuple[Address, ...]:
        """Where peers can reach this node, as tickets name it: the addresses it was given,
        else RINGDROP_ADDRESSES if set (either kept as given, loopback included: a test or a
        demo on one machine), else this machine's addresses that another machine could use
        (never loopback), at most 8. Empty if there are none."""
        port = self.config.port
        ips, override = self._ips, os.environ.get(ADDRESSES_ENV)
        if ips is None and override:
            ips = _ips(override.split(","), ADDRESSES_ENV)
        if ips:
            return tuple(Address(ip, port) for ip in ips)
        return local_addresses(port)[:8]


_OPEN_TIMEOUT = 30.0


def _received(
    path: Path,
    stats: TransferStats,
    source: _Source,
    download: Download,
    result: ExportResult | None = None,
) -> Received:
    return Received(
        path,
        stats,
        route=source.main_path(),
        traffic=source.traffic_by_kind(),
        paths=tuple(source.paths),
        moved=0 if result is None else result.moved,
        copied=0 if result is None else result.copied,
        providers=dict(download.by_provider),
    )


async def _cancel_all(tasks: Sequence[asyncio.Task[None]]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError):
            await task


class _ExportStoppedError(Exception):
    """Raised on the export's thread when the get awaiting it was cancelled."""


@contextlib.contextmanager
def _about(ticket: Ticket) -> Iterator[None]:
    """Errors raised inside name the ticket's peer and content, unless they name their own."""
    try:
        yield
    except RingdropError as error:
        error.peer = error.peer or str(ticket.peer_id)
        error.root = error.root or ticket.content_hash
        raise


def _ips(
    texts: Iterable[str], source: str
) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, ...]:
    try:
        return tuple(ipaddress.ip_address(t.strip()) for t in texts if t.strip())
    except ValueError as error:
        raise SettingsError(f"{source} holds a bad address: {error}") from error


def _safe_name(ticket: Ticket) -> str:
    """The ticket's name as one safe path component, or a name made from the hash."""
    fallback = ticket.content_hash.hex()[:16]
    if not ticket.name:
        return fallback
    candidate = ticket.name.replace("/", "_")
    try:
        return validate_name(candidate)
    except UnsafePathError:
        return fallback


class _Source:
    """A download source over one connection; reconnecting closes the previous one. Its first
    connection starts from a dialer opened when the source is made (see `Node.get`)."""

    def __init__(
        self,
        node: Node,
        peer_id: PeerId,
        addresses: Sequence[Address],
        relay: str | None,
        *,
        dial_now: bool = True,
    ) -> None:
        self._node = node
        self._peer_id, self._addresses, self._relay = peer_id, list(addresses), relay
        self.tracker: Tracker | None = None
        self._dialer: Dialer | None = node.dialer(relay, addresses) if dial_now else None
        self._connection: Connection | None = None
        self._traffic: dict[PathInfo, int] = {}
        self._counted: dict[PathInfo, int] = {}
        self.started = time.monotonic()
        self.paths: list[tuple[float, PathInfo]] = []
        """Each path taken, with when (seconds since `started`)."""

    async def connect(self) -> _Source:
        await self._close_connection()
        self._counted = {}
        dialer, self._dialer = self._dialer, None
        self._connection = await self._node.connect(
            self._peer_id, self._addresses, self._relay, self._moved, dialer
        )
        if (path := self._connection.path) is not None:
            self._record(path)
        return self

    def _moved(self, path: PathInfo) -> None:
        self._record(path)
        if self.tracker is not None:
            self.tracker.update(address=str(path))

    def _record(self, path: PathInfo) -> None:
        self.paths.append((round(time.monotonic() - self.started, 3), path))

    @property
    def address(self) -> str:
        return self._connection.address if self._connection is not None else "?"

    @property
    def peer(self) -> str:
        return str(self._peer_id)

    def main_path(self) -> PathInfo | None:
        """The path that carried most of the bytes, over every connection of the download:
        of the kind (direct or relay) that carried most, the busiest."""
        kinds = self.traffic_by_kind()
        if not kinds:
            return None
        kind = max(kinds, key=lambda k: kinds[k])
        paths = [p for p in self._traffic if p.kind == kind]
        return max(paths, key=lambda p: self._traffic[p])

    def traffic_by_kind(self) -> dict[str, int]:
        self._count()
        kinds: dict[str, int] = {}
        for path, size in self._traffic.items():
            kinds[path.kind] = kinds.get(path.kind, 0) + size
        return kinds

    def _count(self) -> None:
        """Adds what the current connection received since it was last counted."""
        if self._connection is not None:
            for path, size in self._connection.traffic().items():
                counted = self._counted.get(path, 0)
                self._traffic[path] = self._traffic.get(path, 0) + size - counted
                self._counted[path] = size

    async def fetch(self, root: bytes, ranges: ChunkRanges) -> AsyncGenerator[bytes, None]:
        assert self._connection is not None, "connect first"
        header, body = await self._connection.request(GetRequest(root, ranges))
        async with body:
            header.raise_for_status()
            async for piece in body:
                yield piece

    async def fetch_members(
        self, collection: bytes, members: Sequence[MemberSelection]
    ) -> AsyncGenerator[bytes, None]:
        assert self._connection is not None, "connect first"
        request = MembersRequest(collection, tuple(members))
        header, body = await self._connection.request(request)
        async with body:
            header.raise_for_status()
            async for piece in body:
                yield piece

    @property
    def connection(self) -> Connection | None:
        return self._connection

    async def close(self) -> None:
        if self._dialer is not None:
            self._dialer.close()
            self._dialer = None
        await self._close_connection()

    async def _close_connection(self) -> None:
        if self._connection is not None:
            self._count()
            connection, self._connection = self._connection, None
            await connection.close()


def _inbox_item(entry: InboxEntry, nickname: str | None) -> InboxItem:
    from ringdrop.node.news import process_alive

    state = entry.state
    if state == "fetching" and not process_alive(entry.fetcher):
        state = "new"  # its fetch was cut short: fetching it again resumes
    return InboxItem(
        id=entry.id,
        arrived_at=entry.arrived_at,
        announced_at=entry.announced_at,
        ring=entry.ring,
        sharer=entry.owner,
        nickname=nickname,
        name=entry.name,
        format=entry.format,
        size=entry.size,
        state=state,
        root=entry.root,
        path=entry.path,
        note=entry.note,
        asked=entry.asked,
    )


class _Swarm:
    """The providers of one download besides the sharer: those the sharer names (ABOUT), and
    those given by hand; each dialled by key (the addresses and relay it gave are hints).
    Also keeps what the sharer said of the rings through which this node may read the content,
    to record and to tell the sharer, once it is complete, that this node holds it (HAVE)."""

    def __init__(self, node: Node, root: bytes, sharer: PeerId, by_hand: Sequence[PeerId]) -> None:
        self._node = node
        self._root = root
        self._sharer = sharer
        self._by_hand = list(by_hand)
        self.admitting: list[Manifest] = []
        self._known: dict[PeerId, Provider] = {}
        self._sources: list[_Source] = []

    async def more(self, sharer: Source | None) -> list[Awaitable[Source]]:
        node = self._node
        if isinstance(sharer, _Source) and sharer.connection is not None:
            try:
                _, admitting, providers = await asyncio.wait_for(
                    ask_about(sharer.connection, node._access, node.peer_id, self._root),
                    _PROVIDER_CONNECT,
                )
            except (RingdropError, TimeoutError):
                providers = ()
            else:
                self.admitting = admitting or self.admitting
                self._known.update({p.peer_id: p for p in providers})
        wanted = [
            p for p in (*self._by_hand, *self._known) if p not in (self._sharer, node.peer_id)
        ]
        for source in self._sources:
            await source.close()
        self._sources = []

        async def reach(peer: PeerId) -> _Source:
            known = self._known.get(peer)
            addresses = [] if known is None else [_address(a) for a in known.addresses]
            source = _Source(node, peer, addresses, None if known is None else known.relay)
            self._sources.append(source)
            await asyncio.wait_for(source.connect(), _PROVIDER_CONNECT)
            assert source.connection is not None
            with contextlib.suppress(RingdropError, TimeoutError):
                await asyncio.wait_for(
                    exchange_rings(source.connection, node._access, node.peer_id),
                    _PROVIDER_CONNECT,
                )
            return source

        return [reach(p) for p in dict.fromkeys(wanted)]

    async def tell(self, sharer: _Source, received: dict[str, int]) -> None:
        """Records the rings the content came under, and tells the sharer this node holds it."""
        node = self._node
        if not self.admitting:
            return
        await asyncio.to_thread(node._access.record_received, self._root, self.admitting)
        via = [(PeerId.parse(p), n) for p, n in received.items() if p != str(self._sharer)]
        try:
            if sharer.connection is None:
                await asyncio.wait_for(sharer.connect(), _PROVIDER_CONNECT)
            assert sharer.connection is not None
            await asyncio.wait_for(
                tell_have(sharer.connection, node._access, node.peer_id, self._root,
                          node.home_relay, node._addresses_or_none(), via),
                _PROVIDER_CONNECT,
            )  # fmt: skip
        except (RingdropError, TimeoutError):
            pass  # the sharer is gone: the other members still learn of this node from others

    async def close(self) -> None:
        for source in self._sources:
            await source.close()


_PROVIDER_CONNECT = 5.0
"""Seconds to reach a provider (or ask the sharer about one) before going on without it."""


def _address(pair: tuple[str, int]) -> Address:
    return Address(ipaddress.ip_address(pair[0]), pair[1])


def _collection_size(node: Node, root: bytes) -> int:
    try:
        return node._store.collection(root).total_size
    except RingdropError:
        return 0  # unreadable: `ringdrop store check` says why; listing must still work
