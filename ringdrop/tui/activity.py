"""The Activity tab: what this node received, the uploads it served, and every access decision,
denials included.

Loading it reads the logs and the shares (which decodes every collection for its size), so it
runs on a worker thread; a server answering many requests asks for it at most twice a second.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Label, Static

from ringdrop.display import safe, short_hash, size, when
from ringdrop.identity import PeerId
from ringdrop.node import AccessLogEntry, Receipt, Upload
from ringdrop.tui.pane import LoadedPane, Table, shown

LIMIT = 200


@dataclass(frozen=True)
class _Loaded:
    nicknames: dict[PeerId, str]
    names: dict[bytes, str]
    receipts: list[Receipt]
    uploads: list[Upload]
    decisions: list[AccessLogEntry]


class ActivityPane(LoadedPane):
    # A burst of served requests reloads the pane once, this long after the first of them.
    DEBOUNCE = 0.5

    def compose(self) -> ComposeResult:
        with Vertical():
            yield Label("Received")
            received = Table(id="received")
            received.add_columns("when", "from", "what", "size", "saved as")
            yield received
        with Vertical():
            yield Label("Uploads served")
            uploads = Table(id="uploads")
            uploads.add_columns("when", "who", "what", "bytes", "outcome")
            yield uploads
        with Vertical():
            yield Label("Access decisions")
            decisions = Table(id="decisions")
            decisions.add_columns("when", "who", "what", "verdict", "reason")
            yield decisions
        yield Static("", classes="message", markup=False)

    @work(thread=True, exclusive=True, group="activity", exit_on_error=False)
    def _load(self) -> None:
        node = self.node
        loaded = _Loaded(
            nicknames=node.nicknames(),
            names={s.root: s.name for s in node.shares()},
            receipts=node.receipts(LIMIT),
            uploads=node.uploads(LIMIT),
            decisions=node.decisions(LIMIT),
        )
        self.app.call_from_thread(self._show, loaded)

    def _show(self, loaded: _Loaded) -> None:
        def who(peer: PeerId) -> Text:
            nickname = loaded.nicknames.get(peer)
            return shown(nickname) if nickname else Text(peer.short())

        def what(root: bytes) -> Text:
            name = loaded.names.get(root)
            return shown(name) if name else Text(short_hash(root))

        received = self.query_one("#received", DataTable)
        received.clear()
        for r in loaded.receipts:
            received.add_row(when(r.at), who(r.peer_id), shown(r.name), size(r.size),
                             Text(safe(str(r.path))))  # fmt: skip
        uploads = self.query_one("#uploads", DataTable)
        uploads.clear()
        for u in loaded.uploads:
            outcome = u.outcome if u.via is None else Text.assemble("by member ", who(u.via))
            uploads.add_row(when(u.at), who(u.peer_id), what(u.root), size(u.bytes_sent),
                            outcome)  # fmt: skip
        decisions = self.query_one("#decisions", DataTable)
        decisions.clear()
        for d in loaded.decisions:
            repeated = f" x{d.count}" if d.count > 1 else ""
            verdict = (
                Text("allowed", "green") if d.allowed else Text("denied" + repeated, "bold red")
            )
            decisions.add_row(when(d.at), who(d.peer_id), what(d.root), verdict, Text(d.reason))
