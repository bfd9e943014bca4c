"""The Shares tab: what this node offers (and what it received), and sharing, attaching,
copying and removing it, and offering it under a short code."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.widgets import DataTable, Static

from ringdrop.display import count, duration, kind, size, when
from ringdrop.errors import RingdropError
from ringdrop.node import CODE_EXPIRES, IGNORE_FILE, OPEN_RING, CodeOffer, Node, Share
from ringdrop.tui.dialogs import Prompt, QrCode, Readers, ShareTo
from ringdrop.tui.pane import Pane, Table, shown
from ringdrop.tui.paths import PathSuggester

# Received content is looked for among this many of the newest receipts.
RECEIPTS = 1000


@dataclass(frozen=True)
class _Loaded:
    shares: list[Share]
    received: set[bytes]


class SharesPane(Pane):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("a", "share", "Share"),
        Binding("t", "attach", "Attach"),
        Binding("d", "detach", "Detach"),
        Binding("c", "copy", "Copy"),
        Binding("q", "qr", "QR"),
        Binding("o", "code", "Short code"),
        Binding("delete,x", "remove", "Remove"),
    ]

    def __init__(self, node: Node, *, id: str | None = None) -> None:
        super().__init__(node, id=id)
        self._shares: list[Share] = []
        self._last_rings = ""
        """The rings of the last share made here, offered for the next (never `open`)."""
        self._offers: dict[bytes, tuple[CodeOffer, float]] = {}
        """The shares offered under a short code now, by root: the offer, and when it ends."""

    def compose(self) -> ComposeResult:
        table = Table(id="share-table")
        table.add_columns("name", "kind", "size", "rings", "ticket")
        yield table
        yield Static("", id="share-ticket")
        yield Static(
            "a: share a file or folder; o: offer the selected one under a short code",
            classes="message",
            markup=False,
        )

    def on_mount(self) -> None:
        self.reload()

    def reload(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="shares", exit_on_error=False)
    def _load(self) -> None:
        # Listing shares decodes every collection (for its size): not on the UI thread.
        node = self.node
        loaded = _Loaded(node.shares(), {r.root for r in node.receipts(RECEIPTS)})
        self.app.call_from_thread(self._show, loaded)

    def _show(self, loaded: _Loaded) -> None:
        self._shares = loaded.shares
        table = self.query_one(DataTable)
        row = table.cursor_row
        table.clear()
        for share in loaded.shares:
            table.add_row(
                shown(share.name),
                kind(share.format),
                size(share.size),
                _readers(share, share.root in loaded.received),
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
        return next((s for s in self._shares if s.root.hex() == key), None)

    def on_data_table_row_highlighted(self) -> None:
        self._show_ticket()

    def _show_ticket(self) -> None:
        share = self.selected()
        # Folded, not cut: the whole ticket on screen, to read or to copy with the mouse.
        text = Text(f"ticket: {share.ticket.encode()}" if share else "nothing shared yet")
        offered = self._offers.get(share.root) if share else None
        if offered is not None:
            offer, until = offered
            text = Text(f"short code: {offer.code} (works once, until {when(until)})\n") + text
        text.overflow = "fold"
        self.query_one("#share-ticket", Static).update(text)

    def action_share(self) -> None:
        def with_path(text: str | None) -> None:
            if text:
                self.app.push_screen(
                    ShareTo(
                        "Rings that may fetch it, comma-separated (`open` lets anyone with the "
                        "ticket); none: nobody yet",
                        rings=self._last_rings,
                        placeholder="no ring: attach one later with t",
                        code_lasts=f"{CODE_EXPIRES / 60:g} minutes",
                    ),
                    lambda readers: self._share(Path(text).expanduser(), readers),
                )

        self.app.push_screen(
            Prompt("File or folder to share (Tab/→ completes):", suggester=PathSuggester()),
            with_path,
        )

    def _share(self, path: Path, readers: Readers | None) -> None:
        if readers is None:
            return
        chosen = [r.strip() for r in readers.rings.split(",") if r.strip()]
        if not readers.code and OPEN_RING not in (r.lower() for r in chosen):
            self._last_rings = ", ".join(chosen)
        self.say(f"hashing {path} …")
        self._import(path, chosen, readers.code)

    @work(thread=True, exit_on_error=False)
    def _import(self, path: Path, rings: list[str], code: bool = False) -> None:
        try:
            share = self.node.share(path, rings=rings)
        except (RingdropError, OSError) as error:
            self.app.call_from_thread(self.say, str(error), error=True)
            return
        self.app.call_from_thread(self.reload)
        if code:  # no ring: the code's receiver is admitted through a ring of its own
            self.app.call_from_thread(self._offer, share)
            return
        left_out = (
            f" (left out {count(share.excluded, 'file')} that {IGNORE_FILE} names)"
            if share.excluded
            else ""
        )
        readers = "" if share.rings else "; nobody may fetch it until t attaches a ring"
        self.app.call_from_thread(
            self.say, f"shared {shown(share.name)}{left_out}{readers}; c copies its ticket"
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
        if share is None:
            return
        offered = self._offers.get(share.root)
        if offered is not None:
            self.say(f"{shown(share.name)} is offered under the code {offered[0].code} already")
            return
        self._offer(share)

    @work(group="codes", exit_on_error=False)
    async def _offer(self, share: Share) -> None:
        """Offers the share under a new short code until its receiver is done with it (this
        app serves it meanwhile); the code is shown while it can be used."""
        name = shown(share.name)
        self.say(f"making a short code for {name} …")

        def ready(offer: CodeOffer) -> None:
            self._offers[share.root] = (offer, time.time() + CODE_EXPIRES)
            self._show_ticket()
            self.say(
                f"code {offer.code} for {name}: the other side types it in Receive (or runs "
                f"`ringdrop receive {offer.code}`); it works once, for {duration(CODE_EXPIRES)}"
            )

        try:
            offer = await self.node.offer_code(share, on_ready=ready)
        except RingdropError as error:
            self._offer_ended(share)
            self.say(str(error), error=True)
            return
        self._offer_ended(share)
        assert offer.receiver is not None
        self.say(f"code {offer.code}: {offer.receiver.short()} is finished with {name}")

    def _offer_ended(self, share: Share) -> None:
        # Its one-time ring is gone: from the rings column too, and the code from the screen.
        self._offers.pop(share.root, None)
        self.reload()

    def action_remove(self) -> None:
        share = self.selected()
        if share is not None:
            self.attempt(lambda: self.node.unshare(share.root), f"removed {shown(share.name)}")


def _readers(share: Share, received: bool) -> str:
    """Who may fetch it, in the rings column; received content shared with nobody says so."""
    if share.rings:
        return ", ".join(share.rings)
    return "(received; not shared)" if received else "(none: nobody may fetch it)"
