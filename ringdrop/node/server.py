"""The serving side's rules: the gate that answers each request before any content moves, and
the record of who fetched what."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from ringdrop.bao import Encoder
from ringdrop.errors import AccessDeniedError, IntegrityError, NotFoundError, StoreError
from ringdrop.identity import PeerId
from ringdrop.protocol import (
    Catalog,
    CatalogEntry,
    CatalogRequest,
    GetRequest,
    MembersRequest,
    Request,
    ResponseHeader,
)
from ringdrop.store import Store
from ringdrop.store.access import Access, UploadOutcome


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


@dataclass
class Answer:
    """What to send for one request: the header, then an encoder's stream or a catalog."""

    header: ResponseHeader
    encoder: Encoder | None = None
    catalog: Catalog | None = None


_OPERATIONS = {GetRequest: "get", MembersRequest: "get members", CatalogRequest: "catalog"}


class Gate:
    """Decides each request with the access rules and opens what an allowed one reads."""

    def __init__(
        self, store: Store, access: Access, on_event: Callable[[ServeEvent], object] | None
    ) -> None:
        self._store = store
        self._access = access
        self._on_event = on_event

    def answer(self, peer: PeerId, request: GetRequest | CatalogRequest) -> Answer:
        """Members requests are answered by `node.batch_upload`, which asks `admit`."""
        if isinstance(request, CatalogRequest):
            return self._catalog(peer)
        return self._get(peer, request)

    def finished(
        self, peer: PeerId, request: Request, answer: Answer, sent: int, outcome: UploadOutcome
    ) -> None:
        """Records a request once its answer is sent (or failed): the upload log and the event."""
        root = request.content_hash if not isinstance(request, CatalogRequest) else bytes(32)
        if answer.encoder is not None:
            self._access.log_upload(peer, root, sent, outcome)
        self._emit(peer, request, answer.header, sent, outcome)

    def admit(self, peer: PeerId, root: bytes) -> ResponseHeader:
        """May `peer` read `root` (for a collection: and its members)? The decision is logged;
        the header says allowed, or the refusal the peer reads."""
        if self._access.decide(peer, root, "read").allowed:
            return ResponseHeader("allowed")
        # The reason given to the peer names no ring: ring names are the sharer's business.
        return ResponseHeader(
            "denied",
            f"your peer id {peer} is not in a ring that may read this content; "
            "send your peer id to the sharer and ask to be added",
        )

    def _get(self, peer: PeerId, request: GetRequest) -> Answer:
        root = request.content_hash
        header = self.admit(peer, root)
        if header.status != "allowed":
            return Answer(header)
        try:
            encoder = self._store.encoder(root, request.ranges)
        except NotFoundError:
            return Answer(ResponseHeader("not_found", "this content is not (or no longer) shared"))
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
                    format="collection" if e.format == "collection" else "blob",
                    size=e.size or 0,
                )
                for e in entries
            )
        )
        return Answer(ResponseHeader("allowed"), catalog=catalog)

    def _emit(
        self, peer: PeerId, request: Request, header: ResponseHeader, sent: int, outcome: str
    ) -> None:
        if self._on_event is None:
            return
        root = request.content_hash if not isinstance(request, CatalogRequest) else b""
        nickname = next((p.nickname for p in self._access.peers() if p.peer_id == peer), None)
        name = self._name_of(root) if root else None
        self._on_event(
            ServeEvent(
                at=time.time(),
                peer=str(peer),
                nickname=nickname,
                root=root,
                name=name,
                operation=_OPERATIONS[type(request)],
                allowed=header.status == "allowed",
                reason=header.reason,
                bytes_sent=sent,
                outcome=outcome if header.status == "allowed" else header.status,
            )
        )

    def _name_of(self, root: bytes) -> str | None:
        for tag in self._store.tags():
            if tag.root == root and tag.display_name:
                return tag.display_name
        return None
