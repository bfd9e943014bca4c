"""Modal dialogs: a one-line prompt (with optional completion), a question answered with one of
a few buttons, and a QR code view."""

from __future__ import annotations

from typing import ClassVar

import segno
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Footer, Input, Label, Static


class Prompt(ModalScreen[str | None]):
    """Asks for one line of text; dismisses with it, or with None on Escape."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, value: str = "", suggester: Suggester | None = None) -> None:
        super().__init__()
        self._question = question
        self._value = value
        self._suggester = suggester

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._question)
            yield Input(value=self._value, suggester=self._suggester, id="answer")
            yield Label("Enter to confirm, Escape to cancel", classes="hint")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class Choice(ModalScreen[str | None]):
    """Asks a question; dismisses with the id of the button chosen, or None on Escape.

    `choices` are (id, label) pairs; the first is the default (focused, so Enter chooses it)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, choices: list[tuple[str, str]]) -> None:
        super().__init__()
        self._question = question
        self._choices = choices

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self._question, markup=False)
            with Horizontal(classes="choices"):
                for i, (ident, label) in enumerate(self._choices):
                    yield Button(label, id=ident, variant="primary" if i == 0 else "default")
            yield Label("Tab moves between answers, Escape cancels", classes="hint")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id)

    def action_cancel(self) -> None:
        self.dismiss(None)


class QrCode(ModalScreen[None]):
    """Shows `text` as a QR code above the text itself; `c` copies the text."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close"),
        Binding("c", "copy", "Copy"),
    ]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self._title = title
        self._text = text

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog qr-dialog"):
            yield Label(self._title)
            yield Static(qr_text(self._text), classes="qr")
            yield Static(self._text, classes="qr-caption")
        yield Footer()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self._text)
        self.notify("copied to the clipboard")

    def action_close(self) -> None:
        self.dismiss(None)


def qr_text(text: str) -> str:
    """`text` as a QR code in half-block characters (two modules per character cell). Upper
    case fits QR's denser alphanumeric mode; tickets and peer ids read in either case."""
    code = segno.make(text.upper(), error="l")
    rows = [[bool(m) for m in row] for row in code.matrix_iter(scale=1, border=2)]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    glyphs = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}
    return "\n".join(
        "".join(glyphs[top, bottom] for top, bottom in zip(upper, lower, strict=True))
        for upper, lower in zip(rows[::2], rows[1::2], strict=True)
    )
