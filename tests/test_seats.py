"""Who keeps a connection when a sharer has no room left (issue 20 item 5): throwaway keys fill
every seat with denied requests, and still a ring member is served; a stranger waits out the
strangers' grace period; a stranger that makes no allowed request gives way after it.

Real QUIC on loopback: the strangers are hostile peers (tests/hostile.py) with fresh keys, the
sharer a real node (peer book, rings) or the transport's server with a `known` hook."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from pathlib import Path

import nacl.signing

from ringdrop.identity import Identity, PeerId
from ringdrop.node import Node
from ringdrop.protocol import CatalogRequest, ResponseHeader, encode
from ringdrop.ticket import Ticket
from ringdrop.transport import Limits
from tests.hostile import HostilePeer, first_frame, hostile
from tests.test_transport import SHARER, TIMEOUT, refuse, start_sharer


def stranger() -> Identity:
    return Identity(nacl.signing.SigningKey.generate())


async def denied(peer: HostilePeer) -> None:
    """A stranger's whole business: prove a key, ask, be refused."""
    header = first_frame(await peer.ask(encode(CatalogRequest())))
    assert isinstance(header, ResponseHeader)
    assert header.status == "denied"


async def fill(
    stack: contextlib.AsyncExitStack, port: int, count: int, server_id: PeerId
) -> list[HostilePeer]:
    crowd = []
    for _ in range(count):
        peer = await stack.enter_async_context(hostile(port))
        await peer.authenticate(stranger(), server_id)
        await denied(peer)
        crowd.append(peer)
    return crowd


async def test_a_ring_member_is_served_while_throwaway_keys_hold_every_seat(
    sharer: Node, receiver: Node, a_file: Path
) -> None:
    sharer.create_ring("friends")
    sharer.add_member("friends", str(receiver.peer_id))
    shared = sharer.share(a_file, rings=["friends"])
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    limits = Limits(max_connections=3, stranger_grace=600.0)
    serving = asyncio.create_task(
        sharer.serve(host="127.0.0.1", ready=ready.set_result, limits=limits)
    )
    try:
        async with asyncio.timeout(TIMEOUT), contextlib.AsyncExitStack() as stack:
            port = await ready
            crowd = await fill(stack, port, 3, sharer.peer_id)
            ticket = Ticket.decode(shared.ticket.encode())
            got = await receiver.get(ticket, receiver.data_dir.parent / "out")
            evicted = [peer for peer in crowd if peer.closed.done()]
            while not evicted:  # the eviction's close is on its way: wait for it
                await asyncio.sleep(0.02)
                evicted = [peer for peer in crowd if peer.closed.done()]
    finally:
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
    assert got.path.read_bytes() == a_file.read_bytes()
    assert len(evicted) == 1


def knows(*identities: Identity) -> Callable[[Sequence[PeerId]], list[bool]]:
    keys = {identity.peer_id for identity in identities}
    return lambda peers: [peer in keys for peer in peers]


async def test_a_stranger_waits_while_the_strangers_are_in_their_grace() -> None:
    limits = Limits(max_connections=2, stranger_grace=600.0)
    async with asyncio.timeout(TIMEOUT), contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(await start_sharer(refuse, limits, known=knows()))
        await fill(stack, server.port, 2, SHARER.peer_id)
        async with hostile(server.port) as late:
            await late.authenticate(stranger(), SHARER.peer_id)
            _, reason = await late.closed
    assert "serves at most 2 peers" in reason
    assert server.evicted == 0


async def test_a_stranger_without_an_allowed_request_gives_way_after_its_grace() -> None:
    limits = Limits(max_connections=2, stranger_grace=0.0)
    async with asyncio.timeout(TIMEOUT), contextlib.AsyncExitStack() as stack:
        server = await stack.enter_async_context(await start_sharer(refuse, limits, known=knows()))
        crowd = await fill(stack, server.port, 2, SHARER.peer_id)
        async with hostile(server.port) as late:
            await late.authenticate(stranger(), SHARER.peer_id)
            await denied(late)  # it has a seat
        while not any(peer.closed.done() for peer in crowd):
            await asyncio.sleep(0.02)
    assert server.evicted == 1
    assert crowd[0].closed.done()  # the oldest went
