"""The ringdrop TUI: the App, which serves the node while it is open, and `make_app`."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import App, ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Footer, TabbedContent, TabPane

from ringdrop.display import count, safe, size
from ringdrop.errors import RingdropError
from ringdrop.node import NewsEvent, Node, ServeEvent
from ringdrop.tui.activity import ActivityPane
from ringdrop.tui.dialogs import Choice, QrCode
from ringdrop.tui.inbox import InboxPane
from ringdrop.tui.pane import Pane
from ringdrop.tui.receive import ReceivePane
from ringdrop.tui.rings import PeersPane, RingsPane
from ringdrop.tui.shares import SharesPane
from ringdrop.tui.status import NodeStatus
from ringdrop.tui.transfer import TransferView

TABS = (("shares", "Shares"), ("receive", "Receive"), ("rings", "Rings"),
        ("peers", "Peers"), ("activity", "Activity"), ("inbox", "Inbox"))  # fmt: skip


class RingdropApp(App[None]):
    CSS_PATH = Path(__file__).with_name("app.tcss")
    TITLE = "ringdrop"
    BINDINGS: ClassVar[list[BindingType]] = [
        *(Binding(f"f{n},{n}", f"show('{tab}')", title, show=False)
          for n, (tab, title) in enumerate(TABS, 1)),
        Binding("i", "identity", "My id"),
        Binding("ctrl+q", "request_quit", "Quit", priority=True),
    ]  # fmt: skip

    class Served(Message):
        """The server answered a request."""

        def __init__(self, event: ServeEvent) -> None:
            super().__init__()
            self.event = event

    class News(Message):
        """Ring news: something arrived in the inbox, was withdrawn, or was fetched."""

        def __init__(self, event: NewsEvent) -> None:
            super().__init__()
            self.event = event

    def __init__(self, node: Node, *, host: str = "::") -> None:
        super().__init__()
        self.node = node
        self.host = host

    def compose(self) -> ComposeResult:
        yield NodeStatus(self.node)
        panes = (SharesPane, ReceivePane, RingsPane, PeersPane, ActivityPane, InboxPane)
        with TabbedContent():
            for (tab, title), pane in zip(TABS, panes, strict=True):
                with TabPane(f"{title} F{TABS.index((tab, title)) + 1}", id=tab):
                    yield pane(self.node, id=f"{tab}-pane")
        yield Footer()

    def on_mount(self) -> None:
        if self.node.created:
            self.notify(
                f"Created the data directory {self.node.data_dir}: this node's peer id is "
                f"{self.node.peer_id}",
                timeout=15,
            )
        self.serve()
        self.query_one(SharesPane).enter()

    @work(group="serve", exit_on_error=False)
    async def serve(self) -> None:
        status = self.query_one(NodeStatus)

        def ready(port: int) -> None:
            status.server = f"serving on port {port}"

        def relay(state: str) -> None:
            status.relay = state

        try:
            await self.node.serve(
                on_event=lambda event: self.post_message(self.Served(event)),
                on_news=lambda event: self.post_message(self.News(event)),
                ready=ready,
                host=self.host,
                on_relay=relay,
            )
        except (RingdropError, OSError) as error:
            status.server = f"not serving: {error}"

    def on_ringdrop_app_served(self, message: RingdropApp.Served) -> None:
        self.query_one(ActivityPane).changed()

    def on_ringdrop_app_news(self, message: RingdropApp.News) -> None:
        event = message.event
        self.query_one(InboxPane).changed()
        nickname = self.node.nickname(event.peer)
        who = safe(nickname) if nickname else f"{event.peer.short()}…"
        name = safe(event.name or "")
        if event.kind == "arrived":
            self.notify(
                f"{name} ({size(event.size)}) from {who}, in the ring {safe(event.ring)}",
                title="Inbox",
            )
        elif event.kind == "fetched":
            self.notify(f"{name} saved in {safe(event.path or '')}", title="Followed ring")
        elif event.kind == "waiting":
            self.notify(f"{name} waits in the inbox: {safe(event.reason or '')}", title="Inbox")

    def on_inbox_pane_counted(self, message: InboxPane.Counted) -> None:
        number = TABS.index(("inbox", "Inbox")) + 1
        new = f" {message.new}" if message.new else ""
        self.query_one(TabbedContent).get_tab("inbox").label = f"Inbox{new} F{number}"

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        event.pane.query_one(Pane).enter()

    def action_show(self, tab: str) -> None:
        self.query_one(TabbedContent).active = tab

    def action_request_quit(self) -> None:
        """Quits, asking first while transfers are running (they go on next time)."""
        running = [v for v in self.query(TransferView) if not (v.finished or v.failed or v.paused)]
        if not running:
            self.exit()
            return
        question = (
            f"{count(len(running), 'transfer')} still running. Quit anyway? What was verified "
            "is kept, and they go on when ringdrop opens again; this node stops serving."
        )

        def answered(answer: str | None) -> None:
            if answer == "quit":
                self.exit()

        self.push_screen(Choice(question, [("stay", "Stay"), ("quit", "Quit")]), answered)

    def action_identity(self) -> None:
        self.push_screen(
            QrCode("This node's peer id: a sharer adds it to a ring", str(self.node.peer_id))
        )


def make_app(node: Node, *, host: str = "::") -> RingdropApp:
    """The TUI driving `node`; it serves on `host` while it runs."""
    return RingdropApp(node, host=host)
