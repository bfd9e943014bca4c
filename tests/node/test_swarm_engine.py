"""The download engine with several providers, on a real store, against providers that stream
real bao encodings from memory: one that never sends, one that sends altered bytes, one that
vanishes mid-stripe. Each test waits for a condition with a generous failsafe, never a time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

import pytest

from ringdrop.access import MIGRATIONS
from ringdrop.bao import ChunkRanges, Encoder, outboard_from_bytes
from ringdrop.errors import TransferError
from ringdrop.node.download import Download, Source
from ringdrop.node.progress import Tracker
from ringdrop.node.retry import RetryPolicy
from ringdrop.node.swarm import IN_FLIGHT, STRIPE_MAX, STRIPE_MIN, stripe_bytes, stripes
from ringdrop.protocol import MemberSelection
from ringdrop.store import Store
from tests.files import pseudo_random

DATA = pseudo_random(24 << 20, seed=11)
ROOT, OUTBOARD = outboard_from_bytes(DATA)
FAILSAFE = 120


class Fake:
    """A provider serving DATA from memory: honest, `silent` (it never sends a byte), `liar`
    (a byte of every MiB is altered) or `vanishing` (its connection drops after
    `vanish_after` streams)."""

    def __init__(self, peer: str, kind: str = "honest", vanish_after: int = 0) -> None:
        self.peer = peer
        self.address = "memory"
        self.kind = kind
        self.vanish_after = vanish_after
        self.asked: list[ChunkRanges] = []
        self.served = 0
        """Content bytes of the stripes it sent whole."""
        data = bytearray(DATA)
        if kind == "liar":
            for at in range(100, len(data), 1 << 20):
                data[at] ^= 0xFF
        self._data = bytes(data)
        # A liar encodes its altered bytes with their own tree: the stream is well formed, and
        # only the receiver's check against the real root catches it.
        self._root, self._outboard = outboard_from_bytes(self._data)

    async def fetch(self, root: bytes, ranges: ChunkRanges) -> AsyncGenerator[bytes, None]:
        self.asked.append(ranges)
        if self.kind == "silent":
            await asyncio.Event().wait()
        if self.kind == "vanishing" and len(self.asked) > self.vanish_after:
            raise TransferError("The connection was lost.")
        encoder = Encoder(self._data, self._outboard, self._root, len(DATA), ranges)
        while piece := encoder.read(64 * 1024):
            yield piece
            await asyncio.sleep(0)
        self.served += ranges.byte_count(len(DATA))

    async def fetch_members(
        self, collection: bytes, members: Sequence[MemberSelection]
    ) -> AsyncGenerator[bytes, None]:
        raise AssertionError("no folder here")
        yield b""  # pragma: no cover


async def download(tmp_path: Path, first: Fake, *others: Fake) -> Download:
    async def connect() -> Source:
        return first

    async def more(_: Source | None) -> list[Source]:
        return list(others)

    store = Store(tmp_path / "store", MIGRATIONS)
    tracker = Tracker("data", None, 1)
    job = Download(store, connect, ROOT, "blob", "data", tracker, RetryPolicy(attempts=1),
                   more=more)  # fmt: skip
    try:
        await asyncio.wait_for(job.run(), FAILSAFE)
        assert store.read_bytes(ROOT) == DATA
    finally:
        store.close()
    return job


def test_stripes_are_whole_chunk_groups_of_one_to_four_mib() -> None:
    assert stripe_bytes(24 << 20, 3) == STRIPE_MIN
    assert stripe_bytes(10 << 30, 3) == STRIPE_MAX
    cut = stripes(ChunkRanges([(5, 9000)]), 9000 * 1024, STRIPE_MIN)
    middle = [[(a, a + 1024)] for a in range(1024, 8192, 1024)]
    assert [list(c) for c in cut] == [[(5, 1024)], *middle, [(8192, 9000)]]


async def test_every_provider_carries_part_of_the_blob(tmp_path: Path) -> None:
    job = await download(tmp_path, Fake("a"), Fake("b"), Fake("c"))
    assert sum(job.by_provider.values()) == len(DATA)
    assert set(job.by_provider) == {"a", "b", "c"}


async def test_a_provider_that_never_sends_is_worked_around_by_the_end_game(
    tmp_path: Path,
) -> None:
    silent = Fake("silent", "silent")
    job = await download(tmp_path, Fake("a"), silent, Fake("b"))
    assert job.by_provider.get("silent", 0) == 0
    assert silent.asked, "it was given stripes, which the others then took over"


async def test_a_provider_that_sends_a_bad_range_is_dropped_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    liar = Fake("liar-peer-id", "liar")
    with caplog.at_level(logging.WARNING):
        job = await download(tmp_path, Fake("a"), liar)
    assert any("liar-peer-id" in r.getMessage() and "Dropped" in r.getMessage()
               for r in caplog.records)  # fmt: skip
    # Dropped after its first bad range: it had at most two stripes in flight, and no more.
    assert 1 <= len(liar.asked) <= 2
    assert job.by_provider == {"a": len(DATA)}


async def test_a_provider_that_vanishes_costs_only_its_stripe(tmp_path: Path) -> None:
    vanishing = Fake("gone", "vanishing", vanish_after=2)
    job = await download(tmp_path, Fake("a"), vanishing)
    # Two stripes served; then the stripes it had in flight were lost, and it was not asked again.
    assert 3 <= len(vanishing.asked) <= 2 + IN_FLIGHT
    assert job.by_provider["a"] + job.by_provider.get("gone", 0) == len(DATA)


async def test_what_verified_from_providers_that_left_is_kept_for_the_next_run(
    tmp_path: Path,
) -> None:
    first, second = Fake("a", "vanishing", vanish_after=3), Fake("b", "vanishing", vanish_after=2)
    with pytest.raises(TransferError, match="No provider is left"):
        await download(tmp_path, first, second)
    fetched_before = first.served + second.served
    assert 0 < fetched_before < len(DATA)

    # Another run, with another provider: only what the partial blob's bitfield lacks.
    job = await download(tmp_path, Fake("c"))
    assert job.by_provider["c"] <= len(DATA) - fetched_before + 2 * STRIPE_MAX
    assert job.by_provider["c"] < len(DATA)
