"""Receiving into a destination with the `ringdrop` command over real QUIC on loopback: where
--dest puts things, --force and --rename, file metadata, exclusions when sharing, exports
interrupted by Ctrl-C or SIGKILL, and the store handing its copy over instead of copying."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ringdrop import display
from ringdrop.ticket import Ticket

from .cli_util import Node, Process, serve_process
from .files import mounted, tree

MIB = 1 << 20


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    """A small tmpfs: another file system than the data directories'."""
    mount = tmp_path / "other-fs"
    mount.mkdir()
    with mounted(mount, "-t", "tmpfs", "-o", "size=96m", "tmpfs"):
        yield mount


def got(node: Node, *args: str | Path, code: int = 0) -> dict[str, Any]:
    shown = node.json("get", *args, code=code)
    assert isinstance(shown, dict)
    return shown


def data_files(node: Node) -> list[Path]:
    """The data files the store keeps for complete blobs."""
    return sorted((node.data_dir / "blobs").rglob("*.data"))


def disk_used(*folders: Path) -> int:
    """Bytes allocated to the files below `folders`, each inode once (as du counts)."""
    seen: set[tuple[int, int]] = set()
    used = 0
    for folder in folders:
        for path in folder.rglob("*"):
            st = path.lstat()
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                used += st.st_blocks * 512
    return used


# -- where --dest puts things ---------------------------------------------------------------------


def test_a_read_only_destination_is_named_and_exits_11_keeping_what_was_received(
    alice: Node, bob: Node, server: Process, a_file: Path, tmp_path: Path
) -> None:
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    ticket = alice.share(a_file, "--open")
    bob.peer_id()
    with mounted(read_only, "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs"):
        err = bob.run("get", ticket, "--dest", read_only, code=11).stderr
    first, hint = err.splitlines()
    assert first == (
        f"ringdrop: destination: cannot write in {read_only}: the file system is read-only"
    )
    assert "--dest" in hint
    shown = got(bob, ticket, "--dest", bob.cwd)
    assert shown["present"] == shown["total"] == a_file.stat().st_size
    assert (bob.cwd / a_file.name).read_bytes() == a_file.read_bytes()


def test_a_file_to_a_new_path_is_that_file(
    alice: Node, bob: Node, server: Process, a_file: Path
) -> None:
    ticket = alice.share(a_file, "--open")
    shown = got(bob, ticket, "--dest", bob.cwd / "out.bin")
    assert (bob.cwd / "out.bin").read_bytes() == a_file.read_bytes()
    assert shown["dest"] == str(bob.cwd / "out.bin")


def test_a_folder_to_a_new_path_is_that_folder(
    alice: Node, bob: Node, server: Process, a_folder: Path
) -> None:
    ticket = alice.share(a_folder, "--open")
    bob.run("get", ticket, "--dest", bob.cwd / "holiday")
    assert tree(bob.cwd / "holiday") == tree(a_folder)


def test_a_dest_ending_in_a_slash_is_a_folder_to_create(
    alice: Node, bob: Node, server: Process, a_file: Path
) -> None:
    out = bob.run("get", alice.share(a_file, "--open"), "--dest", f"{bob.cwd}/new/").stdout
    assert (bob.cwd / "new" / "notes.txt").read_bytes() == a_file.read_bytes()
    assert "put in place without copying: the data directory keeps a reference to it" in out


def test_an_existing_folder_receives_it_under_its_name(
    alice: Node, bob: Node, server: Process, a_file: Path, a_folder: Path
) -> None:
    (bob.cwd / "in").mkdir()
    bob.run("get", alice.share(a_file, "--open"), "--dest", bob.cwd / "in")
    bob.run("get", alice.share(a_folder, "--open"), "--dest", bob.cwd / "in")
    assert (bob.cwd / "in" / "notes.txt").read_bytes() == a_file.read_bytes()
    assert tree(bob.cwd / "in" / "photos") == tree(a_folder)
    assert sorted(os.listdir(bob.cwd / "in")) == ["notes.txt", "photos"]


