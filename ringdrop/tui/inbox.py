"""The Inbox tab: what the owners of this node's rings announced to it (new, fetching, received,
dismissed, withdrawn), fetched with Enter into the "Save in" folder, with the same progress rows
as the Receive tab.

Loading it reads the database, so it runs on a worker thread; news arriving in a burst reloads
it once.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.message import Message
from textual.widgets import DataTable, Input, Label, Static

from ringdrop.display import safe, size, when
from ringdrop.errors import RingdropError
from ringdrop.node import InboxItem, Node, OnExisting
from ringdrop.tui.dialogs import ask_existing
from ringdrop.tui.pane import LoadedPane, Table, shown
from ringdrop.tui.paths import PathSuggester
from ringdrop.tui.receive import default_folder
from ringdrop.tui.transfer import TransferView


class InboxPane(LoadedPane):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "dismiss", "Dismiss"),
    ]

    class Counted(Message):
        """How many entries are new, for the tab's label."""

        def __init__(self, new: int) -> None:
            super().__init__()
            self.new = new

    # A burst of news reloads the pane once, this long after the first of it.
    DEBOUNCE = 0.3

    def __init__(self, node: Node, *, id: str | None = None) -> None:
        super().__init__(node, id=id)
        self.folder = default_folder()
        self._items: list[InboxItem] = []

    def compose(self) -> ComposeResult:
        table = Table(id="inbox-table")
        table.add_columns("#", "when", "ring", "from", "what", "size", "state")
        yield table
        with Horizontal(classes="row"):
            yield Label("Save in", classes="label")
            yield Input(
                str(self.folder),
                placeholder=str(self.folder),
                suggester=PathSuggester(),
                id="inbox-dest",
            )
        yield VerticalScroll(id="inbox-transfers")
        yield Static(
            "Enter fetches the selected entry into the folder; d dismisses it",
            classes="message",
            markup=False,
        )

    @work(thread=True, exclusive=True, group="inbox", exit_on_error=False)
    def _load(self) -> None:
        items = self.node.inbox()
        self.app.call_from_thread(self._show, items)

    def _show(self, items: list[InboxItem]) -> None:
        self._items = items = items[::-1]  # newest first
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for item in items:
            table.add_row(
                str(item.id),
                when(item.arrived_at),
                shown(item.ring),
                shown(item.nickname) if item.nickname else Text(item.sharer.short()),
                shown(item.name + ("/" if item.format == "collection" else "")),
                size(item.size),
                _state(item),
            )
        if items:
            table.move_cursor(row=min(row, len(items) - 1))
        self.post_message(self.Counted(sum(1 for i in items if i.state == "new")))

    def _selected(self) -> InboxItem | None:
        table = self.query_one(DataTable)
        if not self._items or table.cursor_row < 0:
            self.say("the inbox is empty: nothing was announced to this node yet", error=True)
            return None
        return self._items[min(table.cursor_row, len(self._items) - 1)]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        item = self._selected()
        if item is not None:
            self.fetch(item)

    def fetch(self, item: InboxItem) -> None:
        """Fetches `item` into the "Save in" folder, asking before it replaces anything."""
        if item.state == "withdrawn":
            self.say(f"{safe(item.name)} was withdrawn by its sharer", error=True)
            return
        for view in self.query(TransferView):
            if view.entry == item.id and not (view.finished or view.failed):
                self.say("it is being fetched: see below", error=True)
                return
        typed = self.query_one("#inbox-dest", Input).value.strip()
        folder = (Path(typed).expanduser() if typed else self.folder).absolute()
        if not folder.is_dir():
            self.say(f"{safe(str(folder))} is not a folder: Save in takes one", error=True)
            return
        try:
            ticket = self.node.inbox_ticket(item.id)
        except RingdropError as error:
            self.say(str(error), error=True)
            return

        def start(existing: OnExisting | None) -> None:
            if existing is None:
                self.say("not fetched: the destination is already taken", error=True)
                return
            for old in [v for v in self.query(TransferView) if v.entry == item.id]:
                old.remove()
            view = TransferView(self.node, ticket, folder, existing, entry=item.id)
            self.query_one("#inbox-transfers", VerticalScroll).mount(view)
            view.start()
            self.call_after_refresh(view.focus)
            self.say("fetching; p pauses or resumes it, x cancels it")

        ask_existing(self.app, self.node.export_target(ticket, folder), start)

    def action_dismiss(self) -> None:
        item = self._selected()
        if item is not None:
            self.attempt(lambda: self.node.dismiss(item.id), f"dismissed {safe(item.name)}")

    def on_transfer_view_finished(self, message: TransferView.Finished) -> None:
        self.reload()

    def on_transfer_view_failed(self, message: TransferView.Failed) -> None:
        self.reload()

    def on_transfer_view_cancelled(self, message: TransferView.Cancelled) -> None:
        message.view.remove()
        self.reload()
        if message.deleted:
            self.say("cancelled; what was received so far is deleted")
        else:
            self.say("cancelled; what was verified stays in the store: fetch it again to resume")


def _state(item: InboxItem) -> Text:
    if item.state == "new":
        return Text("new" + (f": waits, {item.note}" if item.note else ""), "bold")
    if item.state == "received" and item.path:
        return Text(f"received: {safe(item.path)}")
    if item.state == "withdrawn":
        return Text("withdrawn", "red")
    return Text(item.state)
