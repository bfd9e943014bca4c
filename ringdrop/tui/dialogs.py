"""Modal dialogs: a one-line prompt (with optional completion), who may fetch a new share (rings,
or a short code), a question answered with one of a few buttons (and the one asked before a
download replaces anything), and a QR code view."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.suggester import Suggester
from textual.widgets import Button, Footer, Input, Label, Static

from ringdrop.display import safe

if TYPE_CHECKING:
    from textual.app import App

    from ringdrop.node import OnExisting


class Prompt(ModalScreen[str | None]):
    """Asks for one line of text; dismisses with it, or with None on Escape. With a suggester,
    Tab (as →) takes the suggestion shown after the cursor."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("tab", "complete", "Complete", show=False, priority=True),
    ]

    def __init__(
        self,
        question: str,
        value: str = "",
        suggester: Suggester | None = None,
        placeholder: str = "",
    ) -> None:
        super().__init__()
        self._question = question
        self._value = value
        self._suggester = suggester
        self._placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self._question)
            yield Input(
                value=self._value,
                suggester=self._suggester,
                placeholder=self._placeholder,
                id="answer",
            )
            yield Label("Enter to confirm, Escape to cancel", classes="hint")

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Without completion, Tab keeps its usual meaning.
        return self._suggester is not None if action == "complete" else True

    def action_complete(self) -> None:
        answer = self.query_one("#answer", Input)
        answer.cursor_position = len(answer.value)
        answer.action_cursor_right()  # at the end, this takes the suggestion

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(event.value)

    def action_cancel(self) -> None:
        self.dismiss(None)


@dataclass(frozen=True)
class Readers:
    """Who may fetch a new share: the members of `rings` (as typed: comma-separated), or, with
    `code`, the one receiver who types a short code."""

    rings: str = ""
    code: bool = False


class ShareTo(ModalScreen[Readers | None]):
    """Asks who may fetch a new share: Enter takes the rings typed, the "Short code" button (Tab
    reaches it) a code instead; Escape cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, question: str, rings: str, placeholder: str, code_lasts: str) -> None:
        super().__init__()
        self._question = question
        self._rings = rings
        self._placeholder = placeholder
        self._code_lasts = code_lasts

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static(self._question, markup=False)
            yield Input(value=self._rings, placeholder=self._placeholder, id="answer")
            with Horizontal(classes="choices"):
                yield Button("With these rings", id="rings", variant="primary")
                yield Button("Short code instead", id="code")
            yield Static(
                "A short code to read aloud lets one receiver fetch it, once, within "
                f"{self._code_lasts}. Enter shares with the rings; Tab moves to the buttons, "
                "Escape cancels",
                classes="hint",
                markup=False,
            )

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.dismiss(Readers(rings=event.value))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "code":
            self.dismiss(Readers(code=True))
        else:
            self.dismiss(Readers(rings=self.query_one("#answer", Input).value))

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


_MIN_INNER = 50  # columns inside the QR dialog, for the title and the wrapped text


class QrCode(ModalScreen[None]):
    """Shows `text` as a QR code above the text itself; `c` copies the text.

    A QR code cut off at the bottom cannot be scanned: where the terminal is too short for all
    of it, the text goes first, then the title and a module of the quiet zone; where it is too
    short for the code alone, the dialog says how many rows it needs, and shows the text."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "close", "Close"),
        Binding("c", "copy", "Copy"),
    ]

    def __init__(self, title: str, text: str) -> None:
        super().__init__()
        self._title = title
        self._text = text
        self._modules = qr_modules(text)

    def compose(self) -> ComposeResult:
        width, height = self.app.size
        height -= 1  # the footer
        columns, rows = qr_size(self._modules, border=2)
        inner = max(columns, _MIN_INNER)
        caption_rows = math.ceil(len(self._text) / inner)
        # The dialog's border and padding take 4 columns, its border and title 3 rows.
        if rows + caption_rows + 3 <= height and inner + 4 <= width:
            with Vertical(classes="dialog qr-dialog") as dialog:
                dialog.styles.width = inner + 4
                yield Label(self._title)
                yield Static(qr_text(self._text, border=2), classes="qr")
                yield Static(_folded(self._text), classes="qr-caption")
        elif _fits(qr_size(self._modules, border=1), (width - 4, height - 3)):
            with Vertical(classes="dialog qr-dialog") as dialog:
                dialog.styles.width = min(
                    width, max(qr_size(self._modules, border=1)[0], _MIN_INNER) + 4
                )
                yield Label(f"{self._title} (c copies it)")
                yield Static(qr_text(self._text, border=1), classes="qr")
        elif _fits(qr_size(self._modules, border=1), (width, height)):
            yield Static(qr_text(self._text, border=1), classes="qr qr-alone")
        else:
            needs = qr_size(self._modules, border=1)
            with Vertical(classes="dialog qr-dialog"):
                yield Label(self._title)
                yield Static(
                    f"The QR code needs {needs[1]} rows of {needs[0]} columns, and this "
                    f"terminal has {height + 1} rows of {width}: make it larger to show the "
                    "code, or press c to copy the text:",
                    classes="hint",
                )
                yield Static(_folded(self._text), classes="qr-caption")
        yield Footer()

    def on_resize(self, event: events.Resize) -> None:
        self.refresh(recompose=True)

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self._text)
        self.notify("copied to the clipboard")

    def action_close(self) -> None:
        self.dismiss(None)


