"""A serving node's news loops end when serving ends, even when the cancellation comes just as
a loop is woken (asyncio.wait_for of Python 3.11 then returns instead of raising, and the loop
ran on: a serving node's teardown hung). Real nodes on disk; nothing on the network."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import nacl.signing

from ringdrop.identity import Identity
from ringdrop.node import Node
from ringdrop.node.news import Announcer, Follower


def between_rounds(task: asyncio.Task[None]) -> bool:
    """Whether the loop `task` runs is waiting to be woken (not in a round)."""
    awaiting = getattr(task.get_coro(), "cr_await", None)
    return awaiting is not None and getattr(awaiting, "__name__", None) != "_round"


async def cancelled_as_woken(loop: Coroutine[Any, Any, None], wake: Callable[[], None]) -> None:
    task = asyncio.create_task(loop)
    deadline = time.monotonic() + 30
    while not between_rounds(task):
        assert time.monotonic() < deadline, "the loop never waited between rounds"
        await asyncio.sleep(0.01)
    wake()
    task.cancel()  # in the same turn of the event loop as the wake
    done, _ = await asyncio.wait({task}, timeout=30)
    if not done:
        task.cancel()
        await asyncio.wait({task}, timeout=30)
    assert done, "the loop went on after it was cancelled"
    assert task.cancelled()


async def test_the_announcer_ends_when_cancelled_as_a_member_is_heard_from(
    tmp_path: Path,
) -> None:
    member = Identity(nacl.signing.SigningKey.generate()).peer_id
    with Node(tmp_path / "owner") as node:
        announcer = Announcer(node, lambda _: None)
        await cancelled_as_woken(announcer.run(), lambda: announcer.heard_from(member))


async def test_the_follower_ends_when_cancelled_as_news_arrives(tmp_path: Path) -> None:
    with Node(tmp_path / "member") as node:
        follower = Follower(node, lambda _: None)
        await cancelled_as_woken(follower.run(), follower.wake)
