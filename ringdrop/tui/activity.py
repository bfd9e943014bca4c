"""The Activity tab: uploads this node served and every access decision, denials included."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Static

from ringdrop.display import short_hash, size, when
from ringdrop.identity import PeerId
from ringdrop.tui.pane import Pane, shown

LIMIT = 200


class ActivityPane(Pane):
    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Uploads served")
            uploads: DataTable[Text | str] = DataTable(cursor_type="row", id="uploads")
            uploads.add_columns("when", "who", "what", "bytes", "outcome")
            yield uploads
        with Vertical():
            yield Label("Access decisions")
            decisions: DataTable[Text | str] = DataTable(cursor_type="row", id="decisions")
            decisions.add_columns("when", "who", "what", "verdict", "reason")
            yield decisions
        yield Static("", classes="message", markup=False)

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        nicknames = self.node.nicknames()
        names = {s.root: s.name for s in self.node.shares()}

        def who(peer: PeerId) -> Text:
            nickname = nicknames.get(peer)
            return shown(nickname) if nickname else Text(peer.short())

        def what(root: bytes) -> Text:
            name = names.get(root)
            return shown(name) if name else Text(short_hash(root))

        uploads = self.query_one("#uploads", DataTable)
        uploads.clear()
        for u in self.node.uploads(LIMIT):
            outcome = u.outcome if u.via is None else Text.assemble("by member ", who(u.via))
            uploads.add_row(when(u.at), who(u.peer_id), what(u.root), size(u.bytes_sent),
                            outcome)  # fmt: skip
        decisions = self.query_one("#decisions", DataTable)
        decisions.clear()
        for d in self.node.decisions(LIMIT):
            repeated = f" x{d.count}" if d.count > 1 else ""
            verdict = (
                Text("allowed", "green") if d.allowed else Text("denied" + repeated, "bold red")
            )
            decisions.add_row(when(d.at), who(d.peer_id), what(d.root), verdict, Text(d.reason))
