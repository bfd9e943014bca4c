"""The ring requests a serving node answers: manifests exchanged (RINGS), what it knows of a root
(ABOUT: the rings through which the asker may read it, and the members that hold it), and a
member saying it holds a root (HAVE).

Answers that need no write (a refusal, or manifests exchanged with nothing new to keep) are
decided by `RingService.screen` on the serving connection, which waits for no write; the others
by `RingService.answer`, on the thread where writes wait for the database's lock. What a peer
can make this node store is bounded: newer versions of rings it already holds, and, for a root
the gate lets the peer read, one provider row (per root at most `MAX_PROVIDERS`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ringdrop.access import Access, LogWriter, Upload, groups
from ringdrop.access.groups import parse_all
from ringdrop.access.manifest import Manifest
from ringdrop.identity import Identity, PeerId
from ringdrop.protocol import (
    MAX_MANIFESTS,
    MAX_REACH,
    MAX_RECEIVED,
    MAX_REQUEST_BYTES,
    AboutRequest,
    HaveRequest,
    Info,
    Provider,
    ResponseHeader,
    RingRequest,
    RingsRequest,
)
from ringdrop.store.db import Database
from ringdrop.ticket import Address
from ringdrop.transport import Connection

if TYPE_CHECKING:
    from ringdrop.node.server import Gate

__all__ = ["RingService", "ask_about", "exchange_rings", "tell_have"]

_NO_RING = "your peer id is in no ring this node holds a manifest of"


class RingService:
    """Answers RINGS, ABOUT and HAVE for a serving node; blocking, call it on a thread."""

    def __init__(self, access: Access, identity: Identity, gate: Gate, logs: LogWriter) -> None:
        self._access = access
        self._identity = identity
        self._gate = gate
        self._logs = logs

    def screen(
        self, peer: PeerId, request: RingRequest, reads: Database
    ) -> tuple[ResponseHeader, Info | None] | None:
        """The answer when it takes no write, decided on `reads` (the serving connection, which
        waits for no write): a RINGS request that brings nothing to keep while no own ring is
        due to be signed again, and every ABOUT or HAVE the gate refuses. None: `answer` it."""
        if not isinstance(request, RingsRequest):
            header = self._gate.admit(peer, request.content_hash, log_allowed=False)
            return None if header.status == "allowed" else (header, None)
        now = time.time()
        pushed = parse_all(request.manifests)
        own = self._identity.peer_id
        with reads.snapshot() as conn:
            if groups.own_due(conn, now) or any(
                groups.storable(conn, m, now, own=own, new_ring_ok=False) for m in pushed
            ):
                return None
            return _rings_reply(groups.rings_answer(conn, peer, pushed, now))

    def answer(self, peer: PeerId, request: RingRequest) -> tuple[ResponseHeader, Info | None]:
        # Own manifests near the end of their validity are signed again before one is sent.
        self._access.sign_due(self._identity)
        if isinstance(request, RingsRequest):
            return self._rings(peer, request)
        header = self._gate.admit(peer, request.content_hash, log_allowed=False)
        if header.status != "allowed":
            return header, None
        root = request.content_hash
        if isinstance(request, HaveRequest):
            self._have(peer, request)
        manifests = self._access.manifests_for_root(peer, root)
        providers: tuple[Provider, ...] = ()
        if isinstance(request, AboutRequest):
            providers = tuple(
                Provider(p, relay, tuple((str(a.ip), a.port) for a in addresses))
                for p, relay, addresses in self._access.providers(root)
                if p != peer
            )
        return header, Info(tuple(manifests[:MAX_MANIFESTS]), providers)

    def _rings(self, peer: PeerId, request: RingsRequest) -> tuple[ResponseHeader, Info | None]:
        # Newer versions of rings held here are kept whoever passes them on: the owner signed
        # them. A ring not held here is never taken from a peer that was not asked.
        self._access.store_manifests(request.manifests, self._identity.peer_id, new_ring_ok=False)
        return _rings_reply(self._access.rings_answer(peer, parse_all(request.manifests)))

    def _have(self, peer: PeerId, request: HaveRequest) -> None:
        addresses = [Address(ipaddress.ip_address(h), p) for h, p in request.addresses]
        self._access.add_provider(request.content_hash, peer, request.relay, addresses)
        now = time.time()
        for via, sent in request.received:
            if via != self._identity.peer_id and sent:
                self._logs.upload(Upload(now, peer, request.content_hash, sent, "complete", via))


def _rings_reply(manifests: Sequence[bytes]) -> tuple[ResponseHeader, Info | None]:
    if not manifests:
        return ResponseHeader("denied", _NO_RING), None
    return ResponseHeader("allowed"), Info(tuple(manifests[:MAX_MANIFESTS]))


async def exchange_rings(connection: Connection, access: Access, own: PeerId) -> list[Manifest]:
    """RINGS with the peer at the other end: pushes the manifests held of rings it owns or is
    in, and keeps the newer ones it answers with (and new rings that list this node: this node
    asked). Returns those kept."""
    peer = connection.peer_id
    held = await asyncio.to_thread(access.held_manifests)
    mine = [m.raw for m in held if m.owner == peer or m.member(peer) is not None]
    _, info = await connection.ask(RingsRequest(_fitting(mine)))
    if info is None:
        return []
    return await asyncio.to_thread(access.store_manifests, info.manifests, own, new_ring_ok=True)


async def ask_about(
    connection: Connection, access: Access, own: PeerId, root: bytes
) -> tuple[ResponseHeader, list[Manifest], tuple[Provider, ...]]:
    """ABOUT `root`: the header, the manifests through which this node may read it (stored if
    new or newer; also those held already), and the providers the peer knows of.

    Only the peer's own rings count as rings `root` came under: a ring's owner alone says what
    the ring holds. A member passes on its ring's manifest truthfully or not (a hostile one
    could name a folder that lists another ring's root), so its word would let this node
    re-serve content to a ring that never had it."""
    header, info = await connection.ask(AboutRequest(root))
    if info is None:
        return header, [], ()
    await asyncio.to_thread(access.store_manifests, info.manifests, own, new_ring_ok=True)
    now = time.time()
    admitting = [
        m for m in parse_all(info.manifests) if m.owner == connection.peer_id and m.admits(own, now)
    ]
    return header, admitting, info.providers


async def tell_have(
    connection: Connection,
    access: Access,
    own: PeerId,
    root: bytes,
    relay: str | None,
    addresses: Sequence[Address],
    received: Sequence[tuple[PeerId, int]],
) -> ResponseHeader:
    """HAVE `root`: this node holds it, reached at `relay` and `addresses`; `received` says
    from which providers how many bytes came. Keeps the manifests the answer carries."""
    request = HaveRequest(
        root,
        relay,
        tuple((str(a.ip), a.port) for a in addresses[:MAX_REACH]),
        tuple(received[:MAX_RECEIVED]),
    )
    header, info = await connection.ask(request)
    if info is not None:
        await asyncio.to_thread(access.store_manifests, info.manifests, own, new_ring_ok=True)
    return header


def _fitting(manifests: list[bytes]) -> tuple[bytes, ...]:
    """As many of `manifests` as one RINGS request holds."""
    chosen: list[bytes] = []
    size = 3
    for manifest in manifests[:MAX_MANIFESTS]:
        size += 2 + len(manifest)
        if size > MAX_REQUEST_BYTES:
            break
        chosen.append(manifest)
    return tuple(chosen)
