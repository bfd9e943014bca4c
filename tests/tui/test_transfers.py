"""Receiving through the TUI from a real sharer on loopback: progress to 100 %, the reason for
a denial, and transfers that continue when the TUI is opened again."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Input, ProgressBar

from ringdrop.node import Node
from ringdrop.tui.app import RingdropApp
from ringdrop.tui.receive import ReceivePane
from ringdrop.tui.saved import SavedTransfer, SavedTransfers
from ringdrop.tui.transfer import TransferView
from tests.conftest import pseudo_random
from tests.tui.conftest import SIZE, screen_text, until

DATA = pseudo_random(3 * 1024 * 1024 + 17)


def shared_file(sharer: Node, tmp_path: Path, *, open: bool) -> str:
    path = tmp_path / "movie.bin"
    path.write_bytes(DATA)
    return sharer.share(path, open=open).ticket.encode()


async def paste_and_receive(app: RingdropApp, ticket: str, dest: Path) -> TransferView:
    pilot_app = app
    pilot_app.query_one("#dest", Input).value = str(dest)
    pilot_app.query_one("#ticket", Input).value = ticket
    pilot_app.query_one(ReceivePane).receive()
    return pilot_app.query_one(TransferView)


async def test_the_ticket_preview_shows_name_size_and_the_sharers_nickname(
    app: RingdropApp, mine: Node, sharer: Node, tmp_path: Path
) -> None:
    ticket = shared_file(sharer, tmp_path, open=True)
    mine.access.add_peer(sharer.peer_id, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        app.query_one("#ticket", Input).value = ticket
        await pilot.pause()
        text = screen_text(app)
    assert "movie.bin: a file, 3.0 MiB, shared by alice" in text


async def test_a_received_file_reaches_100_percent_and_is_saved(
    app: RingdropApp, serving: Node, tmp_path: Path, downloads: Path
) -> None:
    ticket = shared_file(serving, tmp_path, open=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        view = await paste_and_receive(app, ticket, downloads)
        await until(pilot, lambda: view.finished or view.failed)
        bar = view.query_one(ProgressBar)
        text = screen_text(app)
    assert view.finished, text
    assert bar.percentage == 1.0
    assert "[done]" in text
    assert (downloads / "movie.bin").read_bytes() == DATA
    assert SavedTransfers(app.node.data_dir).load() == []


async def test_a_denied_receive_shows_the_sharers_reason(
    app: RingdropApp, serving: Node, tmp_path: Path, downloads: Path
) -> None:
    ticket = shared_file(serving, tmp_path, open=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        view = await paste_and_receive(app, ticket, downloads)
        await until(pilot, lambda: view.finished or view.failed)
        text = screen_text(app)
    assert view.failed
    assert "[failed]" in text
    assert "not in a ring that may read this content" in " ".join(text.split()), text
    assert not (downloads / "movie.bin").exists()


async def test_a_transfer_left_unfinished_continues_when_the_tui_reopens(
    app: RingdropApp, mine: Node, serving: Node, tmp_path: Path, downloads: Path
) -> None:
    ticket = shared_file(serving, tmp_path, open=True)
    SavedTransfers(mine.data_dir).put(SavedTransfer(ticket, str(downloads)))
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(TransferView)
        await until(pilot, lambda: view.finished or view.failed)
    assert (downloads / "movie.bin").read_bytes() == DATA


async def test_pausing_keeps_the_transfer_for_later_and_resuming_finishes_it(
    app: RingdropApp, mine: Node, serving: Node, tmp_path: Path, downloads: Path
) -> None:
    ticket = shared_file(serving, tmp_path, open=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        view = await paste_and_receive(app, ticket, downloads)
        view.focus()
        await pilot.press("p")
        assert view.paused
        assert SavedTransfers(mine.data_dir).load() == [
            SavedTransfer(ticket, str(downloads), paused=True)
        ]
        await pilot.press("p")
        await until(pilot, lambda: view.finished or view.failed)
    assert (downloads / "movie.bin").read_bytes() == DATA


async def test_cancelling_removes_the_transfer(
    app: RingdropApp, mine: Node, serving: Node, tmp_path: Path, downloads: Path
) -> None:
    ticket = shared_file(serving, tmp_path, open=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        view = await paste_and_receive(app, ticket, downloads)
        view.focus()
        await pilot.press("x")
        await pilot.pause()
        assert not app.query(TransferView)
    assert SavedTransfers(mine.data_dir).load() == []
