"""The serving side's rules: the gate that answers each request before any content moves, and
the record of who fetched what.

`Gate.answer` only reads the database, through a connection of its own (a WAL reader never
waits for a writer), and is meant to run off the event loop; the log entries it and `finished`
produce go to a `LogWriter`. Every lookup is by an index, so the work per request does not grow
with the peers, tags or shares.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ringdrop.access import Access, LogWriter, Upload, UploadOutcome
from ringdrop.bao import Encoder
from ringdrop.errors import (
    AccessDeniedError,
    IntegrityError,
    NotFoundError,
    RingdropError,
    StoreError,
)
from ringdrop.identity import PeerId
from ringdrop.protocol import (
    AboutRequest,
    AnnounceRequest,
    Catalog,
    CatalogEntry,
    CatalogRequest,
    GetRequest,
    HaveRequest,
    MembersRequest,
    Request,
    ResponseHeader,
    RingsRequest,
    SinceRequest,
)
from ringdrop.store.reader import ServingReads


@dataclass(frozen=True)
class ServeEvent:
    """One request answered, for the serving log: who, what, the verdict and what was sent."""

    at: float
    peer: str
    nickname: str | None
    root: bytes
    name: str | None
    operation: str
    allowed: bool
    reason: str
    bytes_sent: int
    outcome: str
    completed: tuple[bytes, ...] = ()
    """The blobs whose whole requested stream went out (a get's, a members request's files)."""


@dataclass
class Answer:
    """What to send for one request: the header, then an encoder's stream or a catalog."""

    header: ResponseHeader
    encoder: Encoder | None = None
    catalog: Catalog | None = None
    # Looked up with the decision, off the loop, for the serve event.
    nickname: str | None = None
    name: str | None = None


_OPERATIONS = {
    GetRequest: "get",
    MembersRequest: "get files of",
    CatalogRequest: "catalog",
    RingsRequest: "rings",
    AboutRequest: "about",
    HaveRequest: "have",
    AnnounceRequest: "announce",
    SinceRequest: "since",
}
_NOT_SHARED = "this content is not (or no longer) shared"
# Collections whose member names the serving log keeps at hand (a folder's large files are
# fetched one request each).
_NAMED_COLLECTIONS = 4


