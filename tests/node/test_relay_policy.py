"""A ticket's relay is its maker's choice, not the receiver's: it is dialled only when it is an
https:// relay at a public address, one of the relays configured here, or with the policy
`any` (issue 20 item 7). A refusal is said in the error. A TCP listener counts the connections
a ticket makes the receiver attempt; everything stays on loopback."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from ipaddress import ip_address
from pathlib import Path

import nacl.signing
import pytest

from ringdrop.errors import RelayRefusedError
from ringdrop.identity import Identity
from ringdrop.node import Node
from ringdrop.node.retry import RetryPolicy
from ringdrop.ticket import Address, Ticket
from tests.cli_util import cli_env, ringdrop

SHARER = Identity(nacl.signing.SigningKey(b"sharer".ljust(32, b".")))
CONFIGURED = "http://127.0.0.1:1/"  # relaying is enabled here; this one is never reached
TIMEOUT = 30.0


class Listener:
    """A TCP port on 127.0.0.1 that counts the connections made to it and closes them."""

    def __init__(self) -> None:
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        async def accepted(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            writer.close()

        self._server = await asyncio.start_server(accepted, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    async def close(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    made = Listener()
    await made.start()
    yield made
    await made.close()


def closed_port() -> int:
    """A UDP port nothing listens on (the kernel refuses what is sent there)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def ticket(relay: str, *, address: bool = True) -> Ticket:
    addresses = (Address(ip_address("127.0.0.1"), closed_port()),) if address else ()
    return Ticket(SHARER.peer_id, addresses, bytes(32), size=1, relay=relay)


async def until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not condition():
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("address", [True, False], ids=["with-an-address", "relay-only"])
async def test_a_tickets_private_relay_is_not_dialled_and_the_error_names_it(
    tmp_path: Path, listener: Listener, address: bool
) -> None:
    with (
        Node(tmp_path / "receiver", relays=[CONFIGURED]) as receiver,
        pytest.raises(RelayRefusedError) as caught,
    ):
        await asyncio.wait_for(
            receiver.get(
                ticket(listener.url, address=address),
                tmp_path / "out",
                retry=RetryPolicy(attempts=1),
            ),
            TIMEOUT,
        )
    assert listener.connections == 0
    assert caught.value.relay == listener.url
    assert f"relay {listener.url} was not used: it is not an https:// URL" in str(caught.value)


async def test_with_the_policy_any_a_tickets_relay_is_dialled(
    tmp_path: Path, listener: Listener
) -> None:
    with Node(tmp_path / "receiver", relays=[CONFIGURED], relay_policy="any") as receiver:
        getting = asyncio.create_task(
            receiver.get(ticket(listener.url, address=False), tmp_path / "out")
        )
        try:
            await until(lambda: listener.connections > 0, "a connection to the ticket's relay")
        finally:
            getting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await getting


async def test_a_relay_configured_here_is_dialled_whatever_a_ticket_is(
    tmp_path: Path, listener: Listener
) -> None:
    with Node(tmp_path / "receiver", relays=[listener.url]) as receiver:
        getting = asyncio.create_task(
            receiver.get(ticket(listener.url, address=False), tmp_path / "out")
        )
        try:
            await until(lambda: listener.connections > 0, "a connection to the relay")
        finally:
            getting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await getting


def test_the_command_says_how_to_accept_a_private_relay(tmp_path: Path) -> None:
    with socket.socket() as port:
        port.bind(("127.0.0.1", 0))
        port.listen()  # the kernel completes connections here; none is accepted
        port.setblocking(False)
        url = f"http://127.0.0.1:{port.getsockname()[1]}/"
        argv: list[str | Path] = ["--data-dir", tmp_path / "r", "get", ticket(url).encode()]
        argv += ["--attempts", "1"]
        done = ringdrop(argv, cwd=tmp_path, env=cli_env(RINGDROP_RELAY=CONFIGURED))
        with pytest.raises(BlockingIOError):
            port.accept()
    assert done.returncode == 7, done.stderr
    assert f"The ticket's relay {url} was not used" in done.stderr
    assert "--relay-policy any" in done.stderr
