"""One download as a widget: its progress bar, bytes, rate, ETA, files in flight and
connection state; pause, resume and cancel (which asks whether to keep what was verified)."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import ProgressBar, Static

from ringdrop.display import clock, rate, safe, size
from ringdrop.errors import RingdropError
from ringdrop.node import Node, OnExisting, Progress, is_text
from ringdrop.ticket import Ticket
from ringdrop.tui.dialogs import Choice


class TransferView(Static, can_focus=True):
    """Runs `node.get` in a worker while not paused; reports how it ends with a message."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("p", "toggle_pause", "Pause/resume/retry"),
        Binding("x", "cancel", "Cancel/clear"),
    ]

    class Progressed(Message):
        def __init__(self, progress: Progress) -> None:
            super().__init__()
            self.progress = progress

    class Finished(Message):
        def __init__(self, view: TransferView, done: Path | str) -> None:
            super().__init__()
            self.view = view
            self.done = done
            """Where it was saved; or, for a text, the text."""

    class Failed(Message):
        def __init__(self, view: TransferView, reason: str) -> None:
            super().__init__()
            self.view = view
            self.reason = reason

    class Paused(Message):
        def __init__(self, view: TransferView, paused: bool) -> None:
            super().__init__()
            self.view = view
            self.paused = paused

    class Cancelled(Message):
        def __init__(self, view: TransferView, deleted: bool) -> None:
            super().__init__()
            self.view = view
            self.deleted = deleted
            """Whether what was verified was deleted (else it stays, to resume later)."""

    def __init__(
        self,
        node: Node,
        ticket: Ticket,
        dest: Path,
        existing: OnExisting = "refuse",
        *,
        done: Path | str | None = None,
        entry: int | None = None,
    ) -> None:
        """`dest` is the folder it goes into; `done`, where a finished one went (or, for a
        text, the text); `entry`, the inbox entry it fetches (whose state it then keeps)."""
        super().__init__(classes="transfer")
        self.node = node
        self.ticket = ticket
        self.dest = dest
        self.existing: OnExisting = existing
        self.paused = False
        self.finished = done is not None
        self.failed = False
        self.progress: Progress | None = None
        self.entry = entry
        self._done = done

    def compose(self) -> ComposeResult:
        yield Static(self._headline("waiting"), classes="headline", markup=False)
        yield ProgressBar(total=self.ticket.size, show_eta=False)
        yield Static("", classes="detail", markup=False)

    def on_mount(self) -> None:
        if self._done is not None:
            self._show_done(self._done)

    def start(self) -> None:
        self.paused = self.failed = False
        self.remove_class("failed")
        self.run_worker(self._download(), group="download", exclusive=True, exit_on_error=False)

    async def _download(self) -> None:
        def progress(p: Progress) -> None:
            self.post_message(self.Progressed(p))

        done: Path | str
        try:
            if is_text(self.ticket):  # sent with `send --text`: shown, not saved
                done = await self.node.get_text(self.ticket, progress=progress)
            elif self.entry is not None:
                received = await self.node.fetch_news(
                    self.entry, self.dest, existing=self.existing, progress=progress
                )
                done = received.path
            else:
                received = await self.node.get(
                    self.ticket, self.dest, existing=self.existing, progress=progress
                )
                done = received.path
        except asyncio.CancelledError:
            raise
        except RingdropError as error:
            lines = [str(error), *getattr(error, "__notes__", ())]  # the cause, then the details
            self.post_message(self.Failed(self, "\n".join(lines)))
        except Exception as error:  # never let a surprise reach the terminal
            self.post_message(self.Failed(self, f"{type(error).__name__}: {error}"))
        else:
            self.post_message(self.Finished(self, done))

    def on_transfer_view_progressed(self, message: Progressed) -> None:
        self.progress = progress = message.progress
        bar = self.query_one(ProgressBar)
        bar.update(total=progress.total, progress=progress.done)
        state: str = progress.state
        if state in ("connecting", "retrying") and progress.attempt > 1:
            state = f"{state}, attempt {progress.attempt} of {progress.attempts}"
        self._set(self._headline(state), self._detail(progress, paused=self.paused))

    def on_transfer_view_finished(self, message: Finished) -> None:
        self._show_done(message.done)

    def _show_done(self, done: Path | str) -> None:
        self.finished = True
        bar = self.query_one(ProgressBar)
        bar.update(total=bar.total or 1, progress=bar.total or 1)
        if isinstance(done, Path):
            self._set(self._headline("done"), f"saved as {safe(str(done))}")
        else:
            lines = "\n  ".join(safe(line) for line in done.split("\n"))
            self._set(self._headline("done"), f"message:\n  {lines}")

    def on_transfer_view_failed(self, message: Failed) -> None:
        self.failed = True
        self._set(self._headline("failed"), message.reason)
        self.add_class("failed")

    def action_toggle_pause(self) -> None:
        if self.finished:
            return
        if self.paused or self.failed:
            self.start()
            self._set(self._headline("resuming"), None)
        else:
            self.paused = True
            self.workers.cancel_group(self, "download")
            detail = None if self.progress is None else self._detail(self.progress, paused=True)
            self._set(self._headline("paused"), detail)
        self.post_message(self.Paused(self, self.paused))

    def action_cancel(self) -> None:
        if self.finished:
            self.post_message(self.Cancelled(self, deleted=False))
            return
        name = safe(self.ticket.name) if self.ticket.name else "this transfer"
        choices = [
            ("keep", "Keep what arrived"),
            ("delete", "Delete it"),
            ("back", "Go on receiving"),
        ]

        def answered(answer: str | None) -> None:
            if answer in ("keep", "delete"):
                self.run_worker(self._cancel(delete=answer == "delete"), group="cancel")

        question = (
            f"Cancel receiving {name}? What was verified can stay in the store, so that "
            "receiving it again later resumes where it stopped, or be deleted now."
        )
        self.app.push_screen(Choice(question, choices), answered)

    async def _cancel(self, *, delete: bool) -> None:
        for worker in self.workers.cancel_group(self, "download"):
            with contextlib.suppress(Exception):
                await worker.wait()
        if delete:
            try:
                await asyncio.to_thread(self.node.discard_download, self.ticket)
            except RingdropError as error:
                self.app.notify(f"could not delete it: {error}", severity="error")
        self.post_message(self.Cancelled(self, deleted=delete))

    def _set(self, headline: str, detail: str | None) -> None:
        self.query_one(".headline", Static).update(headline)
        if detail is not None:
            self.query_one(".detail", Static).update(detail)

    def _headline(self, state: str) -> str:
        if is_text(self.ticket):
            return f"a text from {self.ticket.peer_id.short()}…  [{state}]"
        name = safe(self.ticket.name) if self.ticket.name else self.ticket.content_hash.hex()[:16]
        return f"{name}  [{state}]  → {safe(str(self.dest))}"

    @staticmethod
    def _detail(progress: Progress, *, paused: bool) -> str:
        """Amounts, and while bytes are moving the rate and the time left."""
        parts = [f"{size(progress.done)} of {size(progress.total)}"]
        if progress.state == "transferring" and not paused:
            parts.append(rate(progress.rate))
            if progress.eta is not None:
                parts.append(f"ETA {clock(progress.eta)}")
        if progress.files_total > 1:
            parts.append(f"files {progress.files_done}/{progress.files_total}")
        if progress.address:
            parts.append(f"via {progress.address}")
        line = "  ".join(parts)
        if len(progress.providers) > 1:
            line += "\n  from " + ", ".join(
                f"{peer[:8]}… {size(done)}" for peer, done in progress.providers
            )
        for file in progress.active[:2]:
            line += f"\n  {safe(file.name)}: {size(file.done)} of {size(file.total)}"
        if progress.message:
            line += f"\n  {safe(progress.message)}"
        return line