def _fits(needs: tuple[int, int], room: tuple[int, int]) -> bool:
    return needs[0] <= room[0] and needs[1] <= room[1]


def _folded(text: str) -> Text:
    """Long text without spaces (a ticket) wrapped at the edge rather than cut."""
    return Text(text, overflow="fold")


def qr_modules(text: str) -> int:
    """The QR code's width in modules, without its quiet zone."""
    import segno  # here: it pulls in urllib and xml

    width, _ = segno.make(text.upper(), error="l").symbol_size(border=0)
    return int(width)


def qr_size(modules: int, *, border: int) -> tuple[int, int]:
    """Columns and rows of terminal cells that `qr_text` takes: two modules a row."""
    side = modules + 2 * border
    return side, math.ceil(side / 2)


def qr_text(text: str, border: int = 2) -> str:
    """`text` as a QR code in half-block characters (two modules per character cell), with a
    quiet zone of `border` modules. Upper case fits QR's denser alphanumeric mode; tickets and
    peer ids read in either case."""
    import segno

    code = segno.make(text.upper(), error="l")
    rows = [[bool(m) for m in row] for row in code.matrix_iter(scale=1, border=border)]
    if len(rows) % 2:
        rows.append([False] * len(rows[0]))
    glyphs = {(True, True): "█", (True, False): "▀", (False, True): "▄", (False, False): " "}
    return "\n".join(
        "".join(glyphs[top, bottom] for top, bottom in zip(upper, lower, strict=True))
        for upper, lower in zip(rows[::2], rows[1::2], strict=True)
    )


def ask_existing(
    app: App[None], target: Path, answered: Callable[[OnExisting | None], None]
) -> None:
    """Calls `answered` with how a download may treat `target`: `refuse` (nothing is there),
    or, once the person chose, `rename` (keep both) or `force` (replace it); None to give up."""
    if not os.path.lexists(target):
        answered("refuse")
        return
    what = "folder" if target.is_dir() else "file"
    question = (
        f"{safe(str(target))} already exists. Keep both, or replace it (a folder is replaced "
        "whole, once the new one is complete)?"
    )
    choices = [("rename", "Keep both"), ("force", f"Replace the {what}"), ("cancel", "Cancel")]

    def chosen(answer: str | None) -> None:
        answered("rename" if answer == "rename" else "force" if answer == "force" else None)

    app.push_screen(Choice(question, choices), chosen)
