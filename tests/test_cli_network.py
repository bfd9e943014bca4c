"""The `ringdrop` command line over real QUIC on loopback: two data directories, `serve` in one
process and `get`, `remote list` in others, as a sharer and a receiver would use them."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

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


def test_get_from_a_sharer_that_is_not_serving_exits_7(
    alice: Node, bob: Node, a_file: Path
) -> None:
    ticket = alice.share(a_file, "--open")
    err = bob.run("get", ticket, "--attempts", "1", code=7, timeout=120).stderr
    assert err.startswith("ringdrop: transfer failed: ")
    assert "run the same command again" in err


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
