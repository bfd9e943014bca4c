"""Short codes at the node: the relay both sides meet on, and the one-time ring through which
the sender admits the receiver a code brought, for that content only and for a while only."""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass

from ringdrop.access import Access
from ringdrop.errors import RelayDisabledError, RingdropError
from ringdrop.identity import PeerId
from ringdrop.rendezvous import choose_relay
from ringdrop.shortcode import ShortCode
from ringdrop.ticket import Ticket
from ringdrop.transport.rendezvous import offer, redeeming

__all__ = [
    "CODE_EXPIRES",
    "CODE_RING_PREFIX",
    "RECEIVE_TIMEOUT",
    "CodeOffer",
    "end_offer",
    "offer_code",
    "redeeming_code",
    "remove_stale_rings",
    "rendezvous_relay",
]

CODE_EXPIRES = 600.0
"""Seconds a code stays valid by default, and that its receiver is admitted for once used."""
RECEIVE_TIMEOUT = 60.0
"""Seconds a receiver waits by default for a sender to answer on the code's nameplate."""
CODE_RING_PREFIX = "code-"
# code-<nameplate>-<when every membership of it has expired, Unix seconds>-<random>
_RING_NAME = re.compile(r"code-\d+-(\d+)-[0-9a-f]+")


@dataclass(frozen=True)
class CodeOffer:
    """A code being offered: its one-time ring, and the receiver once one has redeemed it."""

    code: ShortCode
    relay: str
    ring: str
    receiver: PeerId | None = None
    forget: tuple[PeerId, ...] = ()
    """Receivers to take out of the peer book at the end: the code alone put them there."""


def rendezvous_relay(code: ShortCode, relays: Sequence[str]) -> str:
    """The relay both sides of `code` meet on: one of the configured relays, picked by the
    nameplate, so that two nodes with the same list agree without the code naming it."""
    if not relays:
        raise RelayDisabledError(
            "a short code's two sides meet on a relay, and relaying is disabled here"
        )
    return choose_relay(code.nameplate, relays)


async def offer_code(
    access: Access,
    ticket: Ticket,
    code: ShortCode,
    relays: Sequence[str],
    *,
    expires: float,
    on_ready: Callable[[CodeOffer], object] | None = None,
) -> CodeOffer:
    """Offers the content of `ticket` under `code` until a receiver redeems it or `expires`
    seconds pass. The receiver is admitted to a ring of its own that may read this content
    only, until it says it is finished or `expires` seconds after it got the ticket; then the
    ring is removed and the offer returned."""
    relay = rendezvous_relay(code, relays)
    remove_stale_rings(access)
    until = int(time.time() + 2 * expires) + 1
    ring = f"{CODE_RING_PREFIX}{code.nameplate}-{until}-{secrets.token_hex(4)}"
    pending = CodeOffer(code, relay, ring)
    known: set[PeerId] = set()
    admitted: list[PeerId] = []

    # The database is written off the event loop, which may be moving a transfer meanwhile.
    def prepare() -> None:
        access.create_ring(ring)
        access.attach(
            ticket.content_hash, ring, name=ticket.name, format=ticket.format, size=ticket.size
        )
        known.update(p.peer_id for p in access.peers())

    async def admit(peer: PeerId) -> Ticket:
        await asyncio.to_thread(access.add_member, ring, peer, time.time() + expires)
        if peer not in known:
            admitted.append(peer)
        return ticket

    try:
        await asyncio.to_thread(prepare)
        receiver = await offer(
            code,
            relay,
            expires=expires,
            admit=admit,
            on_ready=None if on_ready is None else lambda: on_ready(pending),
        )
    finally:
        # On the way out of an error, that error is the one to report; a ring left behind is
        # removed by a later offer once its time is up (`remove_stale_rings`).
        with contextlib.suppress(RingdropError):
            end_offer(access, CodeOffer(code, relay, ring, forget=tuple(admitted)))
    return CodeOffer(code, relay, ring, receiver, tuple(admitted))


def end_offer(access: Access, offer: CodeOffer) -> None:
    """Removes the offer's ring, and from the peer book the receivers it alone put there
    (unless they were given a nickname meanwhile)."""
    with contextlib.suppress(RingdropError):  # already gone: another process cleaned up
        access.delete_ring(offer.ring)
    named = {p.peer_id for p in access.peers() if p.nickname}
    for peer in offer.forget:
        if peer not in named:
            with contextlib.suppress(RingdropError):
                access.remove_peer(peer)


def remove_stale_rings(access: Access, now: float | None = None) -> list[str]:
    """Deletes the one-time rings of codes whose every membership has expired (left by a process
    that was killed); returns their names."""
    now = time.time() if now is None else now
    stale = [
        r.name
        for r in access.rings()
        if (match := _RING_NAME.fullmatch(r.name)) is not None and int(match.group(1)) < now
    ]
    for name in stale:
        with contextlib.suppress(RingdropError):
            access.delete_ring(name)
    return stale


@contextlib.asynccontextmanager
async def redeeming_code(
    code: ShortCode, relays: Sequence[str], peer_id: PeerId, *, timeout: float
) -> AsyncIterator[Ticket]:
    """The sender's ticket for `code`, for which the sender admits `peer_id` until the block
    is left."""
    relay = rendezvous_relay(code, relays)
    async with redeeming(code, relay, peer_id, timeout=timeout) as ticket:
        yield ticket
