"""Every tab's layout at 80x24 and 120x35, as SVG snapshots (pytest-textual-snapshot): what a
newcomer sees first, held still. A changed layout fails here; `pytest --snapshot-update`
records the new one once it has been looked at (`snapshot_report.html` shows the difference).

What the screen shows is made the same on every run: a fixed key, port, address, home folder,
time zone and content; received content with a fixed time."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import nacl.signing
import pytest
from textual.pilot import Pilot

from ringdrop.access.announcement import sign_announcement
from ringdrop.access.manifest import ManifestMember, sign_manifest
from ringdrop.identity import KEY_FILE, Identity, PeerId
from ringdrop.node import Node
from ringdrop.node.receipts import Receipt, record_receipt
from ringdrop.tui.app import RingdropApp, make_app
from ringdrop.tui.dialogs import Prompt, QrCode, ShareTo
from ringdrop.tui.saved import SavedTransfer, SavedTransfers
from ringdrop.tui.shares import SharesPane
from tests.tui.conftest import answer_field, screen_text, squeezed, until

# Outside both the range the node picks its port from and the kernel's ephemeral range, so
# that nothing else on the machine holds it.
PORT = 64321
# A fixed place: "Save in" shows the home folder's Downloads, and received paths are shown.
HOME = Path("/tmp/ringdrop-snapshots/home")
SIZES = [(80, 24), (120, 35)]
TABS = ["1", "2", "3", "4", "5", "6"]
BOB = PeerId.parse("lg3yxfl2xp5ut4p42str2ttux4dlajhqiioj2yopfk3jztoggo2a")
Snap = Callable[..., bool]


@pytest.fixture
def still(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Node]:
    """A node whose every shown detail is the same on every run."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    monkeypatch.setenv("HOME", str(HOME))
    (HOME / "Downloads").mkdir(parents=True, exist_ok=True)
    data_dir = tmp_path / "still"
    data_dir.mkdir(mode=0o700)
    fd = os.open(data_dir / KEY_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, b"ringdrop snapshot key".ljust(32, b"."))
    os.close(fd)
    (data_dir / "config.json").write_text(f'{{"port": {PORT}}}\n')
    files = tmp_path / "files"
    (files / "photos" / "2026").mkdir(parents=True)
    (files / "photos" / "beach.jpg").write_bytes(b"\xff\xd8" * 40_000)
    (files / "photos" / "2026" / "hike.jpg").write_bytes(b"\xff\xd9" * 3_000)
    (files / "notes.txt").write_text("meeting notes\n" * 100)
    for path in files.rglob("*"):
        os.utime(path, ns=(1_790_000_000 * 10**9, 1_790_000_000 * 10**9))  # tickets carry it
    with Node(data_dir, addresses=["192.0.2.10"]) as node:
        node.create_ring("family")
        node.add_peer(BOB, "bob")
        node.add_member("family", "bob")
        node.grant("bob")
        node.share(files / "photos", rings=["family"])
        node.share(files / "notes.txt", open=True)
        received = HOME / "Downloads" / "report.pdf"
        record_receipt(
            data_dir,
            Receipt(
                1_790_000_000.0, BOB, bytes(range(32)), "report.pdf", "blob", 123_456, received
            ),
        )
        _announced(node)
        ticket = node.share(files / "notes.txt").ticket.encode()
        SavedTransfers(data_dir).put(
            SavedTransfer(ticket, str(HOME / "Downloads"), saved_as=str(received))
        )
        yield node
    time.tzset()


def _announced(node: Node) -> None:
    """A folder that mum announced in her own ring, waiting in the inbox."""
    mum = Identity(nacl.signing.SigningKey(b"ringdrop snapshot owner".ljust(32, b".")))
    node.add_peer(mum.peer_id, "mum")
    at = 1_790_000_000
    ring = sign_manifest(
        mum,
        ring_id=b"S" * 16,
        version=1,
        name="cousins",
        members=[ManifestMember(node.peer_id)],
        members_serve=True,
        issued_at=at,
        valid_until=at + 86400,
    )
    news = sign_announcement(
        mum,
        ring_id=b"S" * 16,
        ring_name="cousins",
        sequence=1,
        at=at,
        kind="share",
        root=bytes(range(32, 64)),
        format="collection",
        size=2_345_678,
        name="holiday",
    )
    node._access.accept_news(node.peer_id, ring, [news], asked=False, now=at)


