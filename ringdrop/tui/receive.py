"""The Receive tab: paste a ticket or type a short code, see what it names, choose the folder it
goes into, and follow the transfers (which survive closing the TUI, and stay listed once finished:
see `saved`; an unfinished one of a short code does not: the code is spent, and the sender stops
admitting this node when the TUI closes)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Input, Label, Static

from ringdrop.display import kind, safe, size
from ringdrop.errors import RingdropError, TicketError
from ringdrop.node import Node, OnExisting, ShortCode, is_text, looks_like_code
from ringdrop.ticket import Ticket
from ringdrop.tui.dialogs import Choice, ask_existing
from ringdrop.tui.pane import Pane
from ringdrop.tui.paths import PathSuggester
from ringdrop.tui.saved import SavedTransfer, SavedTransfers
from ringdrop.tui.transfer import TransferView


def default_folder() -> Path:
    """Where "Save in" points unless changed: ~/Downloads if there is one, else the folder the
    TUI was started in."""
    downloads = Path.home() / "Downloads"
    return downloads if downloads.is_dir() else Path.cwd()


class ReceivePane(Pane):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "clear_finished", "Clear finished"),
    ]

    def __init__(self, node: Node, *, id: str | None = None) -> None:
        super().__init__(node, id=id)
        self.saved = SavedTransfers(node.data_dir)
        self.folder = default_folder()
        # The transfers of short codes, each with what ends the sender's admission of this node
        # (the redeeming block of `_redeem`) once it is over.
        self._codes: dict[TransferView, asyncio.Event] = {}

    def compose(self) -> ComposeResult:
        with Horizontal(classes="row"):
            yield Label("Ticket ", classes="label")
            yield Input(placeholder="paste a ticket (rdrop:…) or type a short code", id="ticket")
        yield Static("", id="preview", markup=False)
        with Horizontal(classes="row"):
            yield Label("Save in", classes="label")
            yield Input(
                str(self.folder), placeholder=str(self.folder), suggester=PathSuggester(), id="dest"
            )
            yield Button("Receive", id="start", variant="primary")
        yield VerticalScroll(id="transfers")
        yield Static(
            "Enter receives into the folder; on a transfer: p pause/resume, x cancel/clear",
            classes="message",
            markup=False,
        )

    def on_mount(self) -> None:
        for saved in self.saved.load():
            try:
                ticket = Ticket.decode(saved.ticket)
            except TicketError:
                self.saved.forget(saved.ticket)
                continue
            done: Path | str | None = saved.text
            if saved.saved_as is not None:
                done = Path(saved.saved_as)
            view = self._add(ticket, Path(saved.dest), saved.existing, done=done)
            if saved.paused:
                view.paused = True
            elif done is None:
                view.start()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "ticket":
            self.query_one("#preview", Static).update(self.describe(event.value))

    def describe(self, text: str) -> str:
        """What a ticket names, without connecting anywhere; whether a short code is one."""
        if not text.strip():
            return ""
        if looks_like_code(text):
            try:
                code = ShortCode.parse(text)
            except TicketError as error:
                return str(error)
            return f"a short code: Enter asks its sender (on nameplate {code.nameplate}) for it"
        try:
            ticket = Ticket.decode(text)
        except TicketError as error:
            return str(error)
        nickname = self.node.nickname(ticket.peer_id)
        sharer = f"{nickname} ({ticket.peer_id.short()})" if nickname else str(ticket.peer_id)
        if is_text(ticket):
            return f"a text ({size(ticket.size)}) from {sharer}: Enter shows it"
        name = safe(ticket.name) if ticket.name else "(no name)"
        return f"{name}: a {kind(ticket.format)}, {size(ticket.size)}, shared by {sharer}"

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.receive()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.receive()

    def receive(self) -> None:
        """Receives the ticket (or what a short code's sender offers) into the "Save in"
        folder, asking before it creates the folder and before it replaces anything."""
        text = self.query_one("#ticket", Input).value
        code: ShortCode | None = None
        ticket: Ticket | None = None
        try:
            # A mistyped code is refused here, before it is sent: a wrong one ends it for good.
            code = ShortCode.parse(text) if looks_like_code(text) else None
            ticket = None if code is not None else Ticket.decode(text)
        except TicketError as error:
            self.say(str(error), error=True)
            return
        for view in self.query(TransferView):
            if view.ticket == ticket and not view.finished:
                self.say("that ticket is already in the list below", error=True)
                return
        typed = self.query_one("#dest", Input).value.strip()
        folder = (Path(typed).expanduser() if typed else self.folder).absolute()
        if ticket is not None and is_text(ticket):
            self._start(ticket, folder, "refuse")  # shown here: nothing is saved
            return
        if folder.exists() and not folder.is_dir():
            self.say(f"{safe(str(folder))} is a file: Save in takes a folder", error=True)
            return
        if folder.is_dir():
            self._ticket_into(code, ticket, folder)
            return

        def answered(answer: str | None) -> None:
            if answer != "create":
                self.say("not received: the folder does not exist", error=True)
                return
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except OSError as error:
                self.say(f"cannot create {safe(str(folder))}: {error.strerror}", error=True)
                return
            self._ticket_into(code, ticket, folder)

        question = f"The folder {safe(str(folder))} does not exist. Create it?"
        self.app.push_screen(Choice(question, [("create", "Create it"), ("cancel", "Cancel")]),
                             answered)  # fmt: skip

    def _ticket_into(self, code: ShortCode | None, ticket: Ticket | None, folder: Path) -> None:
        if code is not None:
            self.query_one("#ticket", Input).value = ""
            self._redeem(code, folder)
        elif ticket is not None:
            self._into(ticket, folder)

    @work(group="codes", exit_on_error=False)
    async def _redeem(self, code: ShortCode, folder: Path) -> None:
        """Trades the code for its sender's ticket and receives it, as a ticket pasted here;
        the sender admits this node until the transfer is over (finished, cancelled, or not
        started after all), when the block below ends and the sender is told so."""
        self.say(f"asking the sender on nameplate {code.nameplate} for its ticket …")
        try:
            async with self.node.redeeming_code(code) as ticket:
                over = asyncio.Event()
                if is_text(ticket):
                    self._start(ticket, folder, "refuse", over)
                else:
                    self._into(ticket, folder, over)
                await over.wait()
        except RingdropError as error:
            self.say(str(error), error=True)

    def _into(self, ticket: Ticket, folder: Path, over: asyncio.Event | None = None) -> None:
        def answered(existing: OnExisting | None) -> None:
            if existing is None:
                self.say("not received: the destination is already taken", error=True)
                if over is not None:
                    over.set()
            else:
                self._start(ticket, folder, existing, over)

        ask_existing(self.app, self.node.export_target(ticket, folder), answered)

    def _start(
        self, ticket: Ticket, folder: Path, existing: OnExisting, over: asyncio.Event | None = None
    ) -> None:
        """Starts the transfer; `over`, for a short code's, is set when it is over."""
        for old in [v for v in self.query(TransferView) if v.ticket == ticket]:
            old.remove()  # finished before: the new one takes its place in the list
        if over is None:  # a code's ticket admits this node only while the TUI runs
            self.saved.put(SavedTransfer(ticket.encode(), str(folder), existing=existing))
        view = self._add(ticket, folder, existing)
        if over is not None:
            self._codes[view] = over
        view.start()
        if over is None:  # a code's field was cleared when it was sent
            self.query_one("#ticket", Input).value = ""
        # Focus on the new transfer, so that its keys (p, x) work at once.
        self.call_after_refresh(view.focus)
        self.say("receiving; p pauses or resumes the selected transfer, x cancels it")

    def _add(
        self,
        ticket: Ticket,
        folder: Path,
        existing: OnExisting = "refuse",
        *,
        done: Path | str | None = None,
    ) -> TransferView:
        view = TransferView(self.node, ticket, folder, existing, done=done)
        self.query_one("#transfers", VerticalScroll).mount(view)
        return view

    def on_transfer_view_finished(self, message: TransferView.Finished) -> None:
        view = message.view
        self.saved.put(
            SavedTransfer(
                view.ticket.encode(),
                str(view.dest),
                existing=view.existing,
                saved_as=str(message.done) if isinstance(message.done, Path) else None,
                text=message.done if isinstance(message.done, str) else None,
            )
        )
        self._over(view)

    def _over(self, view: TransferView) -> None:
        over = self._codes.pop(view, None)
        if over is not None:
            over.set()

    def on_transfer_view_paused(self, message: TransferView.Paused) -> None:
        view = message.view
        if view in self._codes:
            return  # not kept for next time: the code's sender admits this node only meanwhile
        self.saved.put(
            SavedTransfer(view.ticket.encode(), str(view.dest), message.paused, view.existing)
        )

    def on_transfer_view_cancelled(self, message: TransferView.Cancelled) -> None:
        self.saved.forget(message.view.ticket.encode())
        self._over(message.view)
        finished = message.view.finished
        message.view.remove()
        if finished:
            self.say("cleared from the list; what was received stays where it was saved")
        elif message.deleted:
            self.say("cancelled; what was received so far is deleted")
        else:
            self.say("cancelled; what was verified stays in the store: receive it again to resume")

    def action_clear_finished(self) -> None:
        done = [v for v in self.query(TransferView) if v.finished]
        for view in done:
            self.saved.forget(view.ticket.encode())
            view.remove()
        self.say(f"cleared {len(done)} finished from the list" if done else "nothing finished")
