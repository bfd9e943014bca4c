"""The Shares tab: what this node offers, and sharing, attaching, copying and removing it."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from ringdrop.display import count, duration, kind, safe, size
from ringdrop.errors import RingdropError
from ringdrop.node import CODE_EXPIRES, IGNORE_FILE, CodeOffer, Share
from ringdrop.tui.dialogs import Prompt, QrCode
from ringdrop.tui.pane import Pane, shown
from ringdrop.tui.paths import PathSuggester


class SharesPane(Pane):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "share", "Share"),
        Binding("t", "attach", "Attach"),
        Binding("d", "detach", "Detach"),
        Binding("c", "copy", "Copy"),
        Binding("q", "qr", "QR"),
        Binding("o", "code", "Code"),
        Binding("delete,x", "remove", "Remove"),
    ]

    def compose(self) -> ComposeResult:
        table: DataTable[Text | str] = DataTable(cursor_type="row", id="share-table")
        table.add_columns("name", "kind", "size", "rings", "ticket")
        yield table
        yield Static("", id="share-ticket", markup=False)
        yield Static(
            "a: share a file or folder; o: offer the selected one under a short code",
            classes="message",
            markup=False,
        )

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for share in self.node.shares():
            table.add_row(
                shown(share.name),
                kind(share.format),
                size(share.size),
                ", ".join(share.rings) or "(none: nobody may fetch it)",
                share.ticket.encode()[:18] + "…",
                key=share.root.hex(),
            )
        if table.row_count:
            table.move_cursor(row=min(row, table.row_count - 1))
        self._show_ticket()

    def selected(self) -> Share | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        return next((s for s in self.node.shares() if s.root.hex() == key), None)

    def on_data_table_row_highlighted(self) -> None:
        self._show_ticket()

    def _show_ticket(self) -> None:
        share = self.selected()
        text = f"ticket: {share.ticket.encode()}" if share else "nothing shared yet"
        self.query_one("#share-ticket", Static).update(text)

    def action_share(self) -> None:
        def with_path(text: str | None) -> None:
            if text:
                self.app.push_screen(
                    Prompt(
                        "Rings that may fetch it (comma-separated; `open` lets anyone):",
                        value="open",
                    ),
                    lambda rings: self._share(Path(text).expanduser(), rings),
                )

        self.app.push_screen(
            Prompt("File or folder to share (Tab/→ completes):", suggester=PathSuggester()),
            with_path,
        )

    def _share(self, path: Path, rings: str | None) -> None:
        if rings is None:
            return
        self.say(f"hashing {path} …")
        self._import(path, [r.strip() for r in rings.split(",") if r.strip()])

    @work(thread=True, exit_on_error=False)
    def _import(self, path: Path, rings: list[str]) -> None:
        try:
            share = self.node.share(path, rings=rings)
        except (RingdropError, OSError) as error:
            self.app.call_from_thread(self.say, str(error), error=True)
            return
        self.app.call_from_thread(self.reload)
        left_out = (
            f" (left out {count(share.excluded, 'file')} that {IGNORE_FILE} names)"
            if share.excluded
            else ""
        )
        self.app.call_from_thread(
            self.say, f"shared {shown(share.name)}{left_out}; c copies its ticket"
        )

    def action_attach(self) -> None:
        share = self.selected()
        if share is not None:
            self.app.push_screen(
                Prompt(f"Ring to attach {shown(share.name)} to:"),
                lambda ring: ring and self.attempt(
                    lambda: self.node.attach(share, ring.strip()),
                    f"attached to {ring.strip()}",
                ),
            )  # fmt: skip

    def action_detach(self) -> None:
        share = self.selected()
        if share is not None:
            self.app.push_screen(
                Prompt(
                    f"Ring to detach {shown(share.name)} from:",
                    value=share.rings[0] if share.rings else "",
                ),
                lambda ring: (
                    ring
                    and self.attempt(
                        lambda: self.node.detach(share, ring.strip()),
                        f"detached from {ring.strip()}",
                    )
                ),
            )

    def action_copy(self) -> None:
        share = self.selected()
        if share is not None:
            self.app.copy_to_clipboard(share.ticket.encode())
            self.say("ticket copied to the clipboard")

    def action_qr(self) -> None:
        share = self.selected()
        if share is not None:
            self.app.push_screen(QrCode(f"Ticket for {shown(share.name)}", share.ticket.encode()))

    def action_code(self) -> None:
        share = self.selected()
        if share is not None:
            self._offer(share)

    @work(group="codes", exit_on_error=False)
    async def _offer(self, share: Share) -> None:
        """Offers the share under a short code; this app serves it meanwhile."""
        name = safe(share.name)

        def ready(offer: CodeOffer) -> None:
            self.say(
                f"code {offer.code} for {name}: the other side types it in Receive (or runs "
                f"`ringdrop receive {offer.code}`); it works once, for {duration(CODE_EXPIRES)}"
            )

        try:
            offer = await self.node.offer_code(share, on_ready=ready)
        except RingdropError as error:
            self.say(str(error), error=True)
            return
        assert offer.receiver is not None
        self.say(f"code {offer.code}: {offer.receiver.short()} is finished with {name}")
        self.reload()

    def action_remove(self) -> None:
        share = self.selected()
        if share is not None:
            self.attempt(lambda: self.node.unshare(share.root), f"removed {shown(share.name)}")
