"""Reaching a sharer by its key: real nodes over real QUIC on loopback, a real iroh-relay and a
real iroh-dns-server. A key-only ticket is fetched through the relay the sharer's record names;
a sharer that moved to another relay and port keeps its old tickets working; a peer id alone is
enough for `remote list`; with discovery off, the error says what to do."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ringdrop.errors import DiscoveryDisabledError, TransferError
from ringdrop.node import Node, Published, RetryPolicy
from ringdrop.node.config import Config
from tests.cli_util import Node as CliNode
from tests.cli_util import cli_env, ringdrop
from tests.dns_server import IrohDnsServer, iroh_dns
from tests.files import pseudo_random
from tests.relay_server import IrohRelay, require_iroh_relay

__all__ = ["iroh_dns"]

DEADLINE = 60.0


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[IrohRelay]:
    with IrohRelay(require_iroh_relay(), tmp_path / "relay") as server:
        yield server


@pytest.fixture(autouse=True)
def dns_lookups(monkeypatch: pytest.MonkeyPatch, iroh_dns: IrohDnsServer) -> None:
    """Nodes made in these tests look records up over DNS too, at the test's server."""
    monkeypatch.setenv("RINGDROP_DISCOVERY_DNS", iroh_dns.dns_setting)


def node(path: Path, relays: tuple[str, ...], dns: IrohDnsServer) -> Node:
    return Node(path, relays=relays, stun=(), discovery=(dns.pkarr_url,))


