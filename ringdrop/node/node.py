"""`Node`: the application service the CLI and the TUI share — sharing, serving, receiving, and
the management of rings, peers and grants. It holds the business rules; its clients hold none."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import dataclasses
import ipaddress
import os
import threading
from collections.abc import AsyncGenerator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ringdrop.access import MIGRATIONS, OPEN_RING, Access, LogWriter, UploadOutcome
from ringdrop.bao import ChunkRanges
from ringdrop.errors import (
    AlreadyServedError,
    AmbiguousError,
    ExistsError,
    IntegrityError,
    NotFoundError,
    RelayDisabledError,
    RingdropError,
    SettingsError,
    StoreError,
    TicketError,
    UnsafePathError,
)
from ringdrop.identity import Identity, PeerId
from ringdrop.node.addresses import local_addresses
from ringdrop.node.batch_upload import MembersServer
from ringdrop.node.codes import (
    CODE_EXPIRES,
    RECEIVE_TIMEOUT,
    CodeOffer,
    offer_code,
    redeeming_code,
)
from ringdrop.node.config import (
    Config,
    StunServer,
    relays_from,
    stun_servers_from,
)
from ringdrop.node.download import Download, RetryPolicy, TransferStats, export_target
from ringdrop.node.manage import Management
from ringdrop.node.progress import ProgressCallback, Tracker
from ringdrop.node.server import Answer, Gate, ServeEvent
from ringdrop.protocol import (
    CatalogEntry,
    GetRequest,
    MemberSelection,
    MembersRequest,
    Request,
)
from ringdrop.shortcode import ShortCode
from ringdrop.store import ImportMode, OnExisting, Store, default_data_dir
from ringdrop.store.export import free_name
from ringdrop.store.files import FileLock, ensure_free_space
from ringdrop.store.names import validate_name
from ringdrop.store.progress import ProgressFn
from ringdrop.store.reader import ServingReads
from ringdrop.ticket import Address, Format, Ticket
from ringdrop.transport import (
    Connection,
    Limits,
    PathInfo,
    Reach,
    RelayState,
    Reply,
    choose_home_relay,
    connect,
    serve,
)

# Tickets offer these addresses instead of the machine's interfaces when set (comma-separated
# IPs), e.g. RINGDROP_ADDRESSES=127.0.0.1 for a demo or test on one machine.
ADDRESSES_ENV = "RINGDROP_ADDRESSES"


# The server answers a get with pieces of about this size, read from the encoder as the QUIC
# send window opens.
PIECE = 256 * 1024
SERVE_LOCK = "serve.lock"


@dataclass(frozen=True)
class Received:
    """A finished download: where it was written and what the transfer did."""

    path: Path
    stats: TransferStats
    route: PathInfo | None = None
    """How the sharer was reached for most of the bytes (None if nothing had to be fetched)."""
    traffic: dict[str, int] = dataclasses.field(default_factory=dict)
    """Datagram bytes received by kind of path: `direct`, `relay`."""
    moved: int = 0
    """Bytes put in place without a copy (handed over by the store, or cloned)."""
    copied: int = 0
    """Bytes the export had to write."""


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


class Node(Management):
    """One data directory's node: its identity, store, rings and settings.

    The one API of the application: sharing, serving and receiving here, and the management of
    rings, peers, grants, attachments and logs in `Management`. `store` and `access`, the layers
    beneath, are for the node package and tests; the CLI and the TUI call only the node.

    `relays` (URLs) and `stun` (`HOST:PORT` or (host, port)) choose the relay and STUN servers;
    None takes $RINGDROP_RELAY / $RINGDROP_STUN, else the public defaults; `("disabled",)` or
    `()` turns them off. Bad values raise `SettingsError` before anything is opened.
    `addresses` (IP addresses) are the ones tickets name; None takes $RINGDROP_ADDRESSES, else
    this machine's interfaces.
    """

    def __init__(
        self,
        data_dir: Path | None = None,
        *,
        relays: Iterable[str] | None = None,
        stun: Iterable[str | StunServer] | None = None,
        addresses: Iterable[str] | None = None,
    ) -> None:
        self._ips = None if addresses is None else _ips(addresses, "addresses")
        self.relays: tuple[str, ...] = relays_from(relays)
        self.stun_servers: tuple[StunServer, ...] = stun_servers_from(stun)
        self.data_dir = data_dir = default_data_dir() if data_dir is None else data_dir
        self.store = Store(data_dir, MIGRATIONS)
        self.access = Access(self.store.db)
        self.identity = Identity.load_or_create(data_dir)
        self.config = Config.load_or_create(data_dir)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Node:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def peer_id(self) -> PeerId:
        return self.identity.peer_id

    @property
    def home_relay(self) -> str | None:
        """The relay that tickets name and `serve` stays connected to: the one saved in
        config.json while it is still among `relays`; else the configured relay with the lowest
        latency now (the first, if none answers), saved so that tickets and the server agree.
        None when relaying is disabled."""
        if not self.relays:
            return None
        if self.config.home_relay in self.relays:
            return self.config.home_relay
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            # Its own thread and event loop: callers may or may not be inside one.
            chosen = pool.submit(asyncio.run, choose_home_relay(self.relays)).result()
        self.config = dataclasses.replace(self.config, home_relay=chosen or self.relays[0])
        self.config.save(self.data_dir)
        return self.config.home_relay

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
    ) -> Share:
        """Imports a file or folder and attaches it to `rings` (and the `open` ring if `open`).
        Without `addresses`, its ticket names only the home relay, no address of this machine.

        A folder's files that the gitignore-style `exclude` patterns, or its own
        `.ringdropignore`, match are left out (and counted in the result)."""
        if not addresses:
            self.check_relay_only_ticket()
        rings = list(rings) + ([OPEN_RING] if open else [])
        known = {r.name.lower() for r in self.access.rings()}
        for ring in rings:
            if ring.lower() not in known:
                raise NotFoundError(f"there is no ring called {ring!r}", kind="ring", name=ring)
        mode: ImportMode = "reference" if reference else "copy"
        name = path.absolute().name
        format: Format
        excluded, skipped = 0, tuple[str, ...]()
        if path.is_dir():
            imported = self.store.import_directory(
                path, mode=mode, progress=progress, exclude=exclude
            )
            root, size, format = imported.info.root, imported.collection.total_size, "collection"
            excluded, skipped = imported.excluded, imported.skipped
            self.access.record_collection(root, (e.root for e in imported.collection.entries))
        elif exclude:
            raise StoreError(f"{path} is a single file: exclusions apply to folders only")
        elif path.exists():
            info, _ = self.store.import_file(path, mode=mode, progress=progress)
            root, size, format = info.root, info.size, "blob"
        else:
            raise NotFoundError(f"{path} does not exist")
        for ring in rings:
            self.access.attach(root, ring, name=name, format=format, size=size)
        share = self.describe(
            root, name=name, format=format, size=size, at=None if addresses else ()
        )
        return dataclasses.replace(share, excluded=excluded, skipped=skipped)

    def shares(self) -> list[Share]:
        """Everything in the store under a tag (shared or received), newest first.

        Two queries whatever the number of shares (tags with their blobs' sizes, and every
        root's rings); a collection's total size still needs reading the collection."""
        shares = []
        addresses = self.addresses()  # enumerating interfaces once, not once per share
        rings = self.access.rings_by_root()
        for tag, blob_size in self.store.tagged_blobs():
            name = tag.display_name or tag.root.hex()[:16]
            size = _collection_size(self, tag.root) if tag.format == "collection" else blob_size
            ticket = self.ticket(tag.root, tag.format, name, size, at=addresses)
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
        for attachment in self.access.attachments(root):
            self.access.detach(root, attachment.ring)
        for tag in self.store.tags():
            if tag.root == root:
                self.store.delete_tag(tag.name)

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
    ) -> None:
        """Listens on the configured port, and through the home relay, and answers requests
        until cancelled. `on_relay` hears whether the home relay is connected; `limits`
        replaces the transport's defaults (connections, requests, timeouts)."""
        lock = FileLock(self.data_dir / SERVE_LOCK)
        if not lock.acquire(blocking=False):
            pid = self.server_pid()
            who = f"process {pid}" if pid is not None else "another process"
            raise AlreadyServedError(f"this data directory is already being served by {who}", pid)
        try:
            (self.data_dir / SERVE_LOCK).write_text(f"{os.getpid()}\n")
            logs = LogWriter(self.store.db.path)
            reads = ServingReads(self.store.layout, MIGRATIONS)
            self.access.use_log_writer(logs)
            try:
                await self._serve(Gate(reads, logs, on_event), ready, host, limits, on_relay)
            finally:
                reads.close()
                # Commits every queued entry, waiting out another process's write lock.
                await asyncio.to_thread(logs.close)
                self.access.use_log_writer(None)
        finally:
            lock.release()

    async def _serve(
        self,
        gate: Gate,
        ready: Callable[[int], object] | None,
        host: str,
        limits: Limits | None,
        on_relay: Callable[[RelayState], object] | None,
    ) -> None:
        members = MembersServer(self.store, gate, PIECE)

        async def handler(peer: PeerId, request: Request) -> Reply:
            # The decision reads SQLite and opening the content touches files: neither may
            # hold up the loop that moves every other transfer's packets.
            if isinstance(request, MembersRequest):
                return await asyncio.to_thread(members.reply, peer, request)
            answer = await asyncio.to_thread(gate.answer, peer, request)
            if answer.encoder is None:
                gate.finished(peer, request, answer, 0, "complete")
                return Reply(answer.header, catalog=answer.catalog)
            return Reply(answer.header, _Upload(gate, peer, request, answer))

        reach = Reach(
            relay=self.home_relay,
            stun=self.stun_servers,
            addresses=tuple((str(a.ip), a.port) for a in self._addresses_or_none()),
        )
        server = await serve(
            self.identity,
            self.config.port,
            handler,
            limits,
            host=host,
            reach=reach,
            on_relay=on_relay,
        )
        try:
            if ready is not None:
                ready(server.port)
            await asyncio.Event().wait()
        finally:
            await server.close()

    # -- short codes --------------------------------------------------------------------------

    async def offer_code(
        self,
        share: Share,
        code: ShortCode | None = None,
        *,
        expires: float = CODE_EXPIRES,
        on_ready: Callable[[CodeOffer], object] | None = None,
    ) -> CodeOffer:
        """Offers `share` under `code` (default: a new one) on the relay its nameplate picks,
        for `expires` seconds. A receiver that redeems it is admitted to this content alone,
        through a ring of its own, until it says it is finished or `expires` seconds later;
        then the ring is removed and the offer (with the receiver's peer id) returned. Serve
        meanwhile, so that the receiver can fetch. `on_ready` hears the code once it is held on
        the relay: that is when to show it.

        Raises `RendezvousError`: `guessed` (a receiver's key confirmation failed: the code is
        ended for good), `expired`, `taken` (another sender holds the nameplate)."""
        code = ShortCode.generate() if code is None else code
        return await offer_code(
            self.access, share.ticket, code, self.relays, expires=expires, on_ready=on_ready
        )

    def redeeming_code(
        self, code: ShortCode, *, timeout: float = RECEIVE_TIMEOUT
    ) -> contextlib.AbstractAsyncContextManager[Ticket]:
        """The ticket that the sender of `code` hands over, which admits this node until the
        block is left (the sender is then told this node is finished). Raises
        `RendezvousError`: `guessed`, `unanswered` (no sender within `timeout` seconds), `busy`
        (another receiver has it) or `taken`."""
        return redeeming_code(code, self.relays, self.peer_id, timeout=timeout)

    async def receive_code(
        self,
        code: ShortCode,
        dest: Path | None = None,
        *,
        timeout: float = RECEIVE_TIMEOUT,
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
    ) -> Received:
        """Downloads the ticket's content (resuming what is already verified) and exports it.

        `dest` follows `cp`: an existing folder receives the content under its name, any other
        path is the result (see `export_target`). An existing result is refused, overwritten or
        kept beside a numbered new one, as `existing` says. Unless `keep` (default: the config's
        `keep_received`), the store hands its copy over to the exported file and keeps a
        reference to it (see ringdrop/store/export.py). An error names the ticket's peer and
        content (`RingdropError.peer`, `.root`).
        """
        with _about(ticket):
            return await self._get(ticket, dest, existing, keep, progress, retry or RetryPolicy())

    async def _get(
        self,
        ticket: Ticket,
        dest: Path | None,
        existing: OnExisting,
        keep: bool | None,
        progress: ProgressCallback | None,
        retry: RetryPolicy,
    ) -> Received:
        self._check_reachable(ticket)  # fails at once, where retrying could not help
        keep = self.config.keep_received if keep is None else keep
        name = _safe_name(ticket)
        root = ticket.content_hash
        target = self.export_target(ticket, dest)
        # A rerun after a crash in the export finishes it first: its result is already there.
        finished = await asyncio.to_thread(self.store.finish_export, root)
        done = finished is not None and (
            finished == target or (existing == "rename" and finished.parent == target.parent)
        )
        if done:
            assert finished is not None
            target = finished
        elif existing != "rename" and self._already_there(ticket, target):
            done = True  # a rerun after the export finished: nothing to do, nor to refuse
        elif os.path.lexists(target):
            if existing == "refuse":
                raise ExistsError(f"{target} already exists", path=str(target))
            if existing == "rename":
                target = free_name(target)
        if ticket.size is not None and not done:
            self._check_space(ticket, name, target, keep)
        self._remember(ticket)
        tracker = Tracker(name, progress, retry.attempts)
        source = _Source(self, ticket, tracker)
        format = ticket.format
        await asyncio.to_thread(self._forget_lost_references, root, format)
        download = Download(self.store, source.connect, root, format, name, tracker, retry)
        try:
            stats = await download.run()
        finally:
            await source.close()
        if format == "collection":
            # Received folders can be re-shared: attaching one must cover its members.
            collection = download.collection
            if collection is None:
                collection = self.store.collection(root)
            self.access.record_collection(root, (e.root for e in collection.entries))
        if done:
            tracker.update(state="done", force=True)
            return Received(
                target, stats, route=source.main_path(), traffic=source.traffic_by_kind()
            )
        tracker.update(state="exporting")
        export = self.store.export_collection if format == "collection" else self.store.export
        # The export runs on a thread, which cancelling this coroutine (Ctrl-C) cannot stop: it
        # checks this event at every progress step instead, and removes what it started.
        stop = threading.Event()

        def stop_if_asked(done: int, total: int) -> None:
            if stop.is_set():
                raise _ExportStoppedError

        try:
            result = await asyncio.to_thread(
                export, root, target, existing=existing, keep=keep, progress=stop_if_asked
            )
        except asyncio.CancelledError:
            stop.set()
            raise
        tracker.update(state="done", force=True)
        return Received(
            result.path,
            stats,
            route=source.main_path(),
            traffic=source.traffic_by_kind(),
            moved=result.moved,
            copied=result.copied,
        )

    def _already_there(self, ticket: Ticket, target: Path) -> bool:
        """Whether `target` holds exactly the ticket's content, exported there earlier by this
        node and handed over: every file is the store's reference to it, unchanged."""
        root = ticket.content_hash
        if not os.path.lexists(target) or self.store.blob(root) is None:
            return False
        if ticket.format != "collection":
            return self.store.is_reference_to(root, target)
        try:
            entries = self.store.collection(root).entries
        except RingdropError:
            return False
        return self.store.are_references_to(
            (e.root, target.joinpath(*e.name.split("/"))) for e in entries
        )

    def export_target(self, ticket: Ticket, dest: Path | None) -> Path:
        """Where `get(ticket, dest)` puts the content (before any --rename)."""
        return export_target(dest, _safe_name(ticket)).absolute()

    def _check_space(self, ticket: Ticket, name: str, target: Path, keep: bool) -> None:
        """Fails now rather than at 90 % when the content cannot fit, asking each file system
        for what this get will really write there: the download goes to the data directory;
        the export needs nothing more on the same file system (the store's file is handed
        over) unless `keep`, and the whole size on another one.

        The ticket's size is only advisory; the store and the export check again with real
        sizes. A download under way needs less than the whole in the store: checked per member.
        """
        assert ticket.size is not None
        started = self.store.blob(ticket.content_hash) is not None or any(
            p.root == ticket.content_hash for p in self.store.partials()
        )
        download = 0 if started else ticket.size
        parent = _existing_parent(target)
        if os.stat(parent).st_dev == os.stat(self.data_dir).st_dev:
            export = ticket.size if keep else 0
            ensure_free_space(parent, download + export, f"receiving {name}")
            return
        ensure_free_space(self.data_dir, download, f"downloading {name}")
        ensure_free_space(parent, ticket.size, f"writing {name}")

    def _forget_lost_references(self, root: bytes, format: Format) -> None:
        """Content handed over to an earlier export that was since edited, moved or deleted
        is fetched again rather than exported from a file that no longer holds it."""
        roots = [root]
        if format == "collection" and self.store.blob(root) is not None:
            with contextlib.suppress(RingdropError):
                roots += [e.root for e in self.store.collection(root).entries]
        self.store.forget_broken_references(roots)

    def discard_download(self, ticket: Ticket) -> None:
        """Deletes what an unfinished download of the ticket's content verified so far (the
        parts of its files still being downloaded; complete files of a folder stay until
        `store gc`, as other content does)."""
        roots = [ticket.content_hash]
        if ticket.format == "collection" and self.store.blob(ticket.content_hash) is not None:
            roots += [e.root for e in self.store.collection(ticket.content_hash).entries]
        pending = {p.root for p in self.store.partials()}
        for root in roots:
            if root in pending:
                with self.store.partial(root) as partial:
                    partial.discard()

    async def remote_catalog(self, peer: str) -> list[CatalogEntry]:
        """What `peer` (a ticket, or a peer whose addresses a used ticket taught us) lets this
        node download; needs the catalog grant on that node."""
        try:
            ticket = Ticket.decode(peer)
            self._check_reachable(ticket)
            peer_id, addresses, relay = ticket.peer_id, list(ticket.addresses), ticket.relay
            self._remember(ticket)
        except TicketError:
            peer_id = self.access.resolve_peer(peer)
            addresses, relay = self._addresses_of(peer_id), None
        connection = await self.connect(peer_id, addresses, relay)
        try:
            header, entries = await connection.catalog()
            header.raise_for_status()
            return list(entries)
        finally:
            await connection.close()

    async def connect(
        self,
        peer_id: PeerId,
        addresses: list[Address],
        relay: str | None,
        on_path: Callable[[PathInfo], object] | None = None,
    ) -> Connection:
        """An authenticated connection to `peer_id`: its addresses and its relay raced (the
        relay only if relaying is not disabled here), then the best path found by probing."""
        return await connect(
            self.identity,
            peer_id,
            addresses,
            relay=relay if self.relays else None,
            stun=self.stun_servers,
            local_ips=[str(a.ip) for a in self._addresses_or_none()],
            machine_ips=[str(a.ip) for a in local_addresses(0)],
            on_path=on_path,
        )

    def _check_reachable(self, ticket: Ticket) -> None:
        if not ticket.addresses and not self.relays:
            raise RelayDisabledError(
                f"the ticket names no address of the sharer, only its relay {ticket.relay}, "
                "and relaying is disabled here"
            )

    def _addresses_or_none(self) -> tuple[Address, ...]:
        try:
            return self.addresses()
        except StoreError:
            return ()

    def _remember(self, ticket: Ticket) -> None:
        """Keeps the sharer's addresses, so that `remote list` can reach it by name later."""
        self.access.remember_addresses(ticket.peer_id, ticket.addresses)

    def _addresses_of(self, peer_id: PeerId) -> list[Address]:
        addresses = self.access.addresses_of(peer_id)
        if not addresses:
            raise NotFoundError(
                f"no address is known for {peer_id}", kind="peer-address", peer=str(peer_id)
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
    ) -> Share:
        rings = tuple(a.ring for a in self.access.attachments(root))
        ticket = self.ticket(root, format, name, size, at=at)
        return Share(root, name, format, size, rings, ticket)

    def ticket(
        self,
        root: bytes,
        format: Format,
        name: str | None,
        size: int | None,
        *,
        at: tuple[Address, ...] | None = None,
    ) -> Ticket:
        """A ticket for `root` naming the home relay and `at` (default: this node's
        addresses; `()` for none, which needs a relay)."""
        if at == ():
            self.check_relay_only_ticket()
        return Ticket(
            peer_id=self.peer_id,
            addresses=self.addresses() if at is None else at,
            content_hash=root,
            format=format,
            name=name,
            size=size,
            relay=self.home_relay,
        )

    def check_relay_only_ticket(self) -> None:
        """Raises `RelayDisabledError` unless a ticket without addresses could name a relay."""
        if self.home_relay is None:
            raise RelayDisabledError(
                "a ticket without addresses reaches the sharer only through a relay, and "
                "relaying is disabled here"
            )

    def addresses(self) -> tuple[Address, ...]:
        """Where peers can reach this node: the addresses it was given, else RINGDROP_ADDRESSES
        if set, else its interfaces."""
        port = self.config.port
        ips, override = self._ips, os.environ.get(ADDRESSES_ENV)
        if ips is None and override:
            ips = _ips(override.split(","), ADDRESSES_ENV)
        if ips:
            return tuple(Address(ip, port) for ip in ips)
        found = local_addresses(port)
        if not found:
            raise StoreError("this machine has no network address to put in a ticket")
        return found[:8]


class _ExportStoppedError(Exception):
    """Raised on the export's thread when the get awaiting it was cancelled."""


class _Upload:
    """An allowed get's body: the encoder's pieces, pulled as the QUIC window opens, and one
    entry in the upload log however the stream ends — finished, cut, or closed unstarted."""

    def __init__(self, gate: Gate, peer: PeerId, request: Request, answer: Answer) -> None:
        assert answer.encoder is not None
        self._gate, self._peer, self._request, self._answer = gate, peer, request, answer
        self._encoder = answer.encoder
        self._sent = 0
        self._last = 0
        self._logged = False

    def __aiter__(self) -> _Upload:
        return self

    async def __anext__(self) -> bytes:
        self._sent += self._last  # asking for more means the last piece went out
        self._last = 0
        try:
            # A read can wait on a slow disk; the encoder releases the GIL while it works.
            piece = await asyncio.to_thread(self._encoder.read, PIECE)
        except IntegrityError:
            self._log("failed")
            raise
        if not piece:
            self._log("complete")
            raise StopAsyncIteration
        self._last = len(piece)
        return piece

    async def aclose(self) -> None:
        self._log("interrupted")

    def _log(self, outcome: UploadOutcome) -> None:
        if not self._logged:
            self._logged = True
            self._gate.finished(self._peer, self._request, self._answer, self._sent, outcome)


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


def _existing_parent(path: Path) -> Path:
    path = path.absolute().parent
    while not path.exists():
        path = path.parent
    return path


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
    """A download source over one connection; reconnecting closes the previous one."""

    def __init__(self, node: Node, ticket: Ticket, tracker: Tracker) -> None:
        self._node = node
        self._ticket = ticket
        self._tracker = tracker
        self._connection: Connection | None = None
        self._traffic: dict[PathInfo, int] = {}
        self._counted: dict[PathInfo, int] = {}

    async def connect(self) -> _Source:
        await self.close()
        self._counted = {}
        ticket = self._ticket
        self._connection = await self._node.connect(
            ticket.peer_id, list(ticket.addresses), ticket.relay, on_path=self._moved
        )
        return self

    def _moved(self, path: PathInfo) -> None:
        self._tracker.update(address=str(path))

    @property
    def address(self) -> str:
        return self._connection.address if self._connection is not None else "?"

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

    async def close(self) -> None:
        if self._connection is not None:
            self._count()
            connection, self._connection = self._connection, None
            await connection.close()


def _collection_size(node: Node, root: bytes) -> int:
    try:
        return node.store.collection(root).total_size
    except RingdropError:
        return 0  # unreadable: `ringdrop store check` says why; listing must still work