def test_rename_twice_keeps_everything(
    alice: Node, bob: Node, server: Process, a_file: Path, a_folder: Path
) -> None:
    ticket = alice.share(a_file, "--open")
    (bob.cwd / "notes.txt").write_text("mine")
    err = bob.run("get", ticket, code=10).stderr
    assert (
        "notes.txt already exists\n  Use --force to overwrite it, or --rename to keep both" in err
    )
    first = got(bob, ticket, "--rename")
    second = got(bob, ticket, "--rename")
    assert (first["dest"], second["dest"]) == (
        str(bob.cwd / "notes (1).txt"),
        str(bob.cwd / "notes (2).txt"),
    )
    assert (bob.cwd / "notes.txt").read_text() == "mine"
    assert (bob.cwd / "notes (1).txt").read_bytes() == a_file.read_bytes()
    assert (bob.cwd / "notes (2).txt").read_bytes() == a_file.read_bytes()
    folder = alice.share(a_folder, "--open")
    bob.run("get", folder)
    bob.run("get", folder, "--rename")
    bob.run("get", folder, "--rename")
    assert tree(bob.cwd / "photos (2)") == tree(a_folder)
    bob.run("get", ticket, "--force", "--rename", code=2)


def test_force_overwrites(alice: Node, bob: Node, server: Process, a_file: Path) -> None:
    ticket = alice.share(a_file, "--open")
    (bob.cwd / "mine.txt").write_text("mine")
    bob.run("get", ticket, "--dest", bob.cwd / "mine.txt", code=10)
    bob.run("get", ticket, "--dest", bob.cwd / "mine.txt", "--force")
    assert (bob.cwd / "mine.txt").read_bytes() == a_file.read_bytes()


def test_force_onto_a_folder_replaces_it_whole(
    alice: Node, bob: Node, server: Process, a_folder: Path
) -> None:
    ticket = alice.share(a_folder, "--open")
    old = bob.cwd / "photos"
    (old / "2026").mkdir(parents=True)
    (old / "unrelated.txt").write_text("mine")
    (old / "a.jpg").write_text("old a")
    (old / "2026" / "old.jpg").write_text("old")
    bob.run("get", ticket, code=10)
    assert (old / "unrelated.txt").read_text() == "mine"
    bob.run("get", ticket, "--force")
    assert tree(old) == tree(a_folder)
    assert not [p for p in bob.cwd.iterdir() if p.name.startswith(".ringdrop-")]


def test_get_help_says_force_replaces_a_folder_whole(bob: Node) -> None:
    help_text = " ".join(bob.run("get", "--help").stdout.split())
    assert "--force replace what is already at the destination: a folder is replaced whole" in (
        help_text
    )


# -- metadata and exclusions ----------------------------------------------------------------------


def test_mtime_and_the_executable_bit_round_trip(
    alice: Node, bob: Node, server: Process, a_folder: Path
) -> None:
    when = 1_600_000_000_000_000_000
    for path in a_folder.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(when, when))
    ticket = alice.share(a_folder, "--open")
    bob.run("get", ticket)
    out = bob.cwd / "photos"
    for path in out.rglob("*"):
        if path.is_file():
            assert path.stat().st_mtime_ns == when, path
    assert os.access(out / "run.sh", os.X_OK)
    assert not os.access(out / "a.jpg", os.X_OK)
    assert subprocess.run([out / "run.sh"], capture_output=True, check=True).stdout == b"hello\n"


def test_a_single_file_keeps_its_time_and_executable_bit(
    alice: Node, bob: Node, server: Process, tmp_path: Path
) -> None:
    script = tmp_path / "run.sh"
    script.write_bytes(b"#!/bin/sh\necho single\n")
    script.chmod(0o755)
    when = 1_600_000_000_123_456_789
    os.utime(script, ns=(when, when))
    ticket = alice.share(script, "--open")
    assert (Ticket.decode(ticket).mtime_ns, Ticket.decode(ticket).executable) == (when, True)
    again = alice.run("blob", "ticket", "run.sh").stdout.split()[0]
    assert (Ticket.decode(again).mtime_ns, Ticket.decode(again).executable) == (when, True)
    bob.run("get", ticket)
    got_file = bob.cwd / "run.sh"
    assert got_file.stat().st_mtime_ns == when
    assert os.access(got_file, os.X_OK)
    assert subprocess.run([got_file], capture_output=True, check=True).stdout == b"single\n"
    reshared = bob.run("blob", "ticket", "run.sh").stdout.split()[0]
    assert (Ticket.decode(reshared).mtime_ns, Ticket.decode(reshared).executable) == (when, True)


def test_a_plain_file_stays_plain(alice: Node, bob: Node, server: Process, a_file: Path) -> None:
    a_file.chmod(0o644)
    bob.run("get", alice.share(a_file, "--open"))
    got_file = bob.cwd / a_file.name
    assert not os.access(got_file, os.X_OK)
    assert got_file.stat().st_mtime_ns == a_file.stat().st_mtime_ns


