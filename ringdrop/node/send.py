"""Sending once, as `sendme send` and `croc send` do (`Node.send`): what counts as fetched, and
how a short text travels.

A receiver has fetched the content once every blob of it has gone out to it whole: the file, or
a folder's listing and each of its files that is not empty (whatever the order, over however many
connections and retries). One that already held some of the files before it asked is counted
only when it has fetched the rest and those: this side cannot see what the other already had.

A text is a blob of at most `TEXT_MAX` bytes of UTF-8 whose ticket names it `TEXT_NAME`; the
receiving side shows it rather than writing a file (unless asked for a file).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ringdrop.ticket import Ticket

if TYPE_CHECKING:
    from ringdrop.node.server import ServeEvent

__all__ = ["TEXT_MAX", "TEXT_NAME", "Fetched", "Fetches", "is_text"]

TEXT_NAME = "ringdrop-message.txt"
TEXT_MAX = 64 * 1024


def is_text(ticket: Ticket) -> bool:
    """Whether the ticket names a text sent with `send --text`, to be shown, not saved."""
    return (
        ticket.format == "blob"
        and ticket.name == TEXT_NAME
        and ticket.size is not None
        and ticket.size <= TEXT_MAX
    )


@dataclass(frozen=True)
class Fetched:
    """One receiver that got all of the content."""

    peer: str
    nickname: str | None


class Fetches:
    """Counts the receivers that have fetched every blob in `needed`; `finished` is set once
    `times` of them have."""

    def __init__(self, needed: Iterable[bytes], times: int) -> None:
        self._needed = frozenset(needed)
        self._times = times
        self._got: dict[str, set[bytes]] = {}
        self.done: list[Fetched] = []
        self.finished = asyncio.Event()

    def served(self, event: ServeEvent) -> Fetched | None:
        """Takes note of a request answered; returns the receiver it completed, if any."""
        if not event.completed or any(d.peer == event.peer for d in self.done):
            return None
        got = self._got.setdefault(event.peer, set())
        got.update(event.completed)
        if not self._needed <= got:
            return None
        fetched = Fetched(event.peer, event.nickname)
        self.done.append(fetched)
        if len(self.done) >= self._times:
            self.finished.set()
        return fetched
