"""Receiving through the TUI from a real sharer on loopback: progress to 100 %, the reason for
a denial, transfers that continue when the TUI is opened again, where "Save in" puts things,
what it asks when the destination exists, and what cancelling keeps."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import subprocess
from ipaddress import ip_address
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Input, ProgressBar

from ringdrop.bao import GROUP_SIZE, ChunkRanges
from ringdrop.node import Node, Progress, Share
from ringdrop.ticket import Address, Ticket
from ringdrop.tui.app import RingdropApp, make_app
from ringdrop.tui.dialogs import Choice
from ringdrop.tui.receive import ReceivePane
from ringdrop.tui.saved import SavedTransfer, SavedTransfers
from ringdrop.tui.transfer import TransferView
from tests.files import mounted, pseudo_random, tree
from tests.node.relay import Relay
from tests.tui.conftest import SIZE, screen_text, show_tab, squeezed, until

DATA = pseudo_random(3 * 1024 * 1024 + 17)
# What the question asked when the destination's name is taken says.
TAKEN = "already exists. Keep both, or replace it"


def shared_file(sharer: Node, tmp_path: Path, *, open: bool) -> str:
    path = tmp_path / "movie.bin"
    path.write_bytes(DATA)
    return sharer.share(path, open=open).ticket.encode()


@pytest.fixture
def taken(serving: Node, tmp_path: Path, downloads: Path) -> str:
    """The ticket of a file whose name is already taken in `downloads` (by b"mine")."""
    (downloads / "movie.bin").write_bytes(b"mine")
    return shared_file(serving, tmp_path, open=True)


def spaced(app: RingdropApp) -> str:
    """The screen's text with each run of whitespace as one space: for text that may wrap."""
    return " ".join(screen_text(app).split())


def paste(app: RingdropApp, ticket: str, dest: Path | None) -> None:
    """Fills in the Receive tab (None: leaves "Save in" as it is) and asks to receive."""
    if dest is not None:
        app.query_one("#dest", Input).value = str(dest)
    app.query_one("#ticket", Input).value = ticket
    app.query_one(ReceivePane).receive()


async def start_receiving(
    app: RingdropApp, pilot: Pilot[None], ticket: str, dest: Path | None
) -> TransferView:
    """Receives `ticket` into `dest` from the Receive tab; returns the transfer's view."""
    await pilot.press("2")
    paste(app, ticket, dest)
    return app.query_one(TransferView)


async def until_ended(pilot: Pilot[None], view: TransferView) -> None:
    await until(pilot, lambda: view.finished or view.failed)


async def receive(
    app: RingdropApp, pilot: Pilot[None], ticket: str, dest: Path | None
) -> TransferView:
    """Receives `ticket` into `dest` from the Receive tab until it has finished or failed."""
    view = await start_receiving(app, pilot, ticket, dest)
    await until_ended(pilot, view)
    return view


async def answer(app: RingdropApp, pilot: Pilot[None], ticket: str, dest: Path, choice: str) -> str:
    """Asks to receive `ticket` into `dest`, where its name is taken, answers the question with
    the button `choice` and waits until the transfer has finished or failed; returns the
    question as the screen showed it."""
    paste(app, ticket, dest)
    await until(pilot, lambda: isinstance(app.screen, Choice) and TAKEN in spaced(app))
    question = spaced(app)
    await pilot.click(f"#{choice}")
    await until(pilot, lambda: bool(app.query(TransferView)))
    await until_ended(pilot, app.query_one(TransferView))
    return question


async def ask_to_cancel(app: RingdropApp, pilot: Pilot[None]) -> None:
    """Presses cancel on the transfer on the Receive tab, and waits until the question is drawn."""
    await show_tab(pilot, "2", "receive-pane")  # whose ticket field would take the x otherwise
    view = app.query_one(TransferView)
    view.focus()
    await until(pilot, lambda: view.has_focus)
    await pilot.press("x")
    await until(
        pilot,
        lambda: isinstance(app.screen, Choice) and "Cancel receiving movie.bin?" in spaced(app),
    )


async def test_the_ticket_preview_shows_name_size_and_the_sharers_nickname(
    app: RingdropApp, mine: Node, sharer: Node, tmp_path: Path
) -> None:
    ticket = shared_file(sharer, tmp_path, open=True)
    mine.add_peer(sharer.peer_id, "alice")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        app.query_one("#ticket", Input).value = ticket
        await until(
            pilot, lambda: "movie.bin: a file, 3.0 MiB, shared by alice" in screen_text(app)
        )
        text = screen_text(app)
    assert "movie.bin: a file, 3.0 MiB, shared by alice" in text


