"""A publisher stops when it is cancelled, even when a change arrives in the same moment: the
race `asyncio.wait_for` loses on Python 3.11, which left `serve` hanging at its teardown."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nacl.signing
import pytest

from ringdrop.discovery import Published, Publisher, Record, Timestamps
from ringdrop.identity import Identity


@pytest.mark.parametrize("turns", range(5))
async def test_a_publisher_cancelled_as_a_change_arrives_stops(tmp_path: Path, turns: int) -> None:
    me = Identity(nacl.signing.SigningKey.generate())
    results: list[Published] = []
    # No services: a round publishes nowhere, so the test needs no network.
    publisher = Publisher(me, (), Timestamps(tmp_path / "stamps"), on_result=results.append)
    running = asyncio.create_task(publisher.run())
    publisher.update(Record(me.peer_id, "https://first.example.net/"))
    for _ in range(1000):
        if results:
            break
        await asyncio.sleep(0.01)
    assert results, "the first round never ended"
    # on_result runs in the publisher's task, which goes on to wait without yielding first
    publisher.update(Record(me.peer_id, "https://second.example.net/"))
    for _ in range(turns):
        await asyncio.sleep(0)
    running.cancel()
    done, _ = await asyncio.wait({running}, timeout=30)
    assert done == {running}, "the publisher ran on after it was cancelled"
    assert running.cancelled()
