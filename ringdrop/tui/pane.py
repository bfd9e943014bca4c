"""What every tab's pane shares: the node it drives, a reload, and a message line in place."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import ClassVar, TypeVar

from rich.text import Text
from textual.containers import Vertical
from textual.timer import Timer
from textual.widgets import DataTable, Static
from textual.widgets.data_table import RowKey

from ringdrop.display import safe
from ringdrop.errors import RingdropError
from ringdrop.node import Node

T = TypeVar("T")


class Pane(Vertical):
    """A tab's content. `reload` re-reads the node; `attempt` runs one user action and shows its
    error (or what it did) on the pane's message line instead of raising."""

    def __init__(self, node: Node, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.node = node

    def reload(self) -> None:
        """Re-reads what the pane shows from the node."""

    def enter(self) -> None:
        """Brings the pane up to date and focuses its first control, so its keys work."""
        self.reload()
        focusable = [w for w in self.query("*") if w.focusable]
        if focusable:
            focusable[0].focus()

    def say(self, text: str, *, error: bool = False) -> None:
        message = self.query_one(".message", Static)
        message.update(text)
        message.set_class(error, "error")

    def attempt(self, action: Callable[[], T], done: str | None = None) -> T | None:
        try:
            result = action()
        except RingdropError as error:
            self.say(str(error), error=True)
            return None
        if done is not None:
            self.say(done)
        self.reload()
        return result


class Table(DataTable[Text | str]):
    """A row-cursor DataTable whose lines are drawn again once its new rows are measured.

    Textual measures rows added since the last idle moment then, and widens the columns; but
    lines the screen drew before that moment stay cached under the same key, so the table kept
    its old, narrower columns until its next change (a real race: the TUI tests caught it about
    one run in eight). Clearing the table's render caches once the widths are known fixes it."""

    def __init__(self, *, id: str) -> None:
        super().__init__(cursor_type="row", id=id)

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        super()._update_dimensions(new_rows)
        self._clear_caches()


class LoadedPane(Pane):
    """A pane that reads the node in `_load`, a worker, and shows what it read from there:
    loaded when mounted and on `reload`, and once for a whole burst of `changed` calls,
    `DEBOUNCE` seconds after the first of them."""

    DEBOUNCE: ClassVar[float]
    _pending: Timer | None = None

    def on_mount(self) -> None:
        self.reload()

    def changed(self) -> None:
        """What the pane shows changed: reload soon, once for a whole burst."""
        if self._pending is None:
            self._pending = self.set_timer(self.DEBOUNCE, self._reload_now)

    def _reload_now(self) -> None:
        self._pending = None
        self.reload()

    def reload(self) -> None:
        self._load()

    def _load(self) -> object:
        """Reads the node off the UI thread (a `@work(thread=True)` worker) and shows what it
        read."""
        raise NotImplementedError


def shown(text: str | None) -> Text:
    """A name that may come from elsewhere, as text with no markup and no control characters."""
    return Text(safe(text) if text else "(no name)")
