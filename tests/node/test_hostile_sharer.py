"""A sharer that sends more than a receiver should take: a collection beyond the limits is
refused as soon as its size is known, before it fills the disk or memory."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from ringdrop.bao import GROUP_SIZE
from ringdrop.errors import StoreError
from ringdrop.node import Node, RetryPolicy
from ringdrop.store.collection import MAX_COLLECTION_BYTES

FAST_RETRY = RetryPolicy(attempts=2, first_delay=0.05)


def bytes_on_disk(folder: Path) -> int:
    return sum(p.stat().st_blocks * 512 for p in folder.rglob("*") if p.is_file())


async def test_a_collection_larger_than_the_limit_is_refused_by_its_size_header(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    huge = tmp_path / "listing.bin"
    with huge.open("wb") as f:
        f.truncate(MAX_COLLECTION_BYTES + GROUP_SIZE)  # sparse: nothing to write or read
    share = serving.share(huge, open=True, reference=True)
    # The sharer calls this blob a folder: its ticket says collection (and, as a folder's,
    # carries no single file's time or mode).
    ticket = dataclasses.replace(
        share.ticket, format="collection", size=None, mtime_ns=None, executable=False
    )

    with pytest.raises(StoreError, match=f"collection is {huge.stat().st_size} bytes long"):
        await receiver.get(ticket, tmp_path / "out", retry=FAST_RETRY)

    assert bytes_on_disk(receiver.data_dir) < 16 << 20
    assert not (tmp_path / "out").exists()
