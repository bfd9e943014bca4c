"""Sending once (`Node.send`) over real QUIC on loopback: served until the receivers asked for
have fetched all of it, then nothing more is offered; a text is shown, not saved."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from ringdrop.errors import AccessDeniedError, NotFoundError, UsageError
from ringdrop.node import Fetched, Node, Sent, Share, is_text
from ringdrop.ticket import Ticket
from tests.files import pseudo_random, tree, write

Receive = Callable[[Ticket], Awaitable[Any]]


async def sending(
    sender: Node, receive: Receive, **options: Any
) -> tuple[Sent, list[Fetched], Share]:
    """Runs `sender.send(**options)`, and `receive(ticket)` once the server listens."""
    shared: asyncio.Future[Share] = asyncio.get_running_loop().create_future()
    fetched: list[Fetched] = []
    task = asyncio.create_task(
        sender.send(host="127.0.0.1", ready=shared.set_result, on_fetched=fetched.append, **options)
    )
    share = await asyncio.wait_for(shared, 20)
    await receive(share.ticket)
    return await asyncio.wait_for(task, 30), fetched, share


async def test_a_file_is_served_until_it_has_been_fetched_once_then_no_more(
    sharer: Node, receiver: Node, tmp_path: Path
) -> None:
    data = pseudo_random(3 * 2**20 + 5)
    path = write(tmp_path / "film.bin", data)
    out = tmp_path / "out"
    out.mkdir()
    sent, fetched, share = await sending(
        sharer, lambda ticket: receiver.get(ticket, out), path=path
    )
    assert (out / "film.bin").read_bytes() == data
    assert share.rings == ("open",), "anyone with the ticket, by default"
    assert [f.peer for f in sent.receivers] == [str(receiver.peer_id)]
    assert fetched == list(sent.receivers)
    assert sharer.shares() == [], "no longer offered, nor listed"
    assert sharer._access.attachments(share.root) == []
    with Node(tmp_path / "late") as late, pytest.raises(Exception, match="did not answer"):
        await late.get(share.ticket, tmp_path / "late-out")


async def test_a_folder_counts_as_fetched_once_every_file_went_out(
    sharer: Node, receiver: Node, tmp_path: Path, a_folder: Path
) -> None:
    write(a_folder / "big.bin", pseudo_random(2**20))
    out = tmp_path / "out"
    out.mkdir()
    sent, _, _ = await sending(sharer, lambda ticket: receiver.get(ticket, out), path=a_folder)
    assert tree(out / "photos") == tree(a_folder)
    assert len(sent.receivers) == 1


async def test_times_waits_for_that_many_receivers(
    sharer: Node, receiver: Node, tmp_path: Path
) -> None:
    path = write(tmp_path / "notes.txt", b"notes " * 1000)
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with Node(tmp_path / "second") as second:
        gets: list[Any] = []

        async def both(ticket: Ticket) -> None:
            gets.append(await receiver.get(ticket, tmp_path / "one"))
            gets.append(await second.get(ticket, tmp_path / "two"))

        sent, _, _ = await sending(sharer, both, path=path, times=2)
        assert {f.peer for f in sent.receivers} == {str(receiver.peer_id), str(second.peer_id)}
    assert len(gets) == 2


async def test_with_a_ring_only_its_members_may_fetch(
    sharer: Node, receiver: Node, tmp_path: Path
) -> None:
    sharer.create_ring("friends")
    sharer.add_member("friends", str(receiver.peer_id))
    path = write(tmp_path / "notes.txt", b"for friends")
    (tmp_path / "in").mkdir()
    denied: list[BaseException] = []

    async def stranger_then_friend(ticket: Ticket) -> None:
        with Node(tmp_path / "stranger") as stranger:
            try:
                await stranger.get(ticket, tmp_path / "stranger-out")
            except AccessDeniedError as error:
                denied.append(error)
        await receiver.get(ticket, tmp_path / "in")

    sent, _, share = await sending(sharer, stranger_then_friend, path=path, rings=["friends"])
    assert [f.peer for f in sent.receivers] == [str(receiver.peer_id)]
    assert share.rings == ("friends",)
    assert len(denied) == 1
    assert (tmp_path / "in" / "notes.txt").read_bytes() == b"for friends"
    assert sharer._access.attachments(share.root) == []


async def test_a_text_is_shown_not_saved(sharer: Node, receiver: Node, tmp_path: Path) -> None:
    message = "the door code is 4711 ✓"
    shown: list[str] = []

    async def show(ticket: Ticket) -> None:
        assert is_text(ticket)
        shown.append(await receiver.get_text(ticket))

    sent, _, _ = await sending(sharer, show, text=message)
    assert shown == [message]
    assert len(sent.receivers) == 1
    assert receiver.shares() == [], "a text is not kept as something received to share"


async def test_sending_nothing_or_to_an_unknown_ring_is_refused(
    sharer: Node, tmp_path: Path
) -> None:
    with pytest.raises(UsageError):
        await sharer.send()
    with pytest.raises(UsageError):
        await sharer.send(tmp_path, text="both")
    with pytest.raises(NotFoundError, match="no ring called 'nosuch'"):
        await sharer.send(text="hello", rings=["nosuch"])
    with pytest.raises(UsageError, match="text may have 65536 bytes"):
        await sharer.send(text="x" * 70_000)
    assert sharer.shares() == []


async def test_cancelled_before_anyone_fetched_it_offers_nothing_more(
    sharer: Node, tmp_path: Path
) -> None:
    path = write(tmp_path / "notes.txt", b"notes")
    shared: asyncio.Future[Share] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(sharer.send(path, host="127.0.0.1", ready=shared.set_result))
    share = await asyncio.wait_for(shared, 20)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sharer.shares() == []
    assert sharer._access.attachments(share.root) == []
