"""Fixtures for TUI tests: a node for the app to drive (the sharer comes from tests/conftest.py),
and `until`, which lets the app run until something is true."""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console
from textual.pilot import Pilot

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


async def until(pilot: Pilot[None], condition: Callable[[], bool], timeout: float = 15) -> None:
    """Lets the app run until `condition()` holds; fails the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"still not true after {timeout} s")
        await pilot.pause(0.05)


def screen_text(app: RingdropApp) -> str:
    """What the screen shows, as plain text: the screenshot `export_screenshot` makes, as text."""
    width, height = app.size
    console = Console(
        width=width, height=height, file=io.StringIO(), force_terminal=True, record=True
    )
    console.print(app.screen._compositor.render_update(full=True))
    return console.export_text()


# Borders, selection marks and bars: the frame around text, not text.
_FRAME = str.maketrans("", "", "█▌▐▎▊▀▄▔▁━╸╺")


def squeezed(app: RingdropApp) -> str:
    """The screen's text without whitespace and without the frame drawn around it (dialog
    borders, the mark before a focused row): for finding text the layout may wrap anywhere."""
    return "".join(screen_text(app).translate(_FRAME).split())