def test_share_leaves_out_excluded_files_and_says_how_many(
    alice: Node, bob: Node, server: Process, a_folder: Path
) -> None:
    (a_folder / "debug.log").write_text("noise")
    (a_folder / "2026" / "more.log").write_text("noise")
    (a_folder / "keep.log").write_text("wanted")
    (a_folder / "build").mkdir()
    (a_folder / "build" / "out.o").write_bytes(b"\x7fELF")
    (a_folder / "secret.key").write_text("no")
    (a_folder / ".ringdropignore").write_text("# private\nsecret.key\n")
    out = alice.run("share", a_folder, "--open", "--exclude", "*.log", "--exclude", "!keep.log",
                    "--exclude", "build/").stdout  # fmt: skip
    assert "Left out 4 files matching --exclude or .ringdropignore." in out
    shown = alice.json("share", a_folder, "--open", "--exclude", "*.log", "--exclude", "build/")
    assert isinstance(shown, dict)
    assert shown["excluded"] == 5
    ticket = next(line.strip() for line in out.splitlines() if line.strip().startswith("rdrop:"))
    bob.run("get", ticket)
    assert sorted(tree(bob.cwd / "photos")) == [
        ".ringdropignore", "2026/b.jpg", "2026/summer/c.jpg", "a.jpg", "empty.txt", "keep.log",
        "run.sh",
    ]  # fmt: skip


def test_exclude_needs_a_folder(alice: Node, a_file: Path) -> None:
    err = alice.run("share", a_file, "--exclude", "*.log", code=2).stderr
    assert "--exclude applies to folders" in err


# -- interrupted exports --------------------------------------------------------------------------


def _wait_for_export(folder: Path, process: Process, timeout: float = 60) -> None:
    """Waits until a temporary export folder appears in `folder`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.name.startswith(".ringdrop-") for p in folder.iterdir()):
            return
        assert process.popen.poll() is None, "".join(process.lines)
        time.sleep(0.005)
    raise AssertionError("the export did not start")


def _held_mid_export(folder: Path, process: Process, files: int) -> None:
    """Waits until the export into `folder` has begun, then holds the process with SIGSTOP, at
    most half way through the export's `files` files: a signal sent now lands mid-export."""
    _wait_for_export(folder, process)
    process.popen.send_signal(signal.SIGSTOP)
    (temporary,) = (p for p in folder.iterdir() if p.name.startswith(".ringdrop-"))
    written = sum(1 for p in temporary.rglob("*") if p.is_file())
    assert written <= files // 2, f"{written} of {files} files were written before the hold"


@pytest.fixture
def a_big_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "big"
    for i in range(48):
        path = folder / f"part-{i // 8}" / f"{i}.bin"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(2 * MIB))
    return folder


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL])
def test_an_interrupted_folder_export_needs_no_force_to_finish(
    alice: Node, bob: Node, server: Process, a_big_folder: Path, sig: signal.Signals
) -> None:
    ticket = alice.share(a_big_folder, "--open", "--reference")
    # --keep makes the export copy (and fsync, and hash again): long enough to interrupt.
    get = bob.spawn("get", ticket, "--keep")
    _held_mid_export(bob.cwd, get, 48)
    code = get.stop(sig)
    assert code == (130 if sig == signal.SIGINT else -signal.SIGKILL), "".join(get.lines)
    if sig == signal.SIGKILL:
        assert not (bob.cwd / "big").exists(), "nothing half-done under that name"
    else:
        # The export's thread stops at its next file once the interrupt reaches it; on a loaded
        # machine it may have placed the whole folder by then. Never a part of it.
        assert not (bob.cwd / "big").exists() or tree(bob.cwd / "big") == tree(a_big_folder)
        assert os.listdir(bob.cwd) in ([], ["big"]), "Ctrl-C removes its temporary folder"
    shown = got(bob, ticket, "--keep")
    assert shown["present"] == shown["total"], "nothing downloaded again"
    assert tree(bob.cwd / "big") == tree(a_big_folder)
    assert os.listdir(bob.cwd) == ["big"]


