"""The management use cases of `Node`: rings and their members, the peer book, grants, which
rings may read a share, the logs, and the store's upkeep.

A mixin of `Node`, so that the CLI and the TUI have one entry point; each method is one thing a
person does. Peers may be named by `PeerId` or by text (a peer id, a nickname, or at least 8
leading characters of an id in the peer book); the methods that act on one return its id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ringdrop.access import (
    Access,
    AccessLogEntry,
    Member,
    Peer,
    PeerRef,
    Privilege,
    RingInfo,
    Upload,
)
from ringdrop.access.manifest import Manifest
from ringdrop.errors import TicketError
from ringdrop.identity import Identity, PeerId
from ringdrop.store import ProgressFn, Store

if TYPE_CHECKING:
    from ringdrop.node.node import Share
    from ringdrop.store import CheckReport, GcReport

__all__ = ["Management"]


class Management:
    """Rings, peers, grants, attachments, logs and upkeep, for `Node`, which provides the layers
    beneath: its `_access` and its `_store`."""

    _access: Access
    _store: Store
    identity: Identity

    # -- rings ---------------------------------------------------------------------------------
    # Every change to a ring signs its next manifest at once, so that members learn it the next
    # time they talk to this node; `serve` signs again before a manifest's validity runs out.

    def rings(self) -> list[RingInfo]:
        """Every ring, the open ring first, with its numbers of members and of shares."""
        return self._access.rings()

    def create_ring(self, name: str, *, members_serve: bool = True) -> RingInfo:
        """A new ring with a random id; `members_serve` lets its members serve what they
        received under it to each other."""
        ring = self._access.create_ring(name)
        if not members_serve:
            self._access.set_members_serve(name, False)
        self.sign_ring(name)
        return ring

    def set_members_serve(self, ring: str, on: bool) -> None:
        """Whether members of `ring` may serve what they received under it."""
        self._access.set_members_serve(ring, on)
        self.sign_ring(ring)

    def rename_ring(self, old: str, new: str) -> None:
        self._access.rename_ring(old, new)
        self.sign_ring(new)

    def delete_ring(self, name: str) -> None:
        """Deletes the ring, its memberships and attachments (not the content); never the open
        ring. Its last manifest admits nobody, so that members who learn it stop serving."""
        for member in self._access.members(name):
            self._access.remove_member(name, member.peer_id)
        self.sign_ring(name)
        self._access.delete_ring(name)

    def sign_ring(self, ring: str) -> Manifest | None:
        """Signs the next version of `ring`'s manifest from its current members and settings
        (None for the open ring, which has none)."""
        return self._access.sign_ring(self.identity, ring)

    def members(self, ring: str) -> list[Member]:
        """The ring's members, expired ones included (see `Member.is_active`)."""
        return self._access.members(ring)

    def add_member(self, ring: str, peer: PeerRef, expires_at: float | None = None) -> PeerId:
        """Lets `peer` into `ring` until `expires_at` (None: for good); adding a member again
        changes its expiry."""
        peer_id = self._peer_id(peer)
        self._access.add_member(ring, peer_id, expires_at=expires_at)
        self.sign_ring(ring)
        return peer_id

    def expire_member(self, ring: str, peer: PeerRef, at: float) -> PeerId:
        """Ends `peer`'s membership of `ring` at `at` (now, or a time to come)."""
        peer_id = self._peer_id(peer)
        self._access.expire_member(ring, peer_id, at)
        self.sign_ring(ring)
        return peer_id

    def remove_member(self, ring: str, peer: PeerRef) -> PeerId:
        peer_id = self._peer_id(peer)
        self._access.remove_member(ring, peer_id)
        self.sign_ring(ring)
        return peer_id

    # -- the peer book -------------------------------------------------------------------------

    def peers(self) -> list[Peer]:
        return self._access.peers()

    def nickname(self, peer: PeerId) -> str | None:
        """The peer's nickname in the book, if it has one."""
        return self._access.nickname(peer)

    def nicknames(self) -> dict[PeerId, str]:
        """The nickname of each peer in the book that has one: to name many peers at once."""
        return {p.peer_id: p.nickname for p in self._access.peers() if p.nickname}

    def resolve_peer(self, text: str) -> PeerId:
        """The peer that `text` names: a whole peer id (in the book or not), a nickname, or the
        first 8 or more characters of the id of a peer in the book."""
        return self._access.resolve_peer(text)

    def add_peer(self, peer_id: PeerId | str, nickname: str | None = None) -> Peer:
        """Enters a peer (by its whole id) in the book; a peer already there keeps its nickname
        unless a new one is given. A nickname given where the peer id belongs, with the id
        after it, is named as the swap it is."""
        try:
            return self._access.add_peer(peer_id, nickname)
        except TicketError:
            if isinstance(peer_id, str) and nickname is not None and _is_peer_id(nickname):
                raise TicketError(
                    f"{peer_id!r} is not a peer id, but {nickname[:8]}… is: the peer id comes "
                    "first, then the nickname"
                ) from None
            raise

    def set_nickname(self, peer: PeerRef, nickname: str | None) -> None:
        """Gives a peer in the book a nickname (unique, whatever its case); None clears it."""
        self._access.set_nickname(peer, nickname)

    def remove_peer(self, peer: PeerRef) -> PeerId:
        """Removes a peer from the book, and with it from every ring and grant."""
        peer_id = self._peer_id(peer)
        self._access.remove_peer(peer_id)
        return peer_id

    # -- grants --------------------------------------------------------------------------------

    def grant(self, peer: PeerRef, privilege: Privilege = "catalog") -> PeerId:
        """Gives `peer` (entering it in the peer book) a privilege on this node."""
        peer_id = self._peer_id(peer)
        self._access.grant(peer_id, privilege)
        return peer_id

    def revoke(self, peer: PeerRef, privilege: Privilege = "catalog") -> PeerId:
        peer_id = self._peer_id(peer)
        self._access.revoke(peer_id, privilege)
        return peer_id

    def grants(self, peer: PeerRef) -> list[Privilege]:
        return self._access.grants(peer)

    # -- who may read a share ------------------------------------------------------------------

    def attach(self, share: Share, ring: str) -> None:
        """Lets `ring` read `share`; the catalog shows it under the share's name and size."""
        self._access.attach(share.root, ring, name=share.name, format=share.format, size=share.size)

    def detach(self, share: Share, ring: str) -> None:
        """Takes `share` away from `ring` (not from collections holding it)."""
        self._access.detach(share.root, ring)

    # -- logs and upkeep -----------------------------------------------------------------------

    def decisions(self, limit: int = 100) -> list[AccessLogEntry]:
        """The last `limit` access decisions (the access log), newest first."""
        return self._access.access_log(limit)

    def uploads(self, limit: int = 100) -> list[Upload]:
        """The last `limit` uploads, newest first."""
        return self._access.uploads(limit)

    def check_store(self, progress: ProgressFn | None = None) -> CheckReport:
        """Re-verifies every stored blob against its hash: damage to the store's own files is a
        problem; a referenced file the user edited, moved or deleted is forgotten (`changed`)."""
        return self._store.check(progress)

    def gc(self) -> GcReport:
        """Deletes content nothing shares or keeps any more, and leftovers of crashes."""
        return self._store.gc()

    def _peer_id(self, peer: PeerRef) -> PeerId:
        return self._access.resolve_peer(peer) if isinstance(peer, str) else peer


def _is_peer_id(text: str) -> bool:
    try:
        PeerId.parse(text)
    except TicketError:
        return False
    return True
