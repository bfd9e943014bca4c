"""The Inbox tab against a real ring owner serving on loopback: what the owner shared arrives
with a notification and a count in the tab's label, Enter fetches an entry with the same
progress row as the Receive tab, d dismisses one."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import DataTable, Input, TabbedContent

from ringdrop.node import Node
from ringdrop.tui.app import RingdropApp
from ringdrop.tui.inbox import InboxPane
from ringdrop.tui.transfer import TransferView
from tests.files import pseudo_random, write
from tests.tui.conftest import SIZE, screen_text, until

FIRST = pseudo_random(700_000, seed=1)
SECOND = pseudo_random(5000, seed=2)


def label(app: RingdropApp) -> str:
    return str(app.query_one(TabbedContent).get_tab("inbox").label)


async def test_news_arrives_with_a_count_and_a_notice_and_enter_fetches_it(
    app: RingdropApp, mine: Node, serving: Node, tmp_path: Path, downloads: Path
) -> None:
    serving.create_ring("family")
    serving.add_member("family", mine.peer_id)
    first = serving.share(write(tmp_path / "first.bin", FIRST), rings=["family"])
    # The member knows its owner, and where it was reached: as after using one of its tickets.
    mine.add_peer(serving.peer_id, "mum")
    mine._access.remember_addresses(serving.peer_id, list(first.ticket.addresses))
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        # Serving, the TUI asks the owner for what it missed: the first share.
        await until(pilot, lambda: label(app) == "Inbox 1 F6", timeout=30)
        # Toasts, which tests leave out unless asked: the notice of what arrived.
        await until(
            pilot, lambda: "first.bin (683.6 KiB) from mum" in " ".join(screen_text(app).split())
        )
        serving.share(write(tmp_path / "second.bin", SECOND), rings=["family"])
        await until(pilot, lambda: label(app) == "Inbox 2 F6", timeout=30)
        await pilot.press("6")
        pane = app.query_one(InboxPane)
        await until(pilot, lambda: pane.query_one(DataTable).row_count == 2)
        app.query_one("#inbox-dest", Input).value = str(downloads)
        table = pane.query_one(DataTable)
        table.focus()
        table.move_cursor(row=1)  # newest first: the first share is the second row
        await pilot.press("enter")
        await until(pilot, lambda: bool(app.query(TransferView)))
        view = app.query_one(TransferView)
        await until(pilot, lambda: view.finished or view.failed, timeout=30)
        await until(pilot, lambda: "[done]" in screen_text(app))
        text = screen_text(app)
        assert view.finished, text
        assert "[done]" in text
        await until(pilot, lambda: label(app) == "Inbox 1 F6")
        table.focus()
        table.move_cursor(row=0)
        await pilot.press("d")
        await until(pilot, lambda: label(app) == "Inbox F6")
    assert (downloads / "first.bin").read_bytes() == FIRST
    states = {item.name: item.state for item in mine.inbox()}
    assert states == {"first.bin": "received", "second.bin": "dismissed"}
