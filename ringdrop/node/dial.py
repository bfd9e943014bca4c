"""Reaching a peer by its key: the ways a ticket or the peer book names, raced against the ones
its published record names (looked up by `ringdrop.discovery`); the first authenticated
connection wins and the other attempts are abandoned.

A fresh record that disagrees with the hints is dialled first, the hints after a head start: a
sharer that moved keeps its tickets working. Without a fresh record, the hints go first and the
lookup starts after the head start, or as soon as every hint has failed, so that a peer reached
on its LAN never asks a discovery service.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from ringdrop.discovery import Lookup, Record, Resolver
from ringdrop.errors import DiscoveryError, RingdropError, TransferError, WrongPeerError
from ringdrop.identity import PeerId
from ringdrop.ticket import Address
from ringdrop.transport import Connection

__all__ = ["HEAD_START", "Dialled", "Route", "dial"]

HEAD_START = 1.0
"""Seconds the preferred ways get before the others are tried too."""


@dataclass(frozen=True)
class Route:
    """One way to dial a peer: direct addresses and a relay, tried at once by the transport."""

    addresses: tuple[Address, ...]
    relay: str | None

    @property
    def empty(self) -> bool:
        return not self.addresses and self.relay is None


@dataclass(frozen=True)
class Dialled:
    """The connection, and the record whose route it came through (None: the hints')."""

    connection: Connection
    record: Record | None


Dial = Callable[[Route], Coroutine[Any, Any, Connection]]


async def dial(
    peer_id: PeerId,
    hints: Route,
    connect: Dial,
    resolver: Resolver | None,
    *,
    known: Route | None = None,
    usable: Callable[[Record], Route] | None = None,
    head_start: float = HEAD_START,
) -> Dialled:
    """Connects to `peer_id` by `hints`, by where it was reached before (`known`, the peer
    book's addresses: with the lookup, after the head start) and by what `resolver` finds,
    whichever authenticates first. `usable` turns a record into the route this node may dial
    (default: as it is)."""
    race = _Race(peer_id, connect, resolver, usable or _route_of)
    try:
        return await race.run(hints, known, head_start)
    finally:
        await race.abandon()


def _set(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _route_of(record: Record) -> Route:
    return Route(record.addresses, record.relay)


class _Race:
    def __init__(
        self,
        peer_id: PeerId,
        connect: Dial,
        resolver: Resolver | None,
        usable: Callable[[Record], Route],
    ) -> None:
        self._peer_id = peer_id
        self._connect = connect
        self._resolver = resolver
        self._usable = usable
        self._attempts: dict[asyncio.Task[Connection], Record | None] = {}
        self._dialled: list[Route] = []
        self._failures: list[RingdropError] = []
        self._lookup: asyncio.Task[Lookup] | None = None
        self._found: Lookup | None = None
        self._cached: Record | None = None
        self._later: list[tuple[Route, Record | None]] = []

    async def run(self, hints: Route, known: Route | None, head_start: float) -> Dialled:
        cached = self._resolver.cached(self._peer_id) if self._resolver is not None else None
        if cached is not None and not self._usable(cached).empty:
            # A fresh record goes first; asking again before its TTL is up would tell nothing
            # new, unless dialling what it says fails.
            self._cached = cached
            self._start(self._usable(cached), cached)
            self._later.append((hints, None))
        else:
            self._start(hints, None)
        if known is not None:
            self._later.append((known, None))
        loop = asyncio.get_running_loop()
        head_start_over: asyncio.Future[None] = loop.create_future()
        timer = loop.call_later(head_start, _set, head_start_over)
        try:
            while True:
                if not self._attempts:
                    self._start_later()
                if not self._attempts and self._lookup is None:
                    self._start_lookup()
                if not self._attempts and self._lookup is None:
                    raise self._error()
                waiting: set[asyncio.Future[Any]] = set(self._attempts)
                if self._lookup is not None:
                    waiting.add(self._lookup)
                if not head_start_over.done():
                    waiting.add(head_start_over)
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if head_start_over in done:
                    self._start_later()
                    if self._cached is None:
                        self._start_lookup()
                for task in done:
                    if task is self._lookup:
                        self._looked_up()
                    elif task in self._attempts:
                        won = self._finished(task)
                        if won is not None:
                            return won
        finally:
            timer.cancel()

    def _start(self, route: Route, record: Record | None) -> None:
        if route.empty or route in self._dialled:
            return
        self._dialled.append(route)
        self._attempts[asyncio.create_task(self._connect(route))] = record

    def _start_later(self) -> None:
        for route, record in self._later:
            self._start(route, record)
        self._later.clear()

    def _start_lookup(self) -> None:
        """Looks the peer up once (once more when a cached record led nowhere)."""
        if self._resolver is None or self._lookup is not None or self._found is not None:
            return
        if self._cached is not None:
            self._resolver.forget(self._peer_id)
            self._cached = None
        self._lookup = asyncio.create_task(self._resolver.lookup(self._peer_id))

    def _looked_up(self) -> None:
        assert self._lookup is not None
        try:
            self._found = self._lookup.result()
        except RingdropError as error:
            self._found = Lookup(None, (str(error),))
        self._lookup = None
        record = self._found.record
        if record is not None:
            route = self._usable(record)
            if route.empty:
                self._failures.append(
                    DiscoveryError(
                        f"The record of {self._peer_id.short()}… names only a relay, and "
                        "relaying is disabled here."
                    )
                )
            self._start(route, record)

    def _finished(self, task: asyncio.Task[Connection]) -> Dialled | None:
        record = self._attempts.pop(task)
        try:
            connection = task.result()
        except RingdropError as error:
            self._failures.append(error)
            return None
        return Dialled(connection, record)

    def _error(self) -> RingdropError:
        failures = list(self._failures)
        found = self._found
        if found is not None and found.record is None:
            failures.append(found.error(self._peer_id))
        if len(failures) == 1:
            return failures[0]
        wrong = [e for e in failures if isinstance(e, WrongPeerError)]
        if wrong and len(wrong) == len(failures):
            return wrong[0]
        if not failures:
            return TransferError(f"There is no way to reach {self._peer_id.short()}….")
        return TransferError(" ".join(str(e) for e in failures), peer=str(self._peer_id))

    async def abandon(self) -> None:
        """Cancels what is still running; a connection that won too late is closed."""
        tasks: list[asyncio.Future[Any]] = [*self._attempts]
        if self._lookup is not None:
            tasks.append(self._lookup)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                late = await task
                if isinstance(late, Connection):
                    await late.close()
