"""Short codes in the TUI, through a real iroh-relay on loopback: the Receive field takes a code
(and refuses a mistyped one before anything is sent); the share dialog's "Short code instead", and
`o` on a share, offer it under one."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from textual.widgets import Input, Static

from ringdrop.node import CodeOffer, Node, ShortCode
from ringdrop.tui.app import make_app
from ringdrop.tui.dialogs import Prompt, ShareTo
from ringdrop.tui.receive import ReceivePane
from ringdrop.tui.shares import SharesPane
from ringdrop.tui.transfer import TransferView
from tests.files import pseudo_random
from tests.relay_server import IrohRelay, require_iroh_relay
from tests.tui.conftest import SIZE, answer_field, until

DATA = pseudo_random(500_000, seed=62)
# A short code as the message line shows it once it is made ("making a short code for …" comes
# first, and has "code " in it too).
CODE = re.compile(r"code (\d+-[a-z]+-[a-z]+)")


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[IrohRelay]:
    with IrohRelay(require_iroh_relay(), tmp_path / "iroh-relay") as server:
        yield server


def make_node(path: Path, relay: IrohRelay) -> Node:
    return Node(path, relays=(relay.url,), stun=(), addresses=("127.0.0.1",))


@pytest.fixture
def mine(tmp_path: Path, relay: IrohRelay) -> Iterator[Node]:
    with make_node(tmp_path / "mine", relay) as node:
        yield node


@pytest.fixture
async def other(tmp_path: Path, relay: IrohRelay) -> AsyncIterator[Node]:
    """Another node, serving on loopback."""
    with make_node(tmp_path / "other", relay) as node:
        listening: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(node.serve(host="127.0.0.1", ready=listening.set_result))
        await asyncio.wait_for(listening, 30)
        yield node
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


def preview(pane: ReceivePane) -> str:
    return str(pane.query_one("#preview", Static).render())


async def test_the_receive_field_tells_a_code_from_a_ticket_and_refuses_a_mistyped_one(
    mine: Node,
) -> None:
    app = make_app(mine, host="127.0.0.1")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        pane = app.query_one(ReceivePane)
        field = app.query_one("#ticket", Input)
        field.value = "7-revenge-guitarist"
        await until(pilot, lambda: "a short code" in preview(pane))
        assert "a short code" in preview(pane)
        field.value = "7-guitarist-revenge"
        await until(pilot, lambda: "out of order" in preview(pane))
        assert "out of order" in preview(pane)
        pane.receive()
        await pilot.pause()
        assert "out of order" in str(pane.query_one(".message", Static).render())
        assert not app.query(TransferView)


async def test_a_code_typed_in_receive_fetches_what_its_sender_offers(
    mine: Node, other: Node, tmp_path: Path
) -> None:
    (tmp_path / "film.bin").write_bytes(DATA)
    share = other.share(tmp_path / "film.bin")
    ready: asyncio.Future[CodeOffer] = asyncio.get_running_loop().create_future()
    offering = asyncio.create_task(other.offer_code(share, on_ready=ready.set_result))
    code = (await asyncio.wait_for(ready, 30)).code
    downloads = tmp_path / "downloads"
    downloads.mkdir()

    app = make_app(mine, host="127.0.0.1")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        app.query_one("#dest", Input).value = str(downloads)
        app.query_one("#ticket", Input).value = str(code)
        app.query_one(ReceivePane).receive()
        await until(pilot, lambda: offering.done(), timeout=60)  # the receiver said it is done
        view = app.query_one(TransferView)
        assert view.finished

    assert (downloads / "film.bin").read_bytes() == DATA
    assert offering.result().receiver == mine.peer_id


async def test_o_offers_the_selected_share_under_a_code_that_another_node_redeems(
    mine: Node, other: Node, tmp_path: Path
) -> None:
    (tmp_path / "notes.bin").write_bytes(DATA)
    mine.share(tmp_path / "notes.bin")
    app = make_app(mine, host="127.0.0.1")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1")
        pane = app.query_one(SharesPane)
        # o offers the selected share: there is one once a worker has loaded the table.
        await until(pilot, lambda: pane.selected() is not None)
        await pilot.press("o")

        def message() -> str:
            return str(pane.query_one(".message", Static).render())

        await until(pilot, lambda: CODE.search(message()) is not None, timeout=30)
        found = CODE.search(message())
        assert found is not None
        received = await other.receive_code(ShortCode.parse(found.group(1)), tmp_path / "got")
        await until(pilot, lambda: "is finished with" in message(), timeout=30)

    assert received.path.read_bytes() == DATA


async def test_the_share_dialog_offers_a_new_share_under_a_short_code(
    mine: Node, other: Node, tmp_path: Path
) -> None:
    (tmp_path / "slides.bin").write_bytes(DATA)
    app = make_app(mine, host="127.0.0.1")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("1", "a")
        await answer_field(pilot, Prompt)
        await pilot.press(*str(tmp_path / "slides.bin"), "enter")
        await answer_field(pilot, ShareTo)
        await pilot.press("tab", "tab", "enter")  # past the rings, to "Short code instead"
        pane = app.query_one(SharesPane)

        def message() -> str:
            return str(pane.query_one(".message", Static).render())

        await until(pilot, lambda: CODE.search(message()) is not None, timeout=30)
        found = CODE.search(message())
        assert found is not None

        def ticket() -> str:
            return str(pane.query_one("#share-ticket").render())

        # Drawn once the table has the new share selected: that load is a worker of its own.
        await until(pilot, lambda: f"short code: {found.group(1)}" in ticket())
        assert f"short code: {found.group(1)}" in ticket()
        (share,) = mine.shares()
        assert share.rings[0].startswith("code-")  # its one-time ring, and no other
        assert len(share.rings) == 1
        received = await other.receive_code(ShortCode.parse(found.group(1)), tmp_path / "got")
        await until(pilot, lambda: "is finished with" in message(), timeout=30)
        await until(pilot, lambda: mine.shares()[0].rings == ())

    assert received.path.read_bytes() == DATA
