"""Transfers through a real iroh-relay on loopback: a ticket with no address at all still works,
the path is reported as the relay, and a relay restart mid-transfer costs a pause, not the
transfer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ringdrop.node import Node, Progress
from tests.conftest import pseudo_random
from tests.relay_server import IrohRelay, require_iroh_relay


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[IrohRelay]:
    with IrohRelay(require_iroh_relay(), tmp_path / "iroh-relay") as server:
        yield server


@pytest.fixture
def relayed_sharer(tmp_path: Path, relay: IrohRelay) -> Iterator[Node]:
    with Node(tmp_path / "sharer", relays=(relay.url,), stun=()) as node:
        yield node


@pytest.fixture
def relayed_receiver(tmp_path: Path, relay: IrohRelay) -> Iterator[Node]:
    with Node(tmp_path / "receiver", relays=(relay.url,), stun=()) as node:
        yield node


@pytest.fixture
async def serving_by_relay(relayed_sharer: Node) -> AsyncIterator[Node]:
    """The sharer serving on 127.0.0.1 and connected to its home relay."""
    connected = asyncio.Event()
    task = asyncio.create_task(
        relayed_sharer.serve(
            host="127.0.0.1",
            on_relay=lambda state: connected.set() if state == "connected" else None,
        )
    )
    await asyncio.wait_for(connected.wait(), 30)
    yield relayed_sharer
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_ticket_without_addresses_is_fetched_through_the_relay(
    serving_by_relay: Node, relayed_receiver: Node, relay: IrohRelay, tmp_path: Path
) -> None:
    data = pseudo_random(3 * 1024 * 1024 + 5, seed=7)
    (tmp_path / "f.bin").write_bytes(data)
    share = serving_by_relay.share(tmp_path / "f.bin", open=True, addresses=False)
    assert share.ticket.addresses == ()
    assert share.ticket.relay == relay.url + "/"

    received = await relayed_receiver.get(share.ticket, tmp_path / "out")

    assert received.path.read_bytes() == data
    assert received.route is not None
    assert received.route.kind == "relay"
    assert received.route.where == relay.url + "/"
    assert set(received.traffic) == {"relay"}


async def test_a_relay_restart_mid_transfer_only_pauses_it(
    serving_by_relay: Node, relayed_receiver: Node, relay: IrohRelay, tmp_path: Path
) -> None:
    data = pseudo_random(48 * 1024 * 1024, seed=8)
    (tmp_path / "big.bin").write_bytes(data)
    share = serving_by_relay.share(tmp_path / "big.bin", open=True, addresses=False)
    halfway = asyncio.Event()

    def progress(p: Progress) -> None:
        if p.total and p.done > p.total // 8:
            halfway.set()

    download = asyncio.create_task(
        relayed_receiver.get(share.ticket, tmp_path / "out", progress=progress)
    )
    await asyncio.wait_for(halfway.wait(), 120)
    restarted = False
    if not download.done():
        await asyncio.to_thread(relay.restart)
        restarted = True
    received = await asyncio.wait_for(download, 300)

    assert restarted, "the transfer finished before the relay could be restarted"
    assert received.path.read_bytes() == data
    assert received.route is not None
    assert received.route.kind == "relay"