async def test_a_received_file_reaches_100_percent_and_is_saved(
    app: RingdropApp, serving: Node, tmp_path: Path, downloads: Path
) -> None:
    ticket = shared_file(serving, tmp_path, open=True)
    async with app.run_test(size=SIZE) as pilot:
        view = await receive(app, pilot, ticket, downloads)
        bar = view.query_one(ProgressBar)
        await until(pilot, lambda: "[done]" in screen_text(app))
        text = screen_text(app)
    assert view.finished, text
    assert bar.percentage == 1.0
    assert "[done]" in text
    assert (downloads / "movie.bin").read_bytes() == DATA
    assert SavedTransfers(app.node.data_dir).load() == [
        SavedTransfer(ticket, str(downloads), saved_as=str(downloads / "movie.bin"))
    ], "listed until cleared"


async def test_a_denied_receive_shows_the_sharers_reason(
    app: RingdropApp, serving: Node, tmp_path: Path, downloads: Path
) -> None:
    ticket = shared_file(serving, tmp_path, open=False)
    async with app.run_test(size=SIZE) as pilot:
        view = await receive(app, pilot, ticket, downloads)
        await until(
            pilot,
            lambda: (
                "[failed]" in screen_text(app)
                and "notinaringthatmayreadthiscontent" in squeezed(app)
            ),
        )
        text = screen_text(app)
        words = squeezed(app)
    assert view.failed
    assert "[failed]" in text
    assert "notinaringthatmayreadthiscontent" in words, text
    assert not (downloads / "movie.bin").exists()


async def test_a_transfer_left_unfinished_continues_when_the_tui_reopens(
    app: RingdropApp, mine: Node, serving: Node, tmp_path: Path, downloads: Path
) -> None:
    ticket = shared_file(serving, tmp_path, open=True)
    SavedTransfers(mine.data_dir).put(SavedTransfer(ticket, str(downloads)))
    async with app.run_test(size=SIZE) as pilot:
        view = app.query_one(TransferView)
        await until_ended(pilot, view)
    assert (downloads / "movie.bin").read_bytes() == DATA


async def test_a_transfers_row_says_how_the_sharer_is_reached(
    app: RingdropApp, mine: Node, sharer: Node, tmp_path: Path, downloads: Path
) -> None:
    """Issue 10: the row shows the path the sharer is reached by now, and follows a move. The
    transfer is a saved, paused one, so that only the progress given here reaches its view."""
    ticket = shared_file(sharer, tmp_path, open=True)
    SavedTransfers(mine.data_dir).put(SavedTransfer(ticket, str(downloads), paused=True))

    def at(address: str) -> Progress:
        return Progress("movie.bin", "transferring", len(DATA), 1 << 20, 0, 1e6, address=address)

    def shown() -> str:
        return " ".join(screen_text(app).split())

    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        view = app.query_one(TransferView)
        assert view.paused
        view.post_message(TransferView.Progressed(at("relay http://r/")))
        await until(pilot, lambda: "via relay http://r/" in shown())
        view.post_message(TransferView.Progressed(at("direct 203.0.113.7:4242")))
        await until(pilot, lambda: "via direct 203.0.113.7:4242" in shown())
        assert "via relay" not in shown(), shown()


async def test_pausing_keeps_the_transfer_for_later_and_resuming_finishes_it(
    app: RingdropApp, mine: Node, serving: Node, tmp_path: Path, downloads: Path
) -> None:
    # Through a link cut until the pause: the transfer cannot end before it, however slow the
    # key press is.
    fast = Ticket.decode(shared_file(serving, tmp_path, open=True))
    relay = await Relay(fast.addresses[0].port, None).start()
    relay.cut = True
    slow = dataclasses.replace(fast, addresses=(Address(ip_address("127.0.0.1"), relay.port),))
    ticket = slow.encode()
    try:
        async with app.run_test(size=SIZE) as pilot:
            view = await start_receiving(app, pilot, ticket, downloads)
            view.focus()
            await pilot.press("p")
            await until(pilot, lambda: view.paused)
            paused = [SavedTransfer(ticket, str(downloads), paused=True)]
            await until(pilot, lambda: SavedTransfers(mine.data_dir).load() == paused)
            assert not view.finished
            relay.cut = False
            await pilot.press("p")
            await until_ended(pilot, view)
    finally:
        relay.close()
    assert view.finished
    assert (downloads / "movie.bin").read_bytes() == DATA