class Gate:
    """Decides each request with the access rules and opens what an allowed one reads."""

    def __init__(
        self,
        reads: ServingReads,
        logs: LogWriter,
        on_event: Callable[[ServeEvent], object] | None,
        *,
        reserve: bool = True,
    ) -> None:
        self._reads = reads
        self._access = Access(reads.db)
        self._logs = logs
        self._on_event = on_event
        self._reserve = reserve
        self._member_names: OrderedDict[bytes, dict[bytes, str]] = OrderedDict()
        self._names_lock = threading.Lock()  # answers are made on worker threads

    def answer(self, peer: PeerId, request: GetRequest | CatalogRequest) -> Answer:
        """The answer to `request`; reads the database and opens files, so call it off the loop.
        Members requests are answered by `node.batch_upload`, which asks `admit`."""
        if isinstance(request, CatalogRequest):
            return self.named(self._catalog(peer), peer, None)
        return self.named(self._get(peer, request), peer, request.content_hash)

    def named(self, answer: Answer, peer: PeerId, root: bytes | None) -> Answer:
        """`answer` with what the serving log shows for it, when there is a log: the peer's
        nickname, and the content's name (a folder's file as `folder/path/in/it`)."""
        if self._on_event is not None:
            answer.nickname = self._access.nickname(peer)
            answer.name = None if root is None else self._name(root)
        return answer

    def _name(self, root: bytes) -> str | None:
        name = self._reads.display_name(root)
        if name is not None:
            return name
        for collection in self._access.collections_holding(root):
            member = self._names_in(collection).get(root)
            if member is not None:
                folder = self._reads.display_name(collection) or collection.hex()[:12]
                return f"{folder}/{member}"
        return None

    def _names_in(self, collection: bytes) -> dict[bytes, str]:
        with self._names_lock:
            names = self._member_names.get(collection)
        if names is None:
            try:
                names = {e.root: e.name for e in self._reads.collection(collection).entries}
            except RingdropError:
                names = {}  # not here (any more): the log shows the hash
        with self._names_lock:
            self._member_names[collection] = names
            self._member_names.move_to_end(collection)
            while len(self._member_names) > _NAMED_COLLECTIONS:
                self._member_names.popitem(last=False)
        return names

    def finished(
        self,
        peer: PeerId,
        request: Request,
        answer: Answer,
        sent: int,
        outcome: UploadOutcome,
        completed: tuple[bytes, ...] = (),
    ) -> None:
        """Records a request once its answer is sent (or failed): the upload log and the event,
        which names the blobs whose streams went out whole (`completed`).

        Never waits: the upload is queued for the log writer."""
        root = _root_of(request) or bytes(32)
        if answer.encoder is not None:
            self._logs.upload(Upload(time.time(), peer, root, sent, outcome))
        self._emit(peer, request, answer, sent, outcome, completed)

    def knows(self, peers: Sequence[PeerId]) -> list[bool]:
        """Which of `peers` are in the peer book: they keep their connections when strangers
        compete for them (see `transport.Server`). Reads the database: off the loop."""
        return self._access.knows(peers)

    def uploaded(self, peer: PeerId, sent: Sequence[tuple[bytes, int, UploadOutcome]]) -> None:
        """Queues upload log entries for many roots sent to `peer` (a members request's)."""
        now = time.time()
        for root, size, outcome in sent:
            self._logs.upload(Upload(now, peer, root, size, outcome))

    def admit(
        self, peer: PeerId, root: bytes, *, as_collection: bool = False, log_allowed: bool = True
    ) -> ResponseHeader:
        """May `peer` read `root` (`as_collection`: as a whole collection, through its own
        attachments only)? The decision only reads the database and is logged through the log
        writer (unless allowed and not `log_allowed`: a question about content, whose get
        will be logged); the header says allowed, or the refusal the peer reads."""
        decision, entry = self._access.judge(
            peer, root, "read", as_collection=as_collection, reserve=self._reserve
        )
        if log_allowed or not decision.allowed:
            self._logs.decision(entry)
        if decision.allowed:
            return ResponseHeader("allowed")
        if decision.not_shared:
            # A peer in the peer book may learn that nothing is shared under this root any
            # more; a stranger could use it to find out what this node holds, so it may not.
            return ResponseHeader("not_found", _NOT_SHARED)
        # The reason given to the peer names no ring: ring names are the sharer's business.
        return ResponseHeader(
            "denied",
            f"your peer id {peer} is not in a ring that may read this content; "
            "send your peer id to the sharer and ask to be added",
        )

    def admit_members(
        self, peer: PeerId, request: MembersRequest
    ) -> tuple[ResponseHeader, tuple[bytes, ...]]:
        """May `peer` read the members `request` selects, and which roots are they? Only a
        collection this node recorded (shared as a folder or received as one), admitted as a
        collection, is answered, with the member roots recorded for it: never roots read from
        a blob's bytes, which a peer allowed to read one blob could have written itself."""
        header = self.admit(peer, request.content_hash, as_collection=True)
        if header.status != "allowed":
            return header, ()
        indices = [m.index for m in request.members]
        recorded = self._access.recorded_members(request.content_hash, indices)
        if recorded is None:
            return ResponseHeader("not_found", _NOT_SHARED), ()
        count, roots = recorded
        if len(roots) < len(indices):
            reason = f"the folder has {count} files, and file {indices[-1]} was asked for"
            return ResponseHeader("error", reason), ()
        return header, tuple(roots)

    def _get(self, peer: PeerId, request: GetRequest) -> Answer:
        root = request.content_hash
        header = self.admit(peer, root)
        if header.status != "allowed":
            return Answer(header)
        try:
            encoder = self._reads.encoder(root, request.ranges)
        except NotFoundError:
            return Answer(ResponseHeader("not_found", _NOT_SHARED))
        except IntegrityError:
            return Answer(ResponseHeader("error", "the shared file changed on the sharer's disk"))
        except StoreError:
            return Answer(ResponseHeader("busy", "the sharer's store is busy; try again"))
        return Answer(ResponseHeader("allowed"), encoder=encoder)

    def _catalog(self, peer: PeerId) -> Answer:
        try:
            entries = self._access.catalog(peer)
        except AccessDeniedError:
            return Answer(
                ResponseHeader(
                    "denied",
                    f"your peer id {peer} may not list this node's content; ask the sharer for "
                    "a catalog grant",
                )
            )
        catalog = Catalog(
            tuple(
                CatalogEntry(
                    name=e.name or e.root.hex()[:16],
                    content_hash=e.root,
                    format=e.format or "blob",
                    size=e.size or 0,
                )
                for e in entries
            )
        )
        return Answer(ResponseHeader("allowed"), catalog=catalog)

    def _emit(
        self,
        peer: PeerId,
        request: Request,
        answer: Answer,
        sent: int,
        outcome: str,
        completed: tuple[bytes, ...],
    ) -> None:
        if self._on_event is None:
            return
        root = _root_of(request)
        header = answer.header
        self._on_event(
            ServeEvent(
                at=time.time(),
                peer=str(peer),
                nickname=answer.nickname,
                root=root,
                name=answer.name,
                operation=_OPERATIONS[type(request)],
                allowed=header.status == "allowed",
                reason=header.reason,
                bytes_sent=sent,
                outcome=outcome if header.status == "allowed" else header.status,
                completed=completed,
            )
        )


def _root_of(request: Request) -> bytes:
    """The content a request is about; empty for those about none (catalog, rings, news)."""
    if isinstance(request, CatalogRequest | RingsRequest | AnnounceRequest | SinceRequest):
        return b""
    return request.content_hash
