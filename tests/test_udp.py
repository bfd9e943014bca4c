"""The batched UDP socket: runs of equal-size datagrams leave in one segmented send and arrive
as the same datagrams, in order, whatever the run lengths and a shorter last one."""

from __future__ import annotations

import asyncio
import os

from ringdrop.transport._udp import Address, Burst, UdpSocket, bind_udp, split


async def test_batches_of_datagrams_arrive_whole_and_in_order() -> None:
    received: list[tuple[bytes, Address]] = []
    arrived = asyncio.Event()
    sizes = [1452] * 50 + [700] + [1200] * 3 + [1200, 40] + [9] + [1452] * 70 + [3]
    datagrams = [os.urandom(size) for size in sizes]

    def take(burst: Burst) -> None:
        received.extend(
            (data, sender) for buffer, size, sender in burst for data in split(buffer, size)
        )
        if len(received) >= len(datagrams):
            arrived.set()

    receiver = UdpSocket(bind_udp("127.0.0.1", 0), take)
    sender = UdpSocket(bind_udp("127.0.0.1", 0), lambda _batch: None)
    sender_port = sender.port
    try:
        sender.send(datagrams, ("127.0.0.1", receiver.port))
        await asyncio.wait_for(arrived.wait(), 10)
    finally:
        sender.close()
        receiver.close()
    assert [data for data, _ in received] == datagrams
    assert {address for _, address in received} == {("127.0.0.1", sender_port)}


async def test_an_ipv4_peer_is_reached_from_a_dual_stack_socket() -> None:
    received: list[tuple[bytes, Address]] = []
    arrived = asyncio.Event()

    def take(burst: Burst) -> None:
        received.extend(
            (data, sender) for buffer, size, sender in burst for data in split(buffer, size)
        )
        arrived.set()

    receiver = UdpSocket(bind_udp("127.0.0.1", 0), take)
    sender = UdpSocket(bind_udp("::", 0), lambda _batch: None)
    try:
        sender.send([b"hello", b"world"], ("127.0.0.1", receiver.port))
        await asyncio.wait_for(arrived.wait(), 10)
        while len(received) < 2:
            await asyncio.sleep(0.01)
    finally:
        sender.close()
        receiver.close()
    assert [data for data, _ in received] == [b"hello", b"world"]