@pytest.mark.parametrize(("button", "made"), [("create", True), ("cancel", False)])
async def test_save_in_a_folder_that_does_not_exist_asks_to_create_it(
    app: RingdropApp, serving: Node, tmp_path: Path, downloads: Path, button: str, made: bool
) -> None:
    ticket = shared_file(serving, tmp_path, open=True)
    folder = downloads / "new" / "film.bin"
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        paste(app, ticket, folder)
        asked = "".join(f"The folder {folder} does not exist. Create it?".split())
        await until(pilot, lambda: isinstance(app.screen, Choice) and asked in squeezed(app))
        question = squeezed(app)
        await pilot.click(f"#{button}")
        if made:
            await until(pilot, lambda: bool(app.query(TransferView)))
            await until_ended(pilot, app.query_one(TransferView))
        else:
            # The message line's words, never the question's, which has the same ones.
            refused = "notreceived:thefolderdoesnotexist"
            await until(pilot, lambda: refused in squeezed(app))
    assert asked in question
    if made:
        assert (folder / "movie.bin").read_bytes() == DATA, "a folder, never the file's name"
    else:
        assert os.listdir(downloads) == []


async def test_save_in_empty_means_the_folder_it_shows(
    app: RingdropApp,
    serving: Node,
    tmp_path: Path,
    downloads: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(downloads)
    ticket = shared_file(serving, tmp_path, open=True)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        app.query_one("#dest", Input).value = ""
        await until(pilot, lambda: f"Savein{downloads}"[:40] in squeezed(app))
        shown = squeezed(app)
        view = await receive(app, pilot, ticket, None)
    assert f"Savein{downloads}"[:40] in shown, "the default, as a placeholder"
    assert view.finished
    assert (downloads / "movie.bin").read_bytes() == DATA


async def test_save_in_a_file_is_refused(
    app: RingdropApp, serving: Node, tmp_path: Path, downloads: Path
) -> None:
    ticket = shared_file(serving, tmp_path, open=True)
    (downloads / "a-file").write_bytes(b"x")
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        paste(app, ticket, downloads / "a-file")
        await until(pilot, lambda: "a-fileisafile:Saveintakesafolder" in squeezed(app))
        text = squeezed(app)
        assert not app.query(TransferView)
    assert "a-fileisafile:Saveintakesafolder" in text


@pytest.mark.parametrize(
    ("choice", "expected"),
    [("rename", {"movie.bin": b"mine", "movie (1).bin": DATA}), ("force", {"movie.bin": DATA})],
)
async def test_an_existing_destination_asks_keep_both_or_overwrite(
    app: RingdropApp, taken: str, downloads: Path, choice: str, expected: dict[str, bytes]
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        question = await answer(app, pilot, taken, downloads, choice)
    assert TAKEN in question
    assert {p.name: p.read_bytes() for p in downloads.iterdir()} == expected


async def test_an_existing_destination_left_alone_when_the_question_is_cancelled(
    app: RingdropApp, taken: str, downloads: Path
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        paste(app, taken, downloads)
        await until(pilot, lambda: isinstance(app.screen, Choice) and TAKEN in spaced(app))
        await pilot.press("escape")
        await until(pilot, lambda: "already taken" in screen_text(app))
        assert not app.query(TransferView)
        assert "already taken" in screen_text(app)
    assert (downloads / "movie.bin").read_bytes() == b"mine"


def half_downloaded(mine: Node, sharer: Node, tmp_path: Path, downloads: Path) -> bytes:
    """Shares DATA, puts its first half in `mine`'s store as a verified partial, and saves a
    paused transfer of it for the TUI to show; returns the root."""
    ticket = shared_file(sharer, tmp_path, open=True)
    root = Ticket.decode(ticket).content_hash
    half = ChunkRanges.groups(0, len(DATA) // 2 // GROUP_SIZE)
    encoded = sharer._store.encoder(root, half).read(1 << 30)
    with mine._store.partial(root) as partial:
        writer = partial.writer(half)
        writer.write(encoded)
        writer.flush()
    SavedTransfers(mine.data_dir).put(SavedTransfer(ticket, str(downloads), paused=True))
    return root


@pytest.mark.parametrize(("answer", "kept"), [("keep", True), ("delete", False)])
async def test_cancel_asks_whether_to_keep_what_was_verified(
    app: RingdropApp,
    mine: Node,
    sharer: Node,
    tmp_path: Path,
    downloads: Path,
    answer: str,
    kept: bool,
) -> None:
    root = half_downloaded(mine, sharer, tmp_path, downloads)
    async with app.run_test(size=SIZE) as pilot:
        await ask_to_cancel(app, pilot)
        assert "Cancel receiving movie.bin?" in spaced(app)
        app.screen.query_one(f"#{answer}", Button).press()
        await until(pilot, lambda: not app.query(TransferView))
    assert SavedTransfers(mine.data_dir).load() == []
    partials = [p.root for p in mine._store.partials()]
    assert (root in partials) == kept
    assert any((mine.data_dir / "partial").glob("*.data")) == kept


async def test_going_on_after_cancel_keeps_the_transfer(
    app: RingdropApp, mine: Node, sharer: Node, tmp_path: Path, downloads: Path
) -> None:
    half_downloaded(mine, sharer, tmp_path, downloads)
    async with app.run_test(size=SIZE) as pilot:
        await ask_to_cancel(app, pilot)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, Choice))
        assert app.query(TransferView)
    assert len(SavedTransfers(mine.data_dir).load()) == 1


async def test_a_received_folder_keeps_times_and_the_executable_bit(
    app: RingdropApp, serving: Node, tmp_path: Path, downloads: Path
) -> None:
    folder = tmp_path / "project"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "run").write_bytes(b"#!/bin/sh\n" + DATA)
    (folder / "bin" / "run").chmod(0o755)
    (folder / "notes.txt").write_bytes(b"notes")
    when = 1_234_567_890_123_456_789
    for path in (folder / "bin" / "run", folder / "notes.txt"):
        os.utime(path, ns=(when, when))
    ticket = serving.share(folder, open=True).ticket.encode()
    async with app.run_test(size=SIZE) as pilot:
        await receive(app, pilot, ticket, downloads)
    out = downloads / "project"
    assert (out / "bin" / "run").read_bytes() == b"#!/bin/sh\n" + DATA
    assert (out / "notes.txt").read_bytes() == b"notes"
    assert os.access(out / "bin" / "run", os.X_OK)
    assert not os.access(out / "notes.txt", os.X_OK)
    assert (out / "bin" / "run").stat().st_mtime_ns == when
    assert (out / "notes.txt").stat().st_mtime_ns == when


async def test_keep_both_twice_numbers_the_names(
    app: RingdropApp, taken: str, downloads: Path
) -> None:
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        for _ in range(2):
            await answer(app, pilot, taken, downloads, "rename")
            app.query_one(TransferView).focus()
            await pilot.press("x")  # a finished transfer leaves the list without a question
            await until(pilot, lambda: not app.query(TransferView))
    assert sorted(os.listdir(downloads)) == ["movie (1).bin", "movie (2).bin", "movie.bin"]
    assert (downloads / "movie (2).bin").read_bytes() == DATA


async def test_a_folder_export_that_failed_half_way_is_retried_without_overwriting(
    app: RingdropApp, serving: Node, tmp_path: Path
) -> None:
    folder = tmp_path / "album"
    for i in range(6):
        (folder / f"disc{i % 2}").mkdir(parents=True, exist_ok=True)
        (folder / f"disc{i % 2}" / f"track{i}.bin").write_bytes(pseudo_random(100_000, seed=i))
    ticket = serving.share(folder, open=True).ticket.encode()
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    # A disk with room for the bytes but only six inodes: its root, the export's temporary
    # folder, disc0 and two tracks. The third file finds the disk full, though the check of
    # free bytes before the export passed.
    with mounted(downloads, "-t", "tmpfs", "-o", "size=8m,nr_inodes=6", "tmpfs"):
        async with app.run_test(size=SIZE) as pilot:
            view = await receive(app, pilot, ticket, downloads)
            assert view.failed
            await until(pilot, lambda: "could not export: the disk is full" in spaced(app))
            assert "could not export: the disk is full" in spaced(app)
            assert os.listdir(downloads) == [], "nothing half-done in the way"
            subprocess.run(["mount", "-o", "remount,nr_inodes=1000", downloads], check=True)
            view.focus()
            await pilot.press("p")  # retry: no question, nothing to overwrite
            # Finished, not just ended: until the key is handled, the view still has its failure.
            await until(pilot, lambda: view.finished)
            assert not isinstance(app.screen, Choice)
        assert view.finished
        assert tree(downloads / "album") == tree(folder)


async def test_a_started_transfer_has_the_focus_so_its_keys_work_at_once(
    app: RingdropApp, mine: Node, serving: Node, tmp_path: Path, downloads: Path
) -> None:
    # Through a slow link (about 10 s for the file), so that it is still running when paused.
    fast = Ticket.decode(shared_file(serving, tmp_path, open=True))
    relay = await Relay(fast.addresses[0].port, 300e3).start()
    slow = dataclasses.replace(fast, addresses=(Address(ip_address("127.0.0.1"), relay.port),))
    ticket = slow.encode()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        app.query_one("#dest", Input).value = str(downloads)
        ticket_field = app.query_one("#ticket", Input)
        ticket_field.focus()
        ticket_field.value = ticket
        await pilot.press("enter")
        await until(pilot, lambda: bool(app.query(TransferView)))
        view = app.query_one(TransferView)
        await until(pilot, lambda: view.has_focus)

        def marked() -> list[str]:
            return [line for line in screen_text(app).splitlines() if line.startswith("▌")]

        await until(pilot, lambda: bool(marked()) and "movie.bin" in marked()[0])
        selected = marked()
        await pilot.press("p")
        paused = view.paused
        typed = ticket_field.value
        await pilot.press("p")
        await until(pilot, lambda: view.finished or view.failed, timeout=120)
    relay.close()
    assert view.finished
    assert "movie.bin" in selected[0], "the selected transfer is marked"
    assert paused
    assert typed == "", "p paused the transfer, and typed nothing into the ticket field"
    assert (downloads / "movie.bin").read_bytes() == DATA


async def test_a_paused_transfer_shows_no_rate_and_no_eta(
    app: RingdropApp, mine: Node, sharer: Node, tmp_path: Path, downloads: Path
) -> None:
    ticket = shared_file(sharer, tmp_path, open=True)
    SavedTransfers(mine.data_dir).put(SavedTransfer(ticket, str(downloads), paused=True))
    moving = Progress("movie.bin", "transferring", len(DATA), 1 << 20, 0, 2e6)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        view = app.query_one(TransferView)
        view.paused = False  # as if it had been running: the next progress comes from it
        view.post_message(TransferView.Progressed(moving))
        await until(pilot, lambda: "1.0MiBof3.0MiB1.9MiB/sETA0:01" in squeezed(app))
        running = squeezed(app)
        view.focus()
        view.workers.cancel_group(view, "download")
        await pilot.press("p")
        await until(
            pilot,
            lambda: (
                "[paused]" in screen_text(app)
                and "1.0MiBof3.0MiB" in squeezed(app)
                and "MiB/s" not in squeezed(app)
                and "ETA" not in squeezed(app)
            ),
        )
        paused = squeezed(app)
    assert "1.0MiBof3.0MiB1.9MiB/sETA0:01" in running
    assert "1.0MiBof3.0MiB" in paused
    assert "MiB/s" not in paused
    assert "ETA" not in paused


async def test_finished_transfers_stay_listed_after_a_restart_until_cleared(
    mine: Node, serving: Node, tmp_path: Path, downloads: Path
) -> None:
    ticket = shared_file(serving, tmp_path, open=True)
    first = make_app(mine, host="127.0.0.1")
    async with first.run_test(size=SIZE) as pilot:
        await receive(first, pilot, ticket, downloads)
    again = make_app(mine, host="127.0.0.1")
    async with again.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(
            pilot,
            lambda: (
                "[done]" in screen_text(again)
                and f"savedas{downloads}/movie.bin" in squeezed(again)
            ),
        )
        listed = squeezed(again)
        again.query_one(TransferView).focus()
        await pilot.press("c")
        await until(pilot, lambda: not again.query(TransferView))
    assert f"savedas{downloads}/movie.bin" in listed
    assert SavedTransfers(mine.data_dir).load() == []
    assert (downloads / "movie.bin").read_bytes() == DATA, "clearing the list deletes nothing"


async def test_a_text_is_shown_in_the_list_and_nothing_is_saved(
    app: RingdropApp, mine: Node, sharer: Node, tmp_path: Path, downloads: Path
) -> None:
    message = "the door code is 4711\nsee you at 8"
    shared: asyncio.Future[Share] = asyncio.get_running_loop().create_future()
    sending = asyncio.create_task(
        sharer.send(text=message, host="127.0.0.1", ready=shared.set_result)
    )
    ticket = (await asyncio.wait_for(shared, 20)).ticket.encode()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        app.query_one("#ticket", Input).value = ticket
        await until(pilot, lambda: "atext(34B)from" in squeezed(app))
        preview = squeezed(app)
        view = await receive(app, pilot, ticket, downloads)
        # The message is drawn after the transfer ends, at the screen's next refresh.
        await until(pilot, lambda: "see you at 8" in screen_text(app))
        shown = screen_text(app)
    await asyncio.wait_for(sending, 30)
    assert "atext(34B)from" in preview
    assert view.finished
    lines = [line.replace("▌", "").strip() for line in shown.splitlines()]
    assert lines[lines.index("message:") + 1 :][:2] == ["the door code is 4711", "see you at 8"]
    assert os.listdir(downloads) == []
    (saved,) = SavedTransfers(mine.data_dir).load()
    assert (saved.text, saved.saved_as) == (message, None)
