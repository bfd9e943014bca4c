"""A short code's rendezvous over an iroh relay: one `RelayClient` holding this side's
rendezvous key, its datagrams and the clock pumped into a `ringdrop.rendezvous` machine."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable

from ringdrop.identity import PeerId
from ringdrop.rendezvous import Receiver, Role, Sender, State, rendezvous_identity
from ringdrop.shortcode import ShortCode
from ringdrop.ticket import Ticket
from ringdrop.transport.relay import RelayClient
from ringdrop.transport.wake import woken

__all__ = ["CONNECT_TIMEOUT", "offer", "redeeming"]

CONNECT_TIMEOUT = 20.0
"""Seconds to reach the rendezvous relay before giving up."""
# The relay client tells of a displacement by a flag, not a callback: look this often.
_DISPLACED_POLL = 0.25
# Datagrams waiting for the machine; beyond this a flood is dropped, as the relay would.
_INBOX_LIMIT = 64
# What was queued for the relay is given this long to leave before the connection closes.
_DRAIN = 5.0


async def offer(
    code: ShortCode,
    relay: str,
    *,
    expires: float,
    admit: Callable[[PeerId], Awaitable[Ticket]],
    on_ready: Callable[[], object] | None = None,
) -> PeerId:
    """Waits on `relay` for a receiver of `code` for `expires` seconds. Once a receiver's key
    confirmation checks out, `admit(peer_id)` lets that peer in and returns the ticket to send;
    returns the peer id once the receiver says it is finished with the content, or `expires`
    seconds after it got the ticket. `on_ready` runs once the rendezvous key is held on the
    relay. Raises `RendezvousError` (guessed, expired, taken) or `TransferError` (the relay
    cannot be reached)."""
    loop = asyncio.get_running_loop()
    async with _Pump(relay, code.nameplate, Role.SENDER) as pump:
        sender = Sender(code, loop.time() + expires, admission=expires)
        if on_ready is not None:
            on_ready()
        await pump.run(sender, lambda: sender.finished or sender.state is State.CONFIRMED)
        if sender.receiver is not None:
            sender.send_ticket(await admit(sender.receiver), loop.time())
            await pump.run(sender, lambda: sender.finished)
        error = sender.error()
        if error is not None:
            raise error
        assert sender.receiver is not None
        return sender.receiver


@contextlib.asynccontextmanager
async def redeeming(
    code: ShortCode, relay: str, peer_id: PeerId, *, timeout: float
) -> AsyncIterator[Ticket]:
    """The ticket the sender of `code` hands over on `relay` in exchange for `peer_id`, which it
    then admits; leaving the block tells the sender the receiver is finished with it. Raises
    `RendezvousError` (guessed, unanswered within `timeout` seconds, taken, busy) or
    `TransferError` (the relay cannot be reached)."""
    loop = asyncio.get_running_loop()
    async with _Pump(relay, code.nameplate, Role.RECEIVER) as pump:
        now = loop.time()
        receiver = Receiver(code, peer_id, now, now + timeout)
        await pump.run(receiver, lambda: receiver.finished or receiver.ticket is not None)
        error = receiver.error()
        if error is not None:
            raise error
        assert receiver.ticket is not None
        # The connection stays up meanwhile, with nothing to say: the sender waits for DONE.
        try:
            yield receiver.ticket
        finally:
            receiver.finish()
            await pump.run(receiver, lambda: True)


class _Pump:
    """The relay connection of one side, and the loop that feeds its machine."""

    def __init__(self, relay: str, nameplate: int, role: Role) -> None:
        self._inbox: deque[tuple[bytes, bytes]] = deque()
        self._wake = asyncio.Event()
        # Its seed is public: whoever took the key over may be another side of the nameplate,
        # or anyone; the machine decides what that means (see `displaced`).
        holder = (
            f"another client with the {role.value}'s rendezvous key of nameplate {nameplate} "
            f"(a second {role.value} on it, or someone who took the key)"
        )
        self.client = RelayClient(
            relay,
            rendezvous_identity(nameplate, role),
            on_datagrams=self._on_datagrams,
            holder=holder,
        )

    async def __aenter__(self) -> _Pump:
        self.client.start()
        try:
            await self.client.wait_connected(CONNECT_TIMEOUT)
        except BaseException:
            await self.client.close()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _DRAIN
        # A FAIL or DONE just queued is the other side's only news of how this ended.
        while self.client.queued_bytes and self.client.state == "connected":
            if loop.time() > deadline:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0)
        await self.client.close()

    def _on_datagrams(self, source: bytes, datagrams: list[bytes]) -> None:
        room = _INBOX_LIMIT - len(self._inbox)
        self._inbox.extend((source, datagram) for datagram in datagrams[:room])
        self._wake.set()

    async def run(self, machine: Sender | Receiver, done: Callable[[], bool]) -> None:
        """Feed `machine` datagrams, timers and displacements until `done()`."""
        loop = asyncio.get_running_loop()
        displaced = self.client.displaced
        while True:
            now = loop.time()
            while self._inbox:
                source, datagram = self._inbox.popleft()
                machine.receive(source, datagram, now)
            machine.handle_timer(now)
            if self.client.displaced and not displaced:
                machine.displaced()
            displaced = self.client.displaced
            for destination, datagram in machine.datagrams_to_send():
                self.client.send(destination, [datagram])
            if done():
                return
            timer = machine.next_timer()
            wait = _DISPLACED_POLL if timer is None else min(_DISPLACED_POLL, timer - now)
            self._wake.clear()
            if not self._inbox:
                await woken(self._wake, wait)
