"""The Receive tab: paste a ticket or type a short code, see what it names, choose where it goes,
and follow the transfers (those of tickets survive closing the TUI: see `saved`)."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Static

from ringdrop.display import kind, safe, size
from ringdrop.errors import RingdropError, TicketError
from ringdrop.node import Node, OnExisting, ShortCode, looks_like_code
from ringdrop.ticket import Ticket
from ringdrop.tui.dialogs import Choice
from ringdrop.tui.pane import Pane
from ringdrop.tui.paths import PathSuggester
from ringdrop.tui.saved import SavedTransfer, SavedTransfers
from ringdrop.tui.transfer import TransferView


class ReceivePane(Pane):
    def __init__(self, node: Node, *, id: str | None = None) -> None:
        super().__init__(node, id=id)
        self.saved = SavedTransfers(node.data_dir)
        # Transfers of short codes, and what ends the sender's admission when each is over.
        self._codes: dict[TransferView, asyncio.Event] = {}

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label("Ticket ", classes="label")
            yield Input(placeholder="paste a ticket (rdrop:…) or type a code", id="ticket")
        yield Static("", id="preview", markup=False)
        with Horizontal(classes="row"):
            yield Label("Save in", classes="label")
            yield Input(str(Path.cwd()), suggester=PathSuggester(), id="dest")
            yield Button("Receive", id="start", variant="primary")
        yield VerticalScroll(id="transfers")
        yield Static(
            "Enter starts; on a transfer: p pause/resume, x cancel", classes="message", markup=False
        )

    def on_mount(self) -> None:
        for saved in self.saved.load():
            try:
                ticket = Ticket.decode(saved.ticket)
            except TicketError:
                self.saved.forget(saved.ticket)
                continue
            view = self._add(ticket, Path(saved.dest), saved.existing)
            if saved.paused:
                view.paused = True
            else:
                view.start()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "ticket":
            self.query_one("#preview", Static).update(self.describe(event.value))

    def describe(self, text: str) -> str:
        """What a ticket names, without connecting anywhere."""
        if not text.strip():
            return ""
        if looks_like_code(text):
            try:
                code = ShortCode.parse(text)
            except TicketError as error:
                return str(error)
            return f"a short code: Receive asks its sender (nameplate {code.nameplate}) for it"
        try:
            ticket = Ticket.decode(text)
        except TicketError as error:
            return str(error)
        nickname = self.node.nickname(ticket.peer_id)
        sharer = f"{nickname} ({ticket.peer_id.short()})" if nickname else str(ticket.peer_id)
        name = safe(ticket.name) if ticket.name else "(no name)"
        return f"{name}: a {kind(ticket.format)}, {size(ticket.size)}, shared by {sharer}"

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.receive()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.receive()

    def receive(self) -> None:
        text = self.query_one("#ticket", Input).value
        if looks_like_code(text):
            try:
                code = ShortCode.parse(text)
            except TicketError as error:
                self.say(str(error), error=True)
                return
            self.query_one("#ticket", Input).value = ""
            self._redeem(code, Path(self.query_one("#dest", Input).value or ".").expanduser())
            return
        try:
            ticket = Ticket.decode(text)
        except TicketError as error:
            self.say(str(error), error=True)
            return
        if any(v.ticket == ticket for v in self.query(TransferView)):
            self.say("that ticket is already in the list below", error=True)
            return
        # As `get --dest`: an existing folder receives it under its name, another path is it.
        dest = Path(self.query_one("#dest", Input).value or ".").expanduser().absolute()
        target = self.node.export_target(ticket, dest)
        if not os.path.lexists(target):
            self._start(ticket, dest, "refuse")
            return
        question = f"{safe(str(target))} already exists. Keep both, or overwrite it?"
        choices = [("rename", "Keep both"), ("force", "Overwrite"), ("cancel", "Cancel")]

        def answered(answer: str | None) -> None:
            if answer == "rename":
                self._start(ticket, dest, "rename")
            elif answer == "force":
                self._start(ticket, dest, "force")
            else:
                self.say("not received: the destination is already taken", error=True)

        self.app.push_screen(Choice(question, choices), answered)

    def _start(self, ticket: Ticket, dest: Path, existing: OnExisting) -> None:
        self.saved.put(SavedTransfer(ticket.encode(), str(dest), existing=existing))
        self._add(ticket, dest, existing).start()
        self.query_one("#ticket", Input).value = ""
        self.say("receiving; p pauses or resumes the selected transfer, x cancels it")

    @work(group="codes", exit_on_error=False)
    async def _redeem(self, code: ShortCode, dest: Path) -> None:
        """Trades the code for its ticket and receives it; the sender admits this node until
        the transfer is over (finished or cancelled), when the block below ends."""
        self.say(f"asking the sender of {code.nameplate}-… for its ticket")
        try:
            async with self.node.redeeming_code(code) as ticket:
                over = asyncio.Event()
                view = self._add(ticket, dest.absolute())
                self._codes[view] = over
                view.start()
                self.say("receiving; p pauses or resumes the selected transfer, x cancels it")
                await over.wait()
        except RingdropError as error:
            self.say(str(error), error=True)

    def _over(self, view: TransferView) -> None:
        over = self._codes.pop(view, None)
        if over is not None:
            over.set()

    def _add(self, ticket: Ticket, dest: Path, existing: OnExisting = "refuse") -> TransferView:
        view = TransferView(self.node, ticket, dest, existing)
        self.query_one("#transfers", VerticalScroll).mount(view)
        return view

    def on_transfer_view_finished(self, message: TransferView.Finished) -> None:
        self.saved.forget(message.view.ticket.encode())
        self._over(message.view)

    def on_transfer_view_paused(self, message: TransferView.Paused) -> None:
        view = message.view
        self.saved.put(
            SavedTransfer(view.ticket.encode(), str(view.dest), message.paused, view.existing)
        )

    def on_transfer_view_cancelled(self, message: TransferView.Cancelled) -> None:
        self.saved.forget(message.view.ticket.encode())
        self._over(message.view)
        message.view.remove()
        if message.deleted:
            self.say("cancelled; what was received so far is deleted")
        else:
            self.say("cancelled; what was verified stays in the store: receive it again to resume")
