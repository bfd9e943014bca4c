"""A userspace UDP relay on loopback for tests and benchmarks: limits the rate, drops a share of
the datagrams, and can cut the link, so a test can interrupt a transfer at a chosen point (the
kernel here has no netem).

    python -m tests.node.relay TARGET_PORT [--rate BYTES_PER_S] [--loss FRACTION]

prints {"port": N} and relays until its standard input closes."""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
import time
from typing import cast

Address = tuple[str, int]


class _Side(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: object) -> None:
        self.on_datagram = on_datagram
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.on_datagram(data, addr)  # type: ignore[operator]


class Relay:
    """Forwards datagrams between clients and 127.0.0.1:`target`: towards the client at most
    `rate` bytes/s (None: no limit), and each way losing a `loss` share of them at random."""

    def __init__(self, target: int, rate: float | None, loss: float = 0.0) -> None:
        self.target = ("127.0.0.1", target)
        self.rate = rate
        self.loss = loss
        self._random = random.Random(1)
        self.cut = False
        self._front: _Side | None = None
        self._backs: dict[Address, _Side] = {}
        self._opening: set[asyncio.Task[None]] = set()
        self._next_send = time.monotonic()

    @property
    def port(self) -> int:
        assert self._front is not None
        assert self._front.transport is not None
        return int(self._front.transport.get_extra_info("sockname")[1])

    async def start(self) -> Relay:
        loop = asyncio.get_running_loop()
        _, self._front = await loop.create_datagram_endpoint(
            lambda: _Side(self._from_client), local_addr=("127.0.0.1", 0)
        )
        return self

    def close(self) -> None:
        for side in [self._front, *self._backs.values()]:
            if side is not None and side.transport is not None:
                side.transport.close()

    def _dropped(self) -> bool:
        return self.cut or (self.loss > 0 and self._random.random() < self.loss)

    def _delay(self, size: int) -> float:
        if self.rate is None:
            return 0.0
        now = time.monotonic()
        self._next_send = max(self._next_send, now) + size / self.rate
        return self._next_send - now

    def _from_client(self, data: bytes, client: Address) -> None:
        if self._dropped():
            return
        back = self._backs.get(client)
        if back is None:
            task = asyncio.ensure_future(self._open_back(client, data))
            self._opening.add(task)
            task.add_done_callback(self._opening.discard)
            return
        assert back.transport is not None
        back.transport.sendto(data, self.target)

    async def _open_back(self, client: Address, first: bytes) -> None:
        loop = asyncio.get_running_loop()
        _, back = await loop.create_datagram_endpoint(
            lambda: _Side(lambda data, _addr: self._from_server(data, client)),
            local_addr=("127.0.0.1", 0),
        )
        self._backs[client] = back
        assert back.transport is not None
        back.transport.sendto(first, self.target)

    def _from_server(self, data: bytes, client: Address) -> None:
        if self._dropped():
            return
        delay = self._delay(len(data))
        if delay <= 0:
            self._deliver(data, client)
        else:
            asyncio.get_running_loop().call_later(delay, self._deliver, data, client)

    def _deliver(self, data: bytes, client: Address) -> None:
        if not self.cut and self._front is not None and self._front.transport is not None:
            self._front.transport.sendto(data, client)


async def _main() -> None:
    parser = argparse.ArgumentParser(description="a UDP relay on 127.0.0.1")
    parser.add_argument("target", type=int)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--loss", type=float, default=0.0)
    args = parser.parse_args()
    relay = await Relay(args.target, args.rate, args.loss).start()
    print(json.dumps({"port": relay.port}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    relay.close()


if __name__ == "__main__":
    asyncio.run(_main())