def ready(key: str) -> Callable[[Pilot[None]], Awaitable[None]]:
    """Waits until the tab `key` shows everything that workers, the server and messages put on
    it (the picture is taken right after), and nothing has the focus."""

    async def run_before(pilot: Pilot[None]) -> None:
        app = pilot.app
        assert isinstance(app, RingdropApp)
        await until(pilot, lambda: _started(app))
        await pilot.press(key)
        await until(pilot, lambda: _loaded(app, key))
        app.set_focus(None)  # no blinking cursor in the picture
        await until(pilot, lambda: _unfocused(app))

    return run_before


def _started(app: RingdropApp) -> bool:
    """The status bar has what the server and the address worker found; the Inbox tab's label,
    the count its worker read."""
    text = screen_text(app)
    return (
        f"serving on port {PORT}" in text
        and f"reach   192.0.2.10:{PORT}" in text
        and "Inbox 1 F6" in text
    )


def _loaded(app: RingdropApp, key: str) -> bool:
    text = screen_text(app)
    if key == "1":
        selected = app.query_one(SharesPane).selected()
        return (
            "notes.txt" in text
            and "photos" in text
            and selected is not None
            and f"ticket:{selected.ticket.encode()}" in squeezed(app)
        )
    return {
        "2": "[done]" in text and f"savedas{HOME}/Downloads/report.pdf" in squeezed(app),
        "3": "family" in text and "anyone" in text,
        "4": "bob" in text and "mum" in text,
        "5": "report.pdf" in text,
        "6": "holiday/" in text,
    }[key]


def _unfocused(app: RingdropApp) -> bool:
    """Nothing has the focus, and the footer shows it: only the app's own keys."""
    footer = screen_text(app).splitlines()[-1]
    return app.focused is None and footer.split("▏")[0].split() == ["^q", "Quit", "i", "My", "id"]


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
@pytest.mark.parametrize(
    "key", TABS, ids=["shares", "receive", "rings", "peers", "activity", "inbox"]
)
def test_each_tab(snap_compare: Snap, still: Node, key: str, size: tuple[int, int]) -> None:
    app = make_app(still, host="127.0.0.1")
    assert snap_compare(app, terminal_size=size, run_before=ready(key))


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_qr_code_of_the_peer_id(snap_compare: Snap, still: Node, size: tuple[int, int]) -> None:
    app = make_app(still, host="127.0.0.1")

    async def run_before(pilot: Pilot[Any]) -> None:
        await ready("1")(pilot)
        title = "This node's peer id: a sharer adds it to a ring"
        app.push_screen(QrCode(title, str(still.peer_id)))

        def drawn() -> bool:
            if not isinstance(app.screen, QrCode) or not app.screen.query(".qr"):
                return False
            code = str(app.screen.query(".qr").first().render())
            text = screen_text(app)
            return title in text and all(line in text for line in code.splitlines())

        await until(pilot, drawn)

    assert snap_compare(app, terminal_size=size, run_before=run_before)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_the_share_dialog_asks_for_rings_or_a_short_code(
    snap_compare: Snap, still: Node, tmp_path: Path, size: tuple[int, int]
) -> None:
    app = make_app(still, host="127.0.0.1")

    async def run_before(pilot: Pilot[Any]) -> None:
        await ready("1")(pilot)
        app.query_one("#share-table").focus()
        await until(pilot, lambda: app.query_one("#share-table").has_focus)
        await pilot.press("a")
        (await answer_field(pilot, Prompt)).value = str(tmp_path / "files" / "notes.txt")
        await pilot.press("enter")
        (await answer_field(pilot, ShareTo)).value = "family"
        app.set_focus(None)
        # The rings typed, in the field (the table behind has "family" too), the whole dialog,
        # and behind it the footer with the keys of the table that has the focus there.
        await until(
            pilot,
            lambda: (
                app.focused is None
                and re.search(r"▊ +family ", screen_text(app)) is not None
                and "buttons, Escape cancels" in " ".join(screen_text(app).split())
                and "a Share" in screen_text(app).splitlines()[-1]
            ),
        )

    assert snap_compare(app, terminal_size=size, run_before=run_before)
