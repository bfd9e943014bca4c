"""Transfers through a real iroh-relay on loopback: a ticket with no address at all still works,
the path is reported as the relay, and a relay restart mid-transfer costs a pause, not the
transfer. And through a hostile relay that drops, duplicates, reorders and alters datagrams:
retries, never bad data."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ringdrop.node import Node, Progress
from tests.files import pseudo_random
from tests.relay_server import IrohRelay, require_iroh_relay
from tests.test_relay import FakeRelay


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
    stopped = asyncio.Event()

    def progress(p: Progress) -> None:
        # The relay dies right here, in the download's own callback: the transfer cannot move
        # on between seeing an eighth arrive and the kill, and 42 MiB are still to come.
        if p.total and p.done > p.total // 8 and not stopped.is_set():
            relay.stop()
            stopped.set()

    download = asyncio.create_task(
        relayed_receiver.get(share.ticket, tmp_path / "out", progress=progress)
    )
    await asyncio.wait_for(stopped.wait(), 120)
    assert not download.done(), "the transfer ended before the relay was stopped"
    # Started again in the loop's own thread, so the download cannot run on before the check.
    relay.start()
    assert not download.done(), "the transfer ended while the relay was down"
    received = await asyncio.wait_for(download, 300)

    assert received.path.read_bytes() == data
    assert received.route is not None
    assert received.route.kind == "relay"


class _Mangler:
    """The forwarding part of a relay that misbehaves on purpose, deterministically: of every
    29 datagrams it drops one, duplicates one, alters one byte of one, and delays one until
    after the next (reordering)."""

    def __init__(self) -> None:
        self.clients: dict[bytes, Any] = {}
        self.count = 0
        self.dropped = self.duplicated = self.altered = self.reordered = 0
        self._held: tuple[Any, bytes] | None = None

    async def __call__(self, ws: Any, key: bytes) -> None:
        self.clients[key] = ws
        async for message in ws:
            assert isinstance(message, bytes)
            kind = message[0]
            if kind == 9:  # ping
                await ws.send(b"\x0a" + message[1:])
            elif kind in (4, 5):
                await self._forward(key, message, batch=kind == 5)

    async def _forward(self, source: bytes, frame: bytes, *, batch: bool) -> None:
        target = self.clients.get(frame[1:33])
        if target is None:
            return
        body = frame[34:]
        if batch:
            size, body = int.from_bytes(body[:2], "big"), body[2:]
            datagrams = [body[at : at + size] for at in range(0, len(body), size)]
        else:
            datagrams = [body]
        for datagram in datagrams:
            self.count += 1
            turn = self.count % 29
            out = b"\x06" + source + b"\x00"
            if turn == 3:
                self.dropped += 1
                continue
            if turn == 7:
                self.altered += 1
                at = self.count % len(datagram)
                datagram = datagram[:at] + bytes([datagram[at] ^ 0x20]) + datagram[at + 1 :]
            if turn == 11:
                self.reordered += 1
                self._held = (target, out + datagram)
                continue
            await target.send(out + datagram)
            if turn == 13:
                self.duplicated += 1
                await target.send(out + datagram)
            if self._held is not None and turn != 11:
                held, self._held = self._held, None
                await held[0].send(held[1])


async def test_a_relay_that_drops_duplicates_reorders_and_alters_costs_time_not_data(
    tmp_path: Path,
) -> None:
    mangler = _Mangler()
    async with FakeRelay(mangler) as fake:
        with (
            Node(tmp_path / "sharer", relays=(fake.url,), stun=()) as sharer,
            Node(tmp_path / "receiver", relays=(fake.url,), stun=()) as receiver,
        ):
            connected = asyncio.Event()
            serving = asyncio.create_task(
                sharer.serve(
                    host="127.0.0.1",
                    on_relay=lambda state: connected.set() if state == "connected" else None,
                )
            )
            try:
                await asyncio.wait_for(connected.wait(), 30)
                data = pseudo_random(2 * 1024 * 1024 + 99, seed=9)
                (tmp_path / "f.bin").write_bytes(data)
                share = sharer.share(tmp_path / "f.bin", open=True, addresses=False)
                received = await asyncio.wait_for(receiver.get(share.ticket, tmp_path / "out"), 300)
            finally:
                serving.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await serving
    assert received.path.read_bytes() == data
    assert fake.errors == []
    assert mangler.dropped > 0
    assert mangler.altered > 0
    assert mangler.duplicated > 0
    assert mangler.reordered > 0