@pytest.mark.slow
def test_a_folder_replaced_by_force_is_kept_until_the_new_one_is_complete(
    alice: Node, bob: Node, server: Process, a_big_folder: Path
) -> None:
    ticket = alice.share(a_big_folder, "--open", "--reference")
    old = bob.cwd / "big"
    old.mkdir()
    (old / "mine.txt").write_text("mine")
    get = bob.spawn("get", ticket, "--keep", "--force")
    _held_mid_export(bob.cwd, get, 48)
    get.stop(signal.SIGKILL)
    assert tree(old) == {"mine.txt": b"mine"}, "the old one stays until the new one is whole"
    shown = got(bob, ticket, "--keep", "--force")
    assert shown["present"] == shown["total"], "nothing downloaded again"
    assert tree(old) == tree(a_big_folder)
    assert os.listdir(bob.cwd) == ["big"]


@pytest.mark.slow
def test_a_killed_file_export_is_finished_by_the_rerun(
    alice: Node, server: Process, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(64 * MIB))
    ticket = alice.share(big, "--open", "--reference")
    # Killed as soon as the temporary file is there, with a 64 MiB copy, fsync and hash still
    # ahead. A machine busy enough to let the export finish first gets a fresh receiver and
    # another try: the kill must land mid-export at least once, and then the rerun must finish.
    for attempt in range(5):
        bob = Node(tmp_path / f"bob-{attempt}", tmp_path / f"bob-{attempt}-cwd")
        bob.cwd.mkdir()
        get = bob.spawn("get", ticket, "--keep")
        _wait_for_export(bob.cwd, get)
        code = get.stop(signal.SIGKILL)
        out = bob.cwd / "big.bin"
        assert not out.exists() or out.read_bytes() == big.read_bytes(), "never half a file"
        if code == -signal.SIGKILL and not out.exists():
            break
    else:
        raise AssertionError("no kill landed before the export finished, in 5 tries")
    shown = got(bob, ticket, "--keep")
    assert shown["present"] == shown["total"], "nothing downloaded again"
    assert out.read_bytes() == big.read_bytes()
    assert os.listdir(bob.cwd) == ["big.bin"]


def test_the_rate_is_over_what_moved_and_what_was_here_is_said_apart(
    alice: Node, bob: Node, server: Process, a_folder: Path
) -> None:
    (a_folder / "big.bin").write_bytes(os.urandom(3 * MIB))
    first = bob.run("get", alice.share(a_folder / "big.bin", "--open"), "--dest", "elsewhere.bin")
    assert first.stdout.splitlines()[1].startswith("  3.0 MiB in ")
    out = bob.run("get", alice.share(a_folder, "--open")).stdout.splitlines()
    total = sum(p.stat().st_size for p in a_folder.rglob("*") if p.is_file())
    moved = display.size(total - 3 * MIB)
    summary = re.fullmatch(
        rf"  {re.escape(display.size(total))}, 6 files: {re.escape(moved)} fetched in "
        r"([0-9.]+) s \(([0-9.]+) (B|KiB|MiB)/s\), 3\.0 MiB already here",
        out[1],
    )
    assert summary is not None, out
    seconds, rate, unit = float(summary[1]), float(summary[2]), summary[3]
    per_second = rate * {"B": 1, "KiB": 1024, "MiB": MIB}[unit]
    # The time is shown to a tenth of a second, so it took at least 0.05 s less than it says;
    # a rate over the whole would give at least a third of the whole in that time.
    at_least = max(seconds - 0.05, 0.0)
    assert per_second * at_least < 2 * (total - 3 * MIB) + 1024, "not over the whole 3 MiB more"


def test_a_rerun_after_a_finished_get_says_it_is_there(
    alice: Node, bob: Node, server: Process, a_file: Path, a_folder: Path
) -> None:
    for ticket in (alice.share(a_file, "--open"), alice.share(a_folder, "--open")):
        first = got(bob, ticket)
        again = got(bob, ticket)
        assert again["dest"] == first["dest"]
        assert again["present"] == again["total"]
    (bob.cwd / "notes.txt").write_text("edited")
    bob.run("get", alice.share(a_file, "--open"), code=10)
    assert (bob.cwd / "notes.txt").read_text() == "edited"


# -- the store hands its copy over ----------------------------------------------------------------


def test_on_one_file_system_the_content_is_on_disk_once(
    alice: Node, bob: Node, server: Process, tmp_path: Path
) -> None:
    size = 32 * MIB
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(size))
    ticket = alice.share(big, "--open", "--reference")
    shown = got(bob, ticket)
    out = bob.cwd / "big.bin"
    assert out.read_bytes() == big.read_bytes()
    assert (shown["moved"], shown["copied"]) == (size, 0)
    assert data_files(bob) == [], "the store's data file became the exported file"
    assert out.stat().st_nlink == 1
    outboard = size // 16384 * 64
    content = [bob.data_dir / "blobs", bob.data_dir / "partial", bob.data_dir / "tmp", bob.cwd]
    assert disk_used(*content) <= size * 1.01 + outboard
    assert disk_used(bob.data_dir) - disk_used(*content[:3]) < 4 * MIB, "database, keys, config"
    assert "own files are intact" in bob.run("store", "check").stdout


