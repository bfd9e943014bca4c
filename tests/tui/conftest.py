"""Fixtures for TUI tests: a node for the app to drive (the sharer comes from tests/conftest.py),
and `until`, which lets the app run until something is true."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from textual.app import App
from textual.pilot import Pilot
from textual.screen import Screen
from textual.widgets import Input

from ringdrop.node import Node
from ringdrop.tui.app import RingdropApp, make_app

SIZE = (80, 24)


@pytest.fixture
def mine(tmp_path: Path) -> Iterator[Node]:
    """The node the app drives."""
    with Node(tmp_path / "mine") as node:
        yield node


@pytest.fixture
def app(mine: Node) -> RingdropApp:
    return make_app(mine, host="127.0.0.1")


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


async def until(pilot: Pilot[None], condition: Callable[[], bool], timeout: float = 60) -> None:
    """Lets the app run until `condition()` holds; fails the test after `timeout` seconds (a
    failsafe against a hang, not a measure: a loaded machine may need most of it).

    An AssertionError, not `pytest.fail`: Textual ends an app whose pilot raised an Exception and
    hands it to the test, but a BaseException (pytest's outcomes) would leave the app running."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"still not true after {timeout} s: {screen_text(pilot.app)}")
        await pilot.pause(0.05)


async def show_tab(pilot: Pilot[None], key: str, pane: str) -> None:
    """Presses `key` and lets the app run until the focus is in the tab's pane `#pane`, so that
    keys pressed from then on reach it: the tab focuses its first control after the switch."""
    await pilot.press(key)
    target = pilot.app.query_one(f"#{pane}")
    await until(
        pilot, lambda: (f := pilot.app.focused) is not None and target in f.ancestors_with_self
    )


async def answer_field(pilot: Pilot[None], dialog: type[Screen[Any]]) -> Input:
    """Lets the app run until `dialog` is on top with its answer field focused, so that keys
    pressed from then on reach the field; returns the field. A pushed screen is composed and
    focused after the push returns."""

    def field() -> Input | None:
        screen = pilot.app.screen
        found = screen.query("#answer") if isinstance(screen, dialog) else None
        return found.first(Input) if found else None

    await until(pilot, lambda: (f := field()) is not None and f.has_focus)
    answer = field()
    assert answer is not None
    return answer


def screen_text(app: App[Any]) -> str:
    """What the screen shows, as plain text: the screenshot `export_screenshot` makes, as text.

    With the screens below a dialog, as the screenshot has them: rendered without them, a
    dialog keeps that rendering, without what is behind it, until it is drawn again."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True, record=True
    )
    update = app.screen._compositor.render_update(full=True, screen_stack=app._background_screens)
    console.print(update)
    return console.export_text()


# Borders, selection marks and bars: the frame around text, not text.
_FRAME = str.maketrans("", "", "█▌▐▎▊▀▄▔▁━╸╺")


def squeezed(app: RingdropApp) -> str:
    """The screen's text without whitespace and without the frame drawn around it (dialog
    borders, the mark before a focused row): for finding text the layout may wrap anywhere."""
    return "".join(screen_text(app).translate(_FRAME).split())
