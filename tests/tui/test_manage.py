"""Sharing, ring and peer edits through the TUI, and the activity they cause, against a real
receiver on loopback: an edit made in the TUI decides the next request the app's server gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.widgets import DataTable, Input, Static

from ringdrop.errors import AccessDeniedError
from ringdrop.node import Node
from ringdrop.ticket import Ticket
from ringdrop.tui.app import RingdropApp
from ringdrop.tui.shares import SharesPane
from tests.tui.conftest import SIZE, screen_text, until


async def test_sharing_a_path_lists_it_with_its_rings_and_ticket(
    app: RingdropApp, mine: Node, tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a", *str(path), "enter")
        await pilot.press(*"open", "enter")
        await until(pilot, lambda: app.query_one(DataTable).row_count == 1)
        text = screen_text(app)
        pane = app.query_one(SharesPane)
        share = pane.selected()
    assert share is not None
    assert share.rings == ("open",)
    assert "notes.txt" in text
    assert share.ticket.encode()[:40] in text


async def test_ring_edits_in_the_tui_decide_the_next_download(
    app: RingdropApp, mine: Node, tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    ticket = mine.share(path).ticket
    with Node(tmp_path / "friend") as friend:
        async with app.run_test(size=SIZE) as pilot:
            await until(pilot, lambda: "serving on port" in screen_text(app))
            with pytest.raises(AccessDeniedError):
                await friend.get(ticket, tmp_path / "friend-out")

            await pilot.press("3", "n", *"friends", "enter")
            await pilot.press("down", "m")
            app.screen.query_one("#answer", Input).value = str(friend.peer_id)
            await pilot.press("enter")
            await pilot.press("1", "t", *"friends", "enter")
            assert "friends" in screen_text(app)
            out = tmp_path / "received"
            out.mkdir()
            received = await friend.get(Ticket.decode(ticket.encode()), out)
            assert received.path.read_text() == "hello"

            await pilot.press("5")
            await until(pilot, lambda: "denied" in screen_text(app))
            text = screen_text(app)
    assert "allowed" in text
    assert friend.peer_id.short() in text


async def test_a_bad_ring_name_is_shown_in_place(app: RingdropApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3", "n", *"no spaces", "enter")
        await pilot.pause()
        message = app.query_one("#rings-pane .message", Static)
        text = screen_text(app)
    assert message.has_class("error")
    assert " ".join(str(message.render()).split()) in " ".join(text.split())
    assert [r.name for r in app.node.rings()] == ["open"]


async def test_a_peer_added_with_a_nickname_can_be_granted_the_catalog(
    app: RingdropApp, mine: Node, sharer: Node
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4", "n")
        app.screen.query_one("#answer", Input).value = f"{sharer.peer_id} alice"
        await pilot.press("enter")
        await pilot.press("g")
        await pilot.pause()
        text = screen_text(app)
    assert "alice" in text
    assert "catalog" in text
    assert mine.grants(sharer.peer_id) == ["catalog"]


async def test_sharing_a_folder_leaves_out_what_its_ringdropignore_names(
    app: RingdropApp, mine: Node, tmp_path: Path
) -> None:
    folder = tmp_path / "project"
    (folder / "build").mkdir(parents=True)
    (folder / "main.c").write_text("int main;")
    (folder / "build" / "main.o").write_bytes(b"\x7fELF")
    (folder / "debug.log").write_text("noise")
    (folder / ".ringdropignore").write_text("build/\n*.log\n")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a", *str(folder), "enter")
        await pilot.press(*"open", "enter")
        await until(pilot, lambda: app.query_one(DataTable).row_count == 1)
        await until(pilot, lambda: "left out" in screen_text(app))
        text = " ".join(screen_text(app).split())
    assert "shared project (left out 2 files that .ringdropignore names)" in text
    (share,) = mine.shares()
    names = [e.name for e in mine.store.collection(share.root).entries]
    assert names == [".ringdropignore", "main.c"]