def test_on_another_file_system_the_store_copy_is_released_unless_kept(
    alice: Node, bob: Node, server: Process, tmp_path: Path, tmpfs: Path
) -> None:
    one, two = tmp_path / "one.bin", tmp_path / "two.bin"
    one.write_bytes(os.urandom(8 * MIB))
    two.write_bytes(os.urandom(8 * MIB))
    shown = got(bob, alice.share(one, "--open"), "--dest", tmpfs)
    assert (tmpfs / "one.bin").read_bytes() == one.read_bytes()
    assert (shown["moved"], shown["copied"]) == (0, 8 * MIB)
    assert data_files(bob) == [], "copied, then released"
    got(bob, alice.share(two, "--open"), "--dest", tmpfs, "--keep")
    assert (tmpfs / "two.bin").read_bytes() == two.read_bytes()
    assert len(data_files(bob)) == 1, "--keep keeps the store's copy"
    assert "own files are intact" in bob.run("store", "check").stdout


def test_free_space_is_asked_of_the_file_system_that_needs_it(
    alice: Node, bob: Node, server: Process, tmp_path: Path, tmpfs: Path
) -> None:
    big = tmp_path / "big.bin"
    with big.open("wb") as f:
        f.truncate(200 * MIB)  # more than the 96 MiB tmpfs holds, sparse on the sender
    ticket = alice.share(big, "--open", "--reference")
    err = bob.run("get", ticket, "--dest", tmpfs, code=8).stderr
    assert "writing big.bin needs 200.0 MiB" in err
    assert str(tmpfs) in err


def test_store_check_after_editing_a_received_file_forgets_it_and_exits_0(
    alice: Node, bob: Node, server: Process, a_folder: Path
) -> None:
    ticket = alice.share(a_folder, "--open")
    bob.run("get", ticket)
    edited = bob.cwd / "photos" / "a.jpg"
    edited.write_bytes(b"my own version")
    check = bob.run("store", "check").stdout.splitlines()
    assert check[0] == f"{edited}: changed outside ringdrop (edited), no longer shared"
    assert check[-1].endswith("checked: the data directory's own files are intact.")
    assert bob.run("store", "check").stdout.splitlines()[0].endswith("own files are intact.")
    shown = got(bob, ticket, "--dest", bob.cwd / "again")
    assert shown["received"] >= 200_000, "the edited member is fetched again"
    assert tree(bob.cwd / "again") == tree(a_folder)


# -- received content re-shared -------------------------------------------------------------------


def test_received_content_is_reshared_intact_and_an_edit_is_caught(
    alice: Node, bob: Node, server: Process, tmp_path: Path
) -> None:
    carol = Node(tmp_path / "carol", tmp_path / "carol-cwd")
    carol.cwd.mkdir()
    original = tmp_path / "film.bin"
    original.write_bytes(os.urandom(4 * MIB))
    ticket = alice.share(original, "--open")
    bob_got = got(bob, ticket)
    bob.run("blob", "attach", bob_got["hash"][:12], "open")
    reshared = bob.run("blob", "ticket", bob_got["hash"][:12]).stdout.split()[0]
    with serve_process(bob):
        carol.run("get", reshared)
        assert (carol.cwd / "film.bin").read_bytes() == original.read_bytes()

        exported = bob.cwd / "film.bin"
        with exported.open("r+b") as f:
            f.seek(MIB)
            f.write(b"edited by bob")
        (carol.cwd / "film.bin").unlink()
        carol.run("store", "gc")
        for blob in carol.json("blob", "list")["shares"]:  # type: ignore[index]
            carol.run("blob", "remove", blob["hash"][:12])
        carol.run("store", "gc")
        err = carol.run("get", reshared, "--attempts", "1", code=7).stderr
        assert "changed" in err
        assert not (carol.cwd / "film.bin").exists()
        check = bob.run("store", "check")
        assert check.stdout.splitlines()[0] == (
            f"{exported}: changed outside ringdrop (edited), no longer shared"
        )
        assert "intact" in bob.run("store", "check").stdout
        carol.run("get", reshared, code=5)
