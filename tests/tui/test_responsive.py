"""The TUI's loop never waits on the node: the status bar draws from what a worker found, and
the Activity tab reloads off the UI thread, once for a burst of served requests (issue 21).

The node here is a real one that notes which of its methods ran, and on which thread."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from pathlib import Path

from textual.widgets import DataTable

from ringdrop.access import AccessLogEntry, Upload
from ringdrop.node import Node
from ringdrop.ticket import Address
from ringdrop.tui.activity import ActivityPane
from ringdrop.tui.app import make_app
from ringdrop.tui.status import NodeStatus
from tests.tui.conftest import SIZE, screen_text, until


class WatchedNode(Node):
    """A node that counts the calls the TUI must not make on its UI thread, and where they ran."""

    def __init__(self, data_dir: Path) -> None:
        super().__init__(data_dir)
        self.calls: Counter[str] = Counter()
        self.on_ui_thread: Counter[str] = Counter()

    def __enter__(self) -> WatchedNode:
        return self

    def _note(self, name: str) -> None:
        self.calls[name] += 1
        if threading.current_thread() is threading.main_thread():
            self.on_ui_thread[name] += 1

    def addresses(self) -> tuple[Address, ...]:
        self._note("addresses")
        return super().addresses()

    @property
    def home_relay(self) -> str | None:
        self._note("home_relay")
        return super().home_relay

    def uploads(self, limit: int = 100) -> list[Upload]:
        self._note("uploads")
        return super().uploads(limit)

    def decisions(self, limit: int = 100) -> list[AccessLogEntry]:
        self._note("decisions")
        return super().decisions(limit)


async def test_the_status_bar_draws_without_asking_the_node(tmp_path: Path) -> None:
    with WatchedNode(tmp_path / "mine") as node:
        app = make_app(node, host="127.0.0.1")
        async with app.run_test(size=SIZE) as pilot:
            reach = f"reach   127.0.0.1:{node.config.port}"
            await until(pilot, lambda: reach in screen_text(app))
            await until(pilot, lambda: "serving on port" in screen_text(app))
            status = app.query_one(NodeStatus)
            # Drawn with nothing else running on this thread meanwhile (no await), so that
            # what the server does on the loop is not counted against the status bar.
            looked = node.on_ui_thread.copy()
            drawings = [status.render() for _ in range(20)]
            asked = node.on_ui_thread - looked
            drawn = screen_text(app)
    assert not asked, "drawing the status bar asked the node"
    assert all(drawing == drawings[0] for drawing in drawings)
    assert node.calls["addresses"] > node.on_ui_thread["addresses"], "a worker looked"
    assert node.calls["home_relay"] > node.on_ui_thread["home_relay"], "and the relay"
    assert reach in drawn


async def test_a_burst_of_served_requests_reloads_the_activity_tab_once_off_the_ui_thread(
    tmp_path: Path, downloads: Path
) -> None:
    files = []
    for i in range(12):
        files.append(tmp_path / f"f{i}.txt")
        files[-1].write_text(f"file {i}")
    with WatchedNode(tmp_path / "mine") as node, Node(tmp_path / "friend") as friend:
        tickets = [node.share(f, open=True).ticket for f in files]
        app = make_app(node, host="127.0.0.1")
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("5")
            await until(pilot, lambda: "serving on port" in screen_text(app))
            await until(pilot, lambda: node.calls["uploads"] >= 1)
            before = node.calls["uploads"]
            pane = app.query_one(ActivityPane)
            await asyncio.gather(*(friend.get(t, downloads) for t in tickets))
            await until(pilot, lambda: screen_text(app).count("complete") >= 3)
            # Every upload shown (a reload after the last of them ran), and no reload waiting
            # or running.
            uploads = pane.query_one("#uploads", DataTable)
            await until(
                pilot,
                lambda: (
                    uploads.row_count == len(tickets)
                    and pane._pending is None
                    and not [w for w in app.workers if w.group == "activity" and not w.is_finished]
                ),
            )
            reloads = node.calls["uploads"] - before
            served = len(node.uploads(100))
    assert served == len(tickets)
    assert 1 <= reloads < len(tickets), f"{reloads} loads for {len(tickets)} requests"
    assert node.on_ui_thread["uploads"] == 1, "only the one asked for above, by the test"
    assert node.on_ui_thread["decisions"] == 0
