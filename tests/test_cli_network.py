"""The `ringdrop` command line over real QUIC on loopback: two data directories, `serve` in one
process and `get`, `remote list` in others, as a sharer and a receiver would use them."""

from __future__ import annotations

import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from ringdrop import display
from ringdrop.ticket import Ticket

from .cli_util import Node, Process, cli_env, ringdrop
from .files import tree

BIG = 96 << 20
"""Big enough that a transfer on loopback lasts a while, so that a test can interrupt it."""


@pytest.fixture
def big_file(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(os.urandom(BIG))
    return path


def stats(node: Node, *args: str | Path, code: int = 0) -> dict[str, Any]:
    shown = node.json(*args, code=code)
    assert isinstance(shown, dict)
    return shown


# -- share → serve → get --------------------------------------------------------------------------


def test_a_file_goes_from_share_to_get(
    alice: Node, bob: Node, server: Process, a_file: Path
) -> None:
    ticket = alice.share(a_file, "--open")
    (bob.cwd / "in").mkdir()
    shown = stats(bob, "get", ticket, "--dest", bob.cwd / "in")
    assert set(shown) == {"path", "via", "traffic", "dest", "name", "hash", "format", "total",
                          "present", "received", "seconds", "first_byte", "paths", "files",
                          "moved", "copied", "providers"}  # fmt: skip
    assert shown["providers"] == {alice.peer_id(): a_file.stat().st_size}
    assert (bob.cwd / "in" / "notes.txt").read_bytes() == a_file.read_bytes()
    assert shown["dest"] == str(bob.cwd / "in" / "notes.txt")
    assert shown["path"] == "direct"
    assert isinstance(shown["via"], str)
    assert shown["via"].startswith("127.0.0.1:")
    assert set(shown["traffic"]) == {"direct"}
    assert 0 < shown["first_byte"] <= shown["seconds"]
    assert [change["path"] for change in shown["paths"]] == [f"direct {shown['via']}"]
    assert 0 <= shown["paths"][0]["at"] <= shown["first_byte"]
    assert shown["name"] == "notes.txt"
    assert shown["format"] == "blob"
    assert shown["total"] == a_file.stat().st_size
    assert shown["present"] == 0
    assert isinstance(shown["received"], int)
    assert shown["received"] >= a_file.stat().st_size
    assert shown["files"] == 1
    line = server.wait_for("notes.txt")
    assert "complete" in line
    assert bob.peer_id() in line


def test_a_folder_goes_from_share_to_get(
    alice: Node, bob: Node, server: Process, a_folder: Path
) -> None:
    ticket = alice.share(a_folder, "--open")
    out = bob.run("get", ticket).stdout
    assert tree(bob.cwd / "photos") == tree(a_folder)
    assert out.startswith(f"Received photos: {bob.cwd / 'photos'}\n")
    assert "5 files" in out


def test_the_summary_says_what_was_already_here(
    alice: Node, bob: Node, server: Process, a_file: Path
) -> None:
    ticket = alice.share(a_file, "--open")
    bob.run("get", ticket, "--dest", bob.cwd / "first.txt")
    again = stats(bob, "get", ticket, "--dest", bob.cwd / "second.txt")
    assert again["present"] == again["total"] == a_file.stat().st_size
    assert (bob.cwd / "second.txt").read_bytes() == a_file.read_bytes()


def test_share_says_whether_a_server_is_up(alice: Node, server: Process, a_file: Path) -> None:
    out = alice.run("share", a_file, "--open").stdout
    assert f"A server is running (pid {server.popen.pid})" in out
    assert stats(alice, "share", a_file, "--open")["server_pid"] == server.popen.pid


# -- access ---------------------------------------------------------------------------------------


def test_a_peer_outside_the_ring_is_denied_until_added(
    alice: Node, bob: Node, server: Process, a_file: Path
) -> None:
    alice.run("ring", "new", "friends")
    ticket = alice.share(a_file, "--ring", "friends")
    bob_id = bob.peer_id()
    err = bob.run("get", ticket, code=4).stderr
    assert err.startswith("ringdrop: access denied: ")
    assert bob_id in err
    assert "ringdrop ring add" in err
    assert not (bob.cwd / "notes.txt").exists()
    assert "denied" in server.wait_for(r"denied")
    error = bob.json("get", ticket, code=4)["error"]  # type: ignore[index]
    assert error["type"] == "AccessDeniedError"
    assert error["exit_code"] == 4
    assert (error["peer"], error["root"]) == (
        alice.peer_id(),
        Ticket.decode(ticket).content_hash.hex(),
    )

    alice.run("ring", "add", "friends", bob_id)  # while serve runs, in another process
    bob.run("get", ticket)
    assert (bob.cwd / "notes.txt").read_bytes() == a_file.read_bytes()


def test_the_log_shows_who_downloaded_what(
    alice: Node, bob: Node, server: Process, a_file: Path
) -> None:
    ticket = alice.share(a_file, "--open")
    bob.run("get", ticket)
    server.wait_for("notes.txt")
    shown = stats(alice, "log")
    (upload,) = shown["uploads"]
    assert upload["peer_id"] == bob.peer_id()
    assert upload["name"] == "notes.txt"
    assert upload["bytes_sent"] >= a_file.stat().st_size
    assert upload["outcome"] == "complete"
    assert "notes.txt" in alice.run("log").stdout


def test_the_serve_log_names_folder_files_and_peers_by_nickname(
    alice: Node, bob: Node, server: Process, a_folder: Path
) -> None:
    alice.run("peer", "add", bob.peer_id(), "bob")
    bob.run("get", alice.share(a_folder, "--open"))
    server.wait_for(r"get files of photos: complete")
    line = server.wait_for(r"photos/a\.jpg: complete")
    assert f"  bob ({bob.peer_id()[:8]}…)  get photos/a.jpg: complete, " in line
    server.wait_for(r"photos/2026/summer/c\.jpg: complete")
    served = [line for line in server.lines if " get " in line]
    what = {line.split("  ")[2].split(":")[0] for line in served}
    assert what == {
        "get photos",
        "get files of photos",
        "get photos/a.jpg",
        "get photos/2026/summer/c.jpg",
    }, "the folder, its small files, each large file by its name in the folder"
    assert not [line for line in served if bob.peer_id() in line], "the nickname, not the id"


def test_remote_list_needs_a_catalog_grant(
    alice: Node, bob: Node, server: Process, a_file: Path, a_folder: Path
) -> None:
    ticket = alice.share(a_file, "--open")
    alice.share(a_folder, "--open")
    err = bob.run("remote", "list", ticket, code=4).stderr
    assert "ringdrop grant add" in err
    assert bob.peer_id() in err

    alice.run("grant", "add", bob.peer_id())
    shown = stats(bob, "remote", "list", ticket)
    entries = {e["name"]: e for e in shown["entries"]}
    assert set(entries) == {"notes.txt", "photos"}
    assert entries["photos"]["format"] == "collection"
    assert entries["notes.txt"]["size"] == a_file.stat().st_size
    assert "photos" in bob.run("remote", "list", ticket).stdout

    bob.run("peer", "add", alice.peer_id(), "alice")
    assert "notes.txt" in bob.run("remote", "list", "alice").stdout


# -- interruptions and failures -------------------------------------------------------------------


def test_an_interrupted_get_resumes_when_run_again(
    alice: Node, bob: Node, server: Process, big_file: Path
) -> None:
    ticket = alice.share(big_file, "--open", "--reference")
    dest = bob.cwd / "big.bin"
    first = bob.spawn("get", ticket)
    _wait_for_partial(bob, 8 << 20, first)
    first.stop(signal.SIGKILL)
    assert not dest.exists(), "the transfer finished before it could be interrupted"

    shown = stats(bob, "get", ticket)
    assert isinstance(shown["present"], int)
    assert shown["present"] >= 4 << 20
    assert shown["total"] == BIG
    assert isinstance(shown["received"], int)
    assert shown["received"] < BIG
    assert dest.read_bytes() == big_file.read_bytes()
    server.wait_for(r"big\.bin: complete")
    served = [line.split("  ")[-1] for line in server.lines if "big.bin" in line]
    assert [line.split(":")[1].split(",")[0].strip() for line in served] == [
        "interrupted",
        "complete",
    ], "the killed receiver's upload is logged when it comes back, before the new one ends"


def test_ctrl_c_stops_a_get_with_exit_130(
    alice: Node, bob: Node, server: Process, big_file: Path
) -> None:
    ticket = alice.share(big_file, "--open", "--reference")
    get = bob.spawn("get", ticket)
    _wait_for_partial(bob, 4 << 20, get)
    assert get.stop(signal.SIGINT) == 130
    assert "interrupted" in "".join(get.lines)
    assert "run the same command to resume" in "".join(get.lines)


def test_get_refuses_to_overwrite_without_force(
    alice: Node, bob: Node, server: Process, a_file: Path
) -> None:
    ticket = alice.share(a_file, "--open")
    (bob.cwd / "notes.txt").write_text("mine")
    err = bob.run("get", ticket, code=10).stderr
    assert "already exists" in err
    assert (bob.cwd / "notes.txt").read_text() == "mine"
    bob.run("get", ticket, "--force")
    assert (bob.cwd / "notes.txt").read_bytes() == a_file.read_bytes()


def test_get_from_a_sharer_that_is_not_serving_says_so_once_likely_cause_first(
    alice: Node, bob: Node, a_file: Path
) -> None:
    ticket = alice.share(a_file, "--open")
    bob.peer_id()
    err = bob.run("get", ticket, code=7, timeout=120).stderr
    assert err.splitlines()[0] == (
        "ringdrop: transfer failed: the sharer did not answer: is `ringdrop serve` (or the TUI) "
        "running on the sharer's machine?"
    )
    assert err.count("Could not reach") == 1
    assert "retrying" not in err
    error = bob.json("get", ticket, code=7)
    assert isinstance(error, dict)
    assert error["error"]["type"] == "UnreachableError"
    assert len(error["error"]["notes"]) == 1


def test_a_second_server_names_the_first(alice: Node, server: Process) -> None:
    err = alice.run("serve", code=10).stderr
    assert str(server.popen.pid) in err


def test_serve_stops_cleanly_on_ctrl_c(alice: Node) -> None:
    process = alice.spawn("serve")
    process.wait_for(r"^serving as ")
    assert process.stop(signal.SIGINT) == 0
    assert process.lines[-1].strip() == "stopped (SIGINT)"


def _wait_for_partial(node: Node, at_least: int, process: Process, timeout: float = 60) -> None:
    """Waits until `node` has `at_least` bytes of downloads in progress on disk."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        written = sum(p.stat().st_blocks * 512 for p in (node.data_dir / "partial").glob("*.data"))
        if written >= at_least:
            return
        assert process.popen.poll() is None, "".join(process.lines)
        time.sleep(0.02)
    raise AssertionError(f"the download did not reach {at_least} bytes in {timeout} s")


def test_demo_says_it_deletes_what_it_made_unless_kept(tmp_path: Path) -> None:
    env = {k: v for k, v in cli_env().items() if k != "RINGDROP_ADDRESSES"}
    result = ringdrop(["demo", "--size-mib", "1"], cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    last = result.stdout.strip().splitlines()[-1]
    found = re.fullmatch(
        r"The demo's folder, data directories and received copy were in (\S+), now deleted; "
        r"`ringdrop demo --keep` keeps them to look at\.",
        last,
    )
    assert found is not None, last
    assert f"into {found[1]}/bob-got/demo-folder" in " ".join(result.stdout.split())
    assert not Path(found[1]).exists()


def test_demo_shares_refuses_and_receives_on_loopback(tmp_path: Path) -> None:
    # Without RINGDROP_ADDRESSES: the demo names loopback itself, and must not do it by setting
    # the variable for the whole process (which `ringdrop` refuses in this process).
    env = {k: v for k, v in cli_env().items() if k != "RINGDROP_ADDRESSES"}
    result = ringdrop(["demo", "--size-mib", "4", "--keep"], cwd=tmp_path, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "refused, as she should be" in result.stdout
    assert "received 22 files, 4.0 MiB" in result.stdout
    work = Path(result.stdout.strip().splitlines()[-1].split(": ", 1)[1])
    received = work / "bob-got" / "demo-folder"
    for original in (work / "demo-folder").rglob("*"):
        if original.is_file():
            copy = received / original.relative_to(work / "demo-folder")
            assert copy.read_bytes() == original.read_bytes()


# -- send and receive -----------------------------------------------------------------------------


def test_send_serves_until_received_once_then_exits(alice: Node, bob: Node, a_folder: Path) -> None:
    sending = alice.spawn("send", a_folder)
    line = sending.wait_for(r"^  ringdrop receive rdrop:")
    ticket = line.split()[-1]
    sending.wait_for(r"^Waiting for the receiver")
    bob.run("receive", ticket)
    assert tree(bob.cwd / "photos") == tree(a_folder)
    code = sending.popen.wait(30)
    sending.stop(signal.SIGTERM)
    out = "".join(sending.lines)
    assert code == 0, out
    size = display.size(sum(p.stat().st_size for p in a_folder.rglob("*") if p.is_file()))
    assert (
        f"Sending photos (folder, {size}): anyone with the ticket may fetch it, until it has "
        "been fetched once."
    ) in out
    assert f"Fetched by {bob.peer_id()}. Nothing more is offered" in out
    assert "Nothing is shared" in alice.run("blob", "list").stdout


def test_send_times_two_waits_for_two_receivers(
    alice: Node, bob: Node, a_file: Path, tmp_path: Path
) -> None:
    carol = Node(tmp_path / "carol", tmp_path / "carol-cwd")
    carol.cwd.mkdir()
    sending = alice.spawn("send", a_file, "--times", "2")
    ticket = sending.wait_for(r"^  ringdrop receive rdrop:").split()[-1]
    bob.run("receive", ticket)
    assert sending.popen.poll() is None, "one receiver of two: still sending"
    carol.run("get", ticket)
    assert sending.popen.wait(30) == 0
    sending.stop(signal.SIGTERM)
    assert (carol.cwd / "notes.txt").read_bytes() == a_file.read_bytes()
    assert any("(2 of 2)" in line for line in sending.lines), sending.lines


def test_send_text_is_printed_by_the_receiver(alice: Node, bob: Node) -> None:
    message = "the door code is 4711\nsee you at 8 ✓"
    sending = alice.spawn("send", "--text", message)
    ticket = sending.wait_for(r"^  ringdrop receive rdrop:").split()[-1]
    shown = bob.run("receive", ticket)
    assert shown.stdout == message + "\n"
    assert not list(bob.cwd.iterdir()), "nothing written"
    assert sending.popen.wait(30) == 0
    sending.stop(signal.SIGTERM)
    assert any(line.startswith("Sending a text (") for line in sending.lines)


def test_ctrl_c_stops_a_send_and_its_ticket(alice: Node, bob: Node, a_file: Path) -> None:
    sending = alice.spawn("send", a_file)
    ticket = sending.wait_for(r"^  ringdrop receive rdrop:").split()[-1]
    sending.wait_for(r"^Waiting for the receiver")
    code = sending.stop(signal.SIGINT)
    assert code == 130
    assert "".join(sending.lines).endswith(
        "ringdrop: interrupted\n  nothing more is offered: the ticket no longer works\n"
    )
    bob.peer_id()
    bob.run("receive", ticket, code=7)
