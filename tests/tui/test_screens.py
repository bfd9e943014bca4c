"""Each main screen at 80x24: what it shows and the bindings its footer offers."""

from __future__ import annotations

import dataclasses
from ipaddress import ip_address
from pathlib import Path

import pytest

from ringdrop.node import Node
from ringdrop.ticket import Address, Ticket
from ringdrop.tui.app import RingdropApp, make_app
from ringdrop.tui.dialogs import Choice, QrCode, qr_modules, qr_size, qr_text
from ringdrop.tui.saved import SavedTransfer, SavedTransfers
from ringdrop.tui.shares import SharesPane
from ringdrop.tui.transfer import TransferView
from tests.node.relay import Relay
from tests.relay_server import IrohRelay, require_iroh_relay
from tests.tui.conftest import SIZE, screen_text, squeezed, until


async def test_the_status_bar_shows_the_peer_id_addresses_and_server(
    app: RingdropApp, mine: Node
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        # The addresses come from a worker of their own, not with the server's state.
        await until(
            pilot,
            lambda: (
                "serving on port" in screen_text(app)
                and f"127.0.0.1:{mine.config.port}" in screen_text(app)
            ),
        )
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
            # The exact line: "disconnected" has "connected" in it, and the relay's URL is read
            # when its state changes.
            connected = f"relay {relay.url}/ connected"
            await until(pilot, lambda: connected in screen_text(app), timeout=60)
            text = screen_text(app)
            relay.stop()
            await until(pilot, lambda: "disconnected" in screen_text(app), timeout=60)
    assert connected in text


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
        # The Shares tab's table is loaded by a worker; the footer follows the focus.
        await until(pilot, lambda: all(expected in screen_text(app) for expected in shows))
        text = screen_text(app)
    for expected in shows:
        assert expected in text, f"{expected!r} not on screen:\n{text}"
    assert len(text.splitlines()) <= SIZE[1]


async def test_i_shows_the_peer_id_as_a_qr_code(app: RingdropApp, mine: Node) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("i")
        await until(
            pilot, lambda: "▀" in screen_text(app) and "This node's peer id" in screen_text(app)
        )
        text = screen_text(app)
        await pilot.press("escape")
        await until(
            pilot, lambda: not isinstance(app.screen, QrCode) and "▀" not in screen_text(app)
        )
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
        await until(pilot, lambda: app.query_one(SharesPane).selected() is not None)
        ticket = app.query_one(SharesPane).selected().ticket.encode()  # type: ignore[union-attr]
        await pilot.press("q")
        await until(pilot, lambda: qr_drawn(app))
        text = screen_text(app)
        shown = [str(code.render()) for code in app.screen.query(".qr")]
    assert shown[0] in (qr_text(ticket, border=2), qr_text(ticket, border=1))
    assert all(line in text for line in shown[0].splitlines()), "the whole code"


def qr_drawn(app: RingdropApp) -> bool:
    """A QR code dialog is on top, and the screen has every row of its code, or, where the
    code does not fit, what it needs."""
    if not isinstance(app.screen, QrCode):
        return False
    codes = app.screen.query(".qr")
    text = screen_text(app)
    if codes:
        return all(line in text for line in str(codes.first().render()).splitlines())
    return "The QR code needs" in " ".join(text.split())


def a_long_ticket(node: Node, addresses: int) -> str:
    """A ticket naming several addresses and a relay, as a machine with many interfaces has."""
    ticket = Ticket(
        peer_id=node.peer_id,
        addresses=tuple(
            Address(ip_address(f"192.0.2.{i + 1}"), 40000 + i) for i in range(addresses)
        ),
        content_hash=bytes(range(32)),
        format="blob",
        name="holiday.mp4",
        size=1 << 30,
        relay="https://euc1-1.relay.n0.iroh.link/",
    )
    return ticket.encode()


@pytest.mark.parametrize(
    ("size", "addresses"), [(SIZE, 0), (SIZE, 1), ((120, 35), 1), ((120, 35), 6)]
)
async def test_a_qr_code_is_shown_whole_or_not_at_all(
    app: RingdropApp, mine: Node, size: tuple[int, int], addresses: int
) -> None:
    text = str(mine.peer_id) if addresses == 0 else a_long_ticket(mine, addresses)
    async with app.run_test(size=size) as pilot:
        app.push_screen(QrCode("The code", text))
        await until(pilot, lambda: qr_drawn(app))
        screen = screen_text(app)
        shown = [str(code.render()) for code in app.screen.query(".qr")]
    needs = qr_size(qr_modules(text), border=1)
    if needs[1] <= size[1] - 1:
        assert len(shown) == 1
        assert shown[0] in (qr_text(text, border=2), qr_text(text, border=1))
        assert all(line in screen for line in shown[0].splitlines()), "every row on screen"
    else:
        assert shown == []
        assert f"The QR code needs {needs[1]} rows" in " ".join(screen.split())


async def test_a_235_character_ticket_at_80x24_says_what_the_qr_code_needs(
    app: RingdropApp, mine: Node
) -> None:
    text = a_long_ticket(mine, 6)
    assert len(text) >= 235
    async with app.run_test(size=SIZE) as pilot:
        app.push_screen(QrCode("The code", text))
        needs = "TheQRcodeneeds26rowsof51columns,andthisterminalhas24rowsof80"
        await until(pilot, lambda: needs in squeezed(app) and text in squeezed(app))
        words = squeezed(app)
    assert needs in words
    assert text in words, "and the ticket itself, whole"


async def test_ctrl_q_asks_while_a_transfer_runs_and_the_footer_shows_it(
    app: RingdropApp, mine: Node, serving: Node, tmp_path: Path
) -> None:
    path = tmp_path / "big.bin"
    path.write_bytes(b"x" * 3_000_000)
    fast = serving.share(path, open=True).ticket
    relay = await Relay(fast.addresses[0].port, 300e3).start()  # about 10 s for the file
    slow = dataclasses.replace(fast, addresses=(Address(ip_address("127.0.0.1"), relay.port),))
    (tmp_path / "in").mkdir()
    SavedTransfers(mine.data_dir).put(SavedTransfer(slow.encode(), str(tmp_path / "in")))
    try:
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("2")
            view = app.query_one(TransferView)
            await until(
                pilot,
                lambda: (
                    "[transferring]" in screen_text(app)
                    and "^q Quit" in screen_text(app).splitlines()[-1]
                ),
            )
            footer = screen_text(app).splitlines()[-1]
            await pilot.press("ctrl+q")
            asked = "1 transfer still running. Quit anyway?"
            await until(
                pilot,
                lambda: (
                    isinstance(app.screen, Choice) and asked in " ".join(screen_text(app).split())
                ),
            )
            question = " ".join(screen_text(app).split())
            await pilot.click("#stay")
            await until(pilot, lambda: not isinstance(app.screen, Choice))
            stayed = app.is_running and not view.paused
            view.focus()
            await pilot.press("p")
            # ctrl+q is the app's own key, handled before the view has its "p" otherwise.
            await until(pilot, lambda: view.paused)
            await pilot.press("ctrl+q")
            await pilot.pause()
            quit_at_once = not isinstance(app.screen, Choice)
    finally:
        relay.close()
    assert "^q Quit" in footer
    assert asked in question
    assert stayed
    assert quit_at_once
