"""Each main screen at 80x24: what it shows and the bindings its footer offers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringdrop.node import Node
from ringdrop.tui.app import RingdropApp, make_app
from tests.relay_server import IrohRelay, require_iroh_relay
from tests.tui.conftest import SIZE, screen_text, until


async def test_the_status_bar_shows_the_peer_id_addresses_and_server(
    app: RingdropApp, mine: Node
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: "serving on port" in screen_text(app))
        text = screen_text(app)
    assert str(mine.peer_id) in text
    assert f"127.0.0.1:{mine.config.port}" in text


async def test_the_status_bar_says_whether_the_home_relay_is_connected(tmp_path: Path) -> None:
    with (
        IrohRelay(require_iroh_relay(), tmp_path / "relay") as relay,
        Node(tmp_path / "relayed", relays=(relay.url,), stun=()) as node,
    ):
        app = make_app(node, host="127.0.0.1")
        async with app.run_test(size=(120, 24)) as pilot:
            await until(pilot, lambda: "connected" in screen_text(app), timeout=60)
            text = screen_text(app)
            relay.stop()
            await until(pilot, lambda: "disconnected" in screen_text(app), timeout=60)
    assert f"relay {relay.url}/ connected" in text


@pytest.mark.parametrize(
    ("key", "shows"),
    [
        ("1", ["name  kind  size  rings", "a Share", "c Copy", "q QR", "nothing shared yet"]),
        ("2", ["Ticket", "Save in", "Receive", "paste a ticket"]),
        ("3", ["ring  members  content", "n New", "m Add member", "open  anyone"]),
        ("4", ["peer id  nickname  grants", "n Add", "g Catalog grant"]),
        ("5", ["Uploads served", "Access decisions", "verdict"]),
    ],
)
async def test_each_tab_fits_80x24_with_its_bindings(
    app: RingdropApp, key: str, shows: list[str]
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press(key)
        await pilot.pause()
        text = screen_text(app)
    for expected in shows:
        assert expected in text, f"{expected!r} not on screen:\n{text}"
    assert len(text.splitlines()) <= SIZE[1]


async def test_i_shows_the_peer_id_as_a_qr_code(app: RingdropApp, mine: Node) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await pilot.pause()
        text = screen_text(app)
        await pilot.press("escape")
        await pilot.pause()
        closed = screen_text(app)
    assert "▀" in text
    assert "This node's peer id" in text
    assert "▀" not in closed


async def test_q_shows_the_selected_shares_ticket_as_a_qr_code(
    app: RingdropApp, mine: Node, tmp_path: Path
) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    mine.share(path, open=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("q")
        await pilot.pause()
        text = screen_text(app)
    assert "Ticket for notes.txt" in text
    assert "▀" in text
