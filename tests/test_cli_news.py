"""A ring's news between real `ringdrop` processes on loopback: a share to a ring reaches a
serving member's inbox with no ticket pasted, a member that was offline gets what it missed by
asking when it starts serving, a followed ring fills a folder (what is over the cap waits in the
inbox), a withdrawal marks the inbox, and a stranger or a removed member is told nothing.

Nodes find each other by key through a real iroh-dns-server (tests/dns_server.py) where the
test says so; the catch-up test has no discovery at all, so that only the member's own request
can bring the news.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import stat
import time
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from tests.cli_util import Node, Process
from tests.dns_server import IrohDnsServer, iroh_dns
from tests.files import mounted, pseudo_random, write

__all__ = ["iroh_dns"]

T = TypeVar("T")
_FAILSAFE = 60.0


@contextlib.contextmanager
def serving(node: Node, *args: str) -> Iterator[Process]:
    """`ringdrop serve ARGS` for `node` until the block ends, then SIGTERM."""
    process = node.spawn("serve", *args)
    try:
        process.wait_for(r"^serving as ")
        yield process
    finally:
        process.stop(signal.SIGTERM)


def eventually(find: Callable[[], T | None], what: str, timeout: float = _FAILSAFE) -> T:
    """What `find` returns once it returns something, looked for until `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        found = find()
        if found:
            return found
        assert time.monotonic() < deadline, f"waited {timeout:g} s for {what}"
        time.sleep(0.1)


def inbox(node: Node) -> list[dict[str, Any]]:
    shown = node.json("inbox")
    assert isinstance(shown, dict)
    entries: list[dict[str, Any]] = shown["entries"]
    return entries


def entry(node: Node, name: str) -> dict[str, Any] | None:
    return next((e for e in inbox(node) if e["name"] == name), None)


def nodes(tmp_path: Path, *names: str, env: dict[str, str] | None = None) -> list[Node]:
    return [Node(tmp_path / name, tmp_path, dict(env or {})) for name in names]


def family(tmp_path: Path, iroh_dns: IrohDnsServer) -> list[Node]:
    """Nodes a and b, on `iroh_dns`; a owns the ring "family", which lists b."""
    a, b = nodes(tmp_path, "a", "b", env=iroh_dns.env())
    a.run("ring", "new", "family")
    a.run("ring", "add", "family", b.peer_id())
    return [a, b]


def test_a_share_to_a_ring_reaches_a_serving_members_inbox_and_inbox_get_fetches_it(
    tmp_path: Path, iroh_dns: IrohDnsServer
) -> None:
    a, b = family(tmp_path, iroh_dns)
    b.run("peer", "add", a.peer_id(), "mum")
    data = pseudo_random(3 * 1024 * 1024, seed=1)
    report = write(tmp_path / "report.pdf", data)
    with serving(b, "--publish-addresses") as b_serve, serving(a) as a_serve:
        b_serve.wait_for("record published")  # A finds B by its key
        started = time.monotonic()
        a.run("share", report, "--ring", "family")
        arrived = eventually(lambda: entry(b, "report.pdf"), "the share in B's inbox")
        print(f"announced to the inbox in {time.monotonic() - started:.2f} s")
        assert (arrived["ring"], arrived["nickname"], arrived["sharer"]) == (
            "family",
            "mum",
            a.peer_id(),
        )
        assert (arrived["size"], arrived["format"], arrived["state"]) == (len(data), "blob", "new")
        assert arrived["arrived"] == "pushed"  # A's node told B's: nobody pasted a ticket
        a_serve.wait_for(r"announced report\.pdf to mum|announced report\.pdf to " + b.peer_id())
        b_serve.wait_for(rf"inbox {arrived['id']}: report\.pdf \(3\.0 MiB\) from mum")

        got = b.json("inbox", "get", str(arrived["id"]), "--dest", str(tmp_path / "out") + "/")
        assert isinstance(got, dict)
        assert (tmp_path / "out" / "report.pdf").read_bytes() == data
        assert got["received"][0]["dest"] == str(tmp_path / "out" / "report.pdf")
        fetched = entry(b, "report.pdf")
        assert fetched is not None
        assert (fetched["state"], fetched["path"]) == (
            "received",
            str(tmp_path / "out" / "report.pdf"),
        )

        # Detaching it from the ring withdraws it; the copy received stays.
        a.run("blob", "detach", "report.pdf", "family")
        eventually(
            lambda: (e := entry(b, "report.pdf")) and e["state"] == "withdrawn", "the withdrawal"
        )
        assert (tmp_path / "out" / "report.pdf").read_bytes() == data


def test_a_member_that_was_offline_gets_what_it_missed_by_asking_when_it_starts_serving(
    tmp_path: Path,
) -> None:
    # No discovery: the owner has no way to reach B, so only B's own request brings the news.
    a, b = nodes(tmp_path, "a", "b")
    a.run("ring", "new", "family")
    a.run("ring", "add", "family", b.peer_id())
    first = a.share(write(tmp_path / "first.txt", b"the first"), "--ring", "family")
    b.run("peer", "add", a.peer_id(), "mum")
    with serving(a) as a_serve:
        b.run("get", first, "--dest", str(tmp_path / "got") + "/")  # B learns where A is
        items = {
            name: write(tmp_path / name, pseudo_random(200_000, seed=n))
            for n, name in enumerate(["one.bin", "two.bin"])
        }
        for path in items.values():
            a.run("share", path, "--ring", "family")
        a_serve.wait_for("could not announce 'family''s news to")  # B is offline
        assert inbox(b) == []
        with serving(b) as b_serve:
            for name in items:
                found = eventually(partial(entry, b, name), f"{name} in B's inbox")
                assert found["arrived"] == "asked"
                assert found["state"] == "new"
            b_serve.wait_for(r"inbox \d+: two\.bin")
        a_serve.wait_for(r"since: complete")
        b.run("inbox", "dismiss", str(_id(b, "first.txt")))
        got = b.json("inbox", "get", "all", "--dest", str(tmp_path / "b") + "/")
        assert isinstance(got, dict)
        assert sorted(r["name"] for r in got["received"]) == sorted(items)
        for name, path in items.items():
            assert (tmp_path / "b" / name).read_bytes() == path.read_bytes()
    assert not (tmp_path / "b" / "first.txt").exists()
    assert {e["name"]: e["state"] for e in inbox(b)} == {
        "first.txt": "dismissed",
        "one.bin": "received",
        "two.bin": "received",
    }


def test_a_member_that_was_offline_is_told_by_the_owners_retries_once_it_can_be_reached(
    tmp_path: Path, iroh_dns: IrohDnsServer
) -> None:
    # B has never reached A (it holds no manifest and no address of A) and follows nothing:
    # it has nobody to ask, so only A trying again can bring the news.
    a, b = family(tmp_path, iroh_dns)
    b.run("peer", "add", a.peer_id(), "mum")
    note = write(tmp_path / "note.txt", b"while you were away")
    with serving(a) as a_serve:
        a.run("share", note, "--ring", "family")
        a_serve.wait_for("could not announce 'family''s news to")  # B is not serving
        with serving(b, "--publish-addresses") as b_serve:
            b_serve.wait_for("record published")
            # A's retries come 5 s after the first failure, then twice as long each time.
            found = eventually(partial(entry, b, "note.txt"), "A's retry", timeout=180)
            assert (found["arrived"], found["state"]) == ("pushed", "new")
            a_serve.wait_for(r"announced note\.txt to ")
    assert not [line for line in a_serve.lines if "since" in line]  # B asked nothing


def _id(node: Node, name: str) -> int:
    found = entry(node, name)
    assert found is not None
    return int(found["id"])


def test_a_followed_ring_fills_its_folder_and_what_exceeds_the_cap_waits_in_the_inbox(
    tmp_path: Path, iroh_dns: IrohDnsServer
) -> None:
    a, b = family(tmp_path, iroh_dns)
    into = tmp_path / "family-photos"
    followed = b.json("follow", a.peer_id(), "family", "--into", str(into), "--max-size", "65M")
    assert isinstance(followed, dict)
    assert (followed["ring"], followed["into"], followed["max_size"]) == (
        "family",
        str(into),
        65 * 1024 * 1024,
    )
    big = write(tmp_path / "video.mp4", pseudo_random(64 * 1024 * 1024, seed=2))
    big.chmod(0o755)
    os.utime(big, ns=(1_690_000_000_987_654_321, 1_690_000_000_987_654_321))
    folder = tmp_path / "album"
    write(folder / "a.jpg", pseudo_random(300_000, seed=3))
    write(folder / "2026" / "b.jpg", pseudo_random(5000, seed=4))
    script = write(folder / "run.sh", b"#!/bin/sh\necho hi\n")
    script.chmod(0o755)
    os.utime(folder / "a.jpg", ns=(1_700_000_000_123_456_789, 1_700_000_000_123_456_789))
    too_big = write(tmp_path / "huge.iso", pseudo_random(65 * 1024 * 1024 + 1, seed=5))
    with serving(b, "--publish-addresses") as b_serve, serving(a, "--publish-addresses"):
        b_serve.wait_for("record published")
        a.run("share", big, "--ring", "family")
        a.run("share", folder, "--ring", "family")
        a.run("share", too_big, "--ring", "family")
        b_serve.wait_for(r"followed 'family': received video\.mp4", timeout=300)
        b_serve.wait_for(r"followed 'family': received album", timeout=300)
        waits = b_serve.wait_for(r"followed 'family': huge\.iso .* waits in the inbox", 300)
        assert "cap" in waits
    assert (into / "video.mp4").read_bytes() == big.read_bytes()
    assert (into / "video.mp4").stat().st_mtime_ns == 1_690_000_000_987_654_321
    assert (into / "video.mp4").stat().st_mode & stat.S_IXUSR
    for name in ("a.jpg", "2026/b.jpg", "run.sh"):
        assert (into / "album" / name).read_bytes() == (folder / name).read_bytes()
    assert (into / "album" / "a.jpg").stat().st_mtime_ns == 1_700_000_000_123_456_789
    assert (into / "album" / "run.sh").stat().st_mode & stat.S_IXUSR
    assert not (into / "album" / "a.jpg").stat().st_mode & stat.S_IXUSR
    assert not (into / "huge.iso").exists()
    states = {e["name"]: (e["state"], e["note"]) for e in inbox(b)}
    assert states["video.mp4"][0] == "received"
    assert states["album"][0] == "received"
    assert states["huge.iso"][0] == "new"
    assert "cap" in states["huge.iso"][1]
    listed = b.json("follow")
    assert isinstance(listed, dict)
    assert [f["ring"] for f in listed["follows"]] == ["family"]


def test_a_stranger_and_a_removed_member_are_told_nothing(
    tmp_path: Path, iroh_dns: IrohDnsServer
) -> None:
    a, b, m, s = nodes(tmp_path, "a", "b", "m", "s", env=iroh_dns.env())
    a.run("ring", "new", "family")
    for member in (b, m):
        a.run("ring", "add", "family", member.peer_id())
    for node in (b, m, s):
        node.run("peer", "add", a.peer_id(), "mum")  # all of them would listen to A
    first = write(tmp_path / "first.txt", b"for the ring")
    second = write(tmp_path / "second.txt", b"after M left")
    third = write(tmp_path / "third.txt", b"later still")
    with contextlib.ExitStack() as stack:
        served = {
            name: stack.enter_context(serving(node, "--publish-addresses"))
            for name, node in (("b", b), ("m", m), ("s", s))
        }
        for process in served.values():
            process.wait_for("record published")
        a_serve = stack.enter_context(serving(a, "--publish-addresses"))
        a.run("share", first, "--ring", "family")
        for node in (b, m):
            eventually(partial(entry, node, "first.txt"), "the first share")
        a.run("ring", "remove", "family", m.peer_id())
        a.run("share", second, "--ring", "family")
        a.run("share", third, "--ring", "family")
        eventually(lambda: entry(b, "third.txt"), "the third share in B's inbox")
        a_serve.wait_for(r"announced .* to " + re.escape(b.peer_id()))
    assert [e["name"] for e in inbox(m)] == ["first.txt"]
    assert inbox(s) == []
    assert not [line for line in served["s"].lines if "announce" in line]
    assert len([line for line in served["m"].lines if " announce" in line]) == 1


def test_inbox_commands_say_what_is_wrong_and_a_follow_can_be_undone(tmp_path: Path) -> None:
    b, a = nodes(tmp_path, "b", "a")
    assert inbox(b) == []
    done = b.run("inbox", "get", "7", code=5)
    assert "no entry 7" in done.stderr
    done = b.run("inbox", "get", "seven", code=2)
    assert "'seven' is not an inbox id (a number) or all" in done.stderr
    b.run("inbox", "dismiss", "7", code=5)
    b.run("follow", "zzzzzzzz", "family", "--into", str(tmp_path / "x"), code=5)
    assert not (tmp_path / "x").exists()
    b.run("unfollow", b.peer_id(), "family", code=5)
    assert b.json("follow") == {"follows": []}

    owner = a.peer_id()
    b.run("follow", owner, "family", "--into", str(tmp_path / "family"), "--max-size", "2G")
    listed = b.json("follow")
    assert isinstance(listed, dict)
    assert [(f["ring"], f["max_size"]) for f in listed["follows"]] == [("family", 2 << 30)]
    b.run("unfollow", owner, "family")
    assert b.json("follow") == {"follows": []}


def test_a_follow_into_a_full_disk_waits_in_the_inbox_loses_nothing_and_goes_on(
    tmp_path: Path, iroh_dns: IrohDnsServer
) -> None:
    a, b = family(tmp_path, iroh_dns)
    into = tmp_path / "small-disk"
    into.mkdir()
    big = write(tmp_path / "big.bin", pseudo_random(12 * 1024 * 1024, seed=6))
    small = write(tmp_path / "small.bin", pseudo_random(100_000, seed=7))
    with mounted(into, "-t", "tmpfs", "-o", "size=8m", "tmpfs"):
        b.run("follow", a.peer_id(), "family", "--into", str(into))
        with serving(b, "--publish-addresses") as b_serve, serving(a, "--publish-addresses"):
            b_serve.wait_for("record published")
            a.run("share", big, "--ring", "family")
            waits = b_serve.wait_for(r"followed 'family': big\.bin .* waits in the inbox", 300)
            assert str(into) in waits
            assert "needs" in waits
            assert "free" in waits
            a.run("share", small, "--ring", "family")
            b_serve.wait_for(r"followed 'family': received small\.bin", timeout=300)
        assert sorted(p.name for p in into.iterdir()) == ["small.bin"]
        assert (into / "small.bin").read_bytes() == small.read_bytes()
    states = {e["name"]: (e["state"], e["note"]) for e in inbox(b)}
    assert states["small.bin"][0] == "received"
    assert states["big.bin"][0] == "new"
    assert str(into) in states["big.bin"][1]