class Serving:
    """A node serving on 127.0.0.1 in the test's loop, and what it published."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.published: list[Published] = []
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(
            self.node.serve(host="127.0.0.1", on_record=self.published.append)
        )
        await until(lambda: any(p.ok for p in self.published), "a published record")

    async def stop(self) -> None:
        assert self._task is not None
        self._task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await self._task


@pytest.fixture
async def publishing(
    tmp_path: Path, relay: IrohRelay, iroh_dns: IrohDnsServer
) -> AsyncIterator[Serving]:
    with node(tmp_path / "sharer", (relay.url,), iroh_dns) as sharing:
        serving = Serving(sharing)
        await serving.start()
        yield serving
        await serving.stop()


async def test_a_key_only_ticket_is_fetched_through_the_relay_its_record_names(
    publishing: Serving, relay: IrohRelay, iroh_dns: IrohDnsServer, tmp_path: Path
) -> None:
    data = pseudo_random(2 * 1024 * 1024 + 3, seed=11)
    (tmp_path / "f.bin").write_bytes(data)
    share = publishing.node.share(tmp_path / "f.bin", open=True, addresses=False, relay=False)
    assert share.ticket.key_only
    assert publishing.published[-1].record.relay == relay.url + "/"
    assert publishing.published[-1].record.addresses == ()  # not asked to publish them

    with node(tmp_path / "receiver", (relay.url,), iroh_dns) as receiver:
        received = await receiver.get(share.ticket, tmp_path / "out")

    assert received.path.read_bytes() == data
    assert received.route is not None
    assert (received.route.kind, received.route.where) == ("relay", relay.url + "/")


async def test_a_sharer_on_another_relay_and_port_keeps_its_old_tickets_working(
    relay: IrohRelay, iroh_dns: IrohDnsServer, tmp_path: Path
) -> None:
    data = pseudo_random(700_000, seed=12)
    (tmp_path / "f.bin").write_bytes(data)
    with IrohRelay(require_iroh_relay(), tmp_path / "relay-2") as moved_to:
        with node(tmp_path / "sharer", (relay.url,), iroh_dns) as before:
            ticket = before.share(tmp_path / "f.bin", open=True).ticket
            old_port = before.config.port
            serving = Serving(before)
            await serving.start()
            await serving.stop()
        assert ticket.addresses[0].port == old_port
        assert ticket.relay == relay.url + "/"
        config = Config.load_or_create(tmp_path / "sharer")
        dataclasses.replace(config, port=old_port + 1).save(tmp_path / "sharer")

        with node(tmp_path / "sharer", (moved_to.url,), iroh_dns) as after:
            serving = Serving(after)
            await serving.start()
            try:
                assert serving.published[-1].record.relay == moved_to.url + "/"
                relays = (relay.url, moved_to.url)
                with node(tmp_path / "receiver", relays, iroh_dns) as receiver:
                    received = await receiver.get(ticket, tmp_path / "out")
            finally:
                await serving.stop()

    assert received.path.read_bytes() == data
    assert received.route is not None
    assert received.route.where == moved_to.url + "/"


async def test_a_peer_id_alone_is_enough_to_list_its_catalog(
    publishing: Serving, relay: IrohRelay, iroh_dns: IrohDnsServer, tmp_path: Path
) -> None:
    (tmp_path / "f.bin").write_bytes(b"listed")
    publishing.node.share(tmp_path / "f.bin", open=True)
    with node(tmp_path / "receiver", (relay.url,), iroh_dns) as receiver:
        publishing.node.grant(str(receiver.peer_id), "catalog")
        entries = await receiver.remote_catalog(str(publishing.node.peer_id))
    assert [entry.name for entry in entries] == ["f.bin"]


async def test_a_key_nobody_publishes_fails_saying_where_it_was_looked_up(
    relay: IrohRelay, iroh_dns: IrohDnsServer, tmp_path: Path
) -> None:
    (tmp_path / "f.bin").write_bytes(b"never served")
    with node(tmp_path / "sharer", (relay.url,), iroh_dns) as silent:
        ticket = silent.share(tmp_path / "f.bin", open=True, addresses=False, relay=False).ticket
    with (
        node(tmp_path / "receiver", (relay.url,), iroh_dns) as receiver,
        pytest.raises(TransferError) as caught,
    ):
        await receiver.get(ticket, tmp_path / "out", retry=RetryPolicy(attempts=1))
    assert f"{iroh_dns.pkarr_url}: no record" in str(caught.value)


async def test_with_discovery_off_a_key_only_ticket_fails_and_says_what_to_do(
    iroh_dns: IrohDnsServer, tmp_path: Path
) -> None:
    (tmp_path / "f.bin").write_bytes(b"unreachable")
    with node(tmp_path / "sharer", (), iroh_dns) as sharing:
        ticket = sharing.share(tmp_path / "f.bin", open=True, addresses=False, relay=False).ticket
    with (
        Node(tmp_path / "receiver", discovery=("disabled",)) as receiver,
        pytest.raises(DiscoveryDisabledError, match="discovery is disabled here"),
    ):
        await receiver.get(ticket, tmp_path / "out")


def test_with_discovery_off_the_command_says_how_to_turn_it_on(
    iroh_dns: IrohDnsServer, tmp_path: Path
) -> None:
    (tmp_path / "f.bin").write_bytes(b"unreachable")
    with node(tmp_path / "sharer", (), iroh_dns) as sharing:
        ticket = sharing.share(tmp_path / "f.bin", open=True, addresses=False, relay=False).ticket
    done = ringdrop(
        ["--data-dir", tmp_path / "receiver", "get", ticket.encode()],
        cwd=tmp_path,
        env=cli_env(RINGDROP_DISCOVERY="disabled"),
    )
    assert done.returncode == 2
    assert "discovery is disabled here" in done.stderr
    assert "--discovery URL or RINGDROP_DISCOVERY" in done.stderr


def test_info_says_when_a_ticket_needs_discovery(
    iroh_dns: IrohDnsServer, tmp_path: Path, alice: CliNode
) -> None:
    (tmp_path / "f.bin").write_bytes(b"info")
    with node(tmp_path / "sharer", (), iroh_dns) as sharing:
        key_only = sharing.share(tmp_path / "f.bin", open=True, addresses=False, relay=False)
        with_address = sharing.share(tmp_path / "f.bin", open=True)
    assert "needs discovery" in alice.run("info", key_only.ticket.encode()).stdout
    assert "needs discovery" not in alice.run("info", with_address.ticket.encode()).stdout
    assert alice.json("info", key_only.ticket.encode())["needs_discovery"] is True  # type: ignore[index]


def test_a_key_only_ticket_is_refused_where_it_could_never_be_found(tmp_path: Path) -> None:
    (tmp_path / "f.bin").write_bytes(b"x")
    with (
        Node(tmp_path / "sharer", discovery=("disabled",)) as sharing,
        pytest.raises(DiscoveryDisabledError),
    ):
        sharing.share(tmp_path / "f.bin", open=True, addresses=False, relay=False)


async def until(condition: object, what: str) -> None:
    assert callable(condition)
    loop = asyncio.get_running_loop()
    end = loop.time() + DEADLINE
    while not condition():
        if loop.time() > end:
            pytest.fail(f"no {what} within {DEADLINE:g} s")
        await asyncio.sleep(0.05)


async def test_a_key_only_ticket_reaches_a_sharer_where_the_peer_book_last_found_it(
    tmp_path: Path, serving: Node, receiver: Node, a_file: Path
) -> None:
    first = serving.share(a_file, open=True).ticket
    (tmp_path / "second.bin").write_bytes(b"second")
    key_only = dataclasses.replace(
        serving.share(tmp_path / "second.bin", open=True).ticket, addresses=(), relay=None
    )
    assert key_only.key_only
    assert not receiver.discovery.enabled  # only the peer book can help

    with pytest.raises(DiscoveryDisabledError):
        await receiver.get(key_only, tmp_path / "too-early")
    await receiver.get(first, tmp_path / "first-out")
    received = await receiver.get(key_only, tmp_path / "second-out")

    assert received.path.read_bytes() == b"second"
