"""Sharing, ring and peer edits through the TUI, and the activity they cause, against a real
receiver on loopback: an edit made in the TUI decides the next request the app's server gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static

from ringdrop.errors import AccessDeniedError
from ringdrop.node import Node
from ringdrop.ticket import Ticket
from ringdrop.tui.app import RingdropApp
from ringdrop.tui.dialogs import Prompt, ShareTo
from ringdrop.tui.shares import SharesPane
from tests.tui.conftest import SIZE, answer_field, screen_text, show_tab, squeezed, until


async def share_in_tui(pilot: Pilot[None], path: Path, rings: str | None) -> None:
    """Shares `path` with `a`, typing `rings` into the rings dialog (None: leaves it open)."""
    await pilot.press("a")
    await answer_field(pilot, Prompt)
    await pilot.press(*str(path), "enter")
    await answer_field(pilot, ShareTo)
    if rings is not None:
        await pilot.press(*rings, "enter")


async def test_sharing_a_path_lists_it_with_its_rings_and_ticket(
    app: RingdropApp, mine: Node, tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    async with app.run_test(size=SIZE) as pilot:
        await share_in_tui(pilot, path, "open")
        await until(pilot, lambda: app.query_one(DataTable).row_count == 1)
        pane = app.query_one(SharesPane)
        share = pane.selected()
        assert share is not None
        await until(
            pilot,
            lambda: (
                "notes.txt" in screen_text(app) and share.ticket.encode()[:40] in screen_text(app)
            ),
        )
        text = screen_text(app)
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

            await show_tab(pilot, "3", "rings-pane")
            await pilot.press("n")
            await answer_field(pilot, Prompt)
            await pilot.press(*"friends", "enter")
            await until(pilot, lambda: "friends" in screen_text(app))
            await pilot.press("down", "m")
            (await answer_field(pilot, Prompt)).value = str(friend.peer_id)
            await pilot.press("enter")
            await until(pilot, lambda: friend.peer_id.short() in screen_text(app))
            await show_tab(pilot, "1", "shares-pane")
            await pilot.press("t")
            await answer_field(pilot, Prompt)
            await pilot.press(*"friends", "enter")
            await until(pilot, lambda: "friends" in screen_text(app))
            assert "friends" in screen_text(app)
            out = tmp_path / "received"
            out.mkdir()
            received = await friend.get(Ticket.decode(ticket.encode()), out)
            assert received.path.read_text() == "hello"

            await pilot.press("5")
            # One load shows both: an earlier one, from before the second download, may be
            # drawn first.
            await until(
                pilot,
                lambda: (
                    "denied" in screen_text(app)
                    and "allowed" in screen_text(app)
                    and friend.peer_id.short() in screen_text(app)
                ),
            )
            text = screen_text(app)
    assert "allowed" in text
    assert friend.peer_id.short() in text


async def test_a_bad_ring_name_is_shown_in_place(app: RingdropApp) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await show_tab(pilot, "3", "rings-pane")
        await pilot.press("n")
        await answer_field(pilot, Prompt)
        await pilot.press(*"no spaces", "enter")
        message = app.query_one("#rings-pane .message", Static)

        def said() -> str:
            return " ".join(str(message.render()).split())

        await until(
            pilot,
            lambda: message.has_class("error") and said() in " ".join(screen_text(app).split()),
        )
        text = screen_text(app)
    assert message.has_class("error")
    assert said() in " ".join(text.split())
    assert [r.name for r in app.node.rings()] == ["open"]


async def test_a_peer_added_with_a_nickname_can_be_granted_the_catalog(
    app: RingdropApp, mine: Node, sharer: Node
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await show_tab(pilot, "4", "peers-pane")
        await pilot.press("n")
        (await answer_field(pilot, Prompt)).value = f"{sharer.peer_id} alice"
        await pilot.press("enter")
        await until(pilot, lambda: "alice" in screen_text(app))
        await pilot.press("g")
        await until(pilot, lambda: "alice" in screen_text(app) and "catalog" in screen_text(app))
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
        await share_in_tui(pilot, folder, "open")
        await until(pilot, lambda: app.query_one(DataTable).row_count == 1)
        said = "shared project (left out 2 files that .ringdropignore names)"
        await until(pilot, lambda: said in " ".join(screen_text(app).split()))
        text = " ".join(screen_text(app).split())
    assert said in text
    (share,) = mine.shares()
    names = [e.name for e in mine._store.collection(share.root).entries]
    assert names == [".ringdropignore", "main.c"]


async def test_tab_completes_the_path_in_the_share_dialog(
    app: RingdropApp, mine: Node, tmp_path: Path
) -> None:
    (tmp_path / "holiday-photos").mkdir()
    (tmp_path / "holiday-photos" / "beach.jpg").write_bytes(b"jpeg")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("a")
        answer = await answer_field(pilot, Prompt)
        await pilot.press(*f"{tmp_path}/holi")
        await until(pilot, lambda: answer._suggestion.endswith("holiday-photos/"))
        await pilot.press("tab")
        await until(pilot, lambda: answer.value == f"{tmp_path}/holiday-photos/")
        await pilot.press("b")
        await until(pilot, lambda: answer._suggestion.endswith("beach.jpg"))
        await pilot.press("tab")
        await until(pilot, lambda: answer.value == f"{tmp_path}/holiday-photos/beach.jpg")
        assert answer.value == f"{tmp_path}/holiday-photos/beach.jpg"
        assert answer.has_focus, "Tab completed, and did not move the focus away"


async def test_the_rings_prompt_offers_no_ring_so_enter_shares_with_nobody(
    app: RingdropApp, mine: Node, tmp_path: Path
) -> None:
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / "b.txt").write_text("b")
    mine.create_ring("family")
    async with app.run_test(size=SIZE) as pilot:
        await share_in_tui(pilot, tmp_path / "a.txt", None)
        offered = app.screen.query_one("#answer", Input).value
        await pilot.press("enter")
        await until(pilot, lambda: app.query_one(DataTable).row_count == 1)
        await until(pilot, lambda: "nobody may fetch it" in screen_text(app))
        await share_in_tui(pilot, tmp_path / "b.txt", "family")
        await until(pilot, lambda: app.query_one(DataTable).row_count == 2)
        await share_in_tui(pilot, tmp_path / "a.txt", None)
        offered_after_family = app.screen.query_one("#answer", Input).value
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ShareTo))
        await share_in_tui(pilot, tmp_path / "b.txt", "open")
        await until(pilot, lambda: "open" in [r for s in mine.shares() for r in s.rings])
        await share_in_tui(pilot, tmp_path / "a.txt", None)
        offered_after_open = app.screen.query_one("#answer", Input).value
    assert offered == ""
    assert {s.name: s.rings for s in mine.shares()}["a.txt"] == ()
    assert offered_after_family == "family"
    assert offered_after_open == "family", "the last ring used, never open"


async def test_the_whole_ticket_is_on_screen_at_80x24(
    app: RingdropApp, mine: Node, tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    ticket = mine.share(path, open=True).ticket.encode()
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "ticket:" in screen_text(app))
        words = squeezed(app)
    assert f"ticket:{ticket}" in words


async def test_a_received_file_is_listed_as_received_not_as_shared_with_nobody(
    app: RingdropApp, mine: Node, serving: Node, tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    own = tmp_path / "mine.txt"
    own.write_text("my own")
    ticket = serving.share(path, open=True).ticket
    (tmp_path / "in").mkdir()
    await mine.get(ticket, tmp_path / "in")
    mine.share(own)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.query_one(DataTable).row_count == 2)
        rows = [
            " ".join(str(cell) for cell in app.query_one(DataTable).get_row_at(i)) for i in range(2)
        ]
        await pilot.press("5")
        await until(pilot, lambda: "notes.txt" in screen_text(app))
        activity = screen_text(app)
    assert any("notes.txt" in r and "(received; not shared)" in r for r in rows), rows
    assert any("mine.txt" in r and "(none: nobody may fetch it)" in r for r in rows), rows
    received = next(line for line in activity.splitlines() if "notes.txt" in line)
    assert serving.peer_id.short() in received
    assert "5 B" in received
