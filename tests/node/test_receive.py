"""Receiving into a destination through `Node.get` over real QUIC on loopback: the free-space
check asks each file system for what this get really writes there, and a rerun after the
exported file was deleted fetches it again."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ringdrop.errors import DiskFullError, StoreError
from ringdrop.node import Node, Share
from tests.files import pseudo_random, write

SIZE = 8 << 20
DATA = pseudo_random(SIZE)


@pytest.fixture
def share(serving: Node, tmp_path: Path) -> Share:
    """DATA, shared by the serving node with everyone as `a.bin`."""
    return serving.share(write(tmp_path / "in" / "a.bin", DATA), open=True)


def used_below(*folders: Path) -> int:
    return sum(p.stat().st_blocks * 512 for f in folders for p in f.rglob("*") if p.is_file())


class Disk:
    """statvfs of a pretend file system of `capacity` bytes holding what is below `folders`."""

    def __init__(self, capacity: int, *folders: Path) -> None:
        self.capacity = capacity
        self.folders = folders
        self.real = os.statvfs

    def __call__(self, path: Any) -> Any:
        real = self.real(path)
        free = max(0, self.capacity - used_below(*self.folders)) // real.f_frsize

        class Result:
            f_bavail = free
            f_frsize = real.f_frsize

        return Result


@pytest.fixture
def out(receiver: Node, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A destination on one pretend file system with the receiver's data directory, with room
    for the content once and a half beside what the data directory holds already."""
    out = tmp_path / "out"
    out.mkdir()
    capacity = used_below(receiver.data_dir) + SIZE * 3 // 2
    monkeypatch.setattr("ringdrop.store.files.os.statvfs", Disk(capacity, receiver.data_dir, out))
    return out


async def test_one_file_system_with_room_for_the_content_once_is_enough(
    share: Share, receiver: Node, out: Path
) -> None:
    received = await receiver.get(share.ticket, out)
    assert received.path.read_bytes() == DATA
    assert received.moved == SIZE


async def test_keep_on_one_file_system_asks_for_room_for_two_copies(
    share: Share, receiver: Node, out: Path
) -> None:
    with pytest.raises(DiskFullError, match=r"receiving a\.bin needs 16\.0 MiB"):
        await receiver.get(share.ticket, out, keep=True)
    assert os.listdir(out) == []


async def test_a_deleted_export_is_fetched_again(
    share: Share, receiver: Node, tmp_path: Path
) -> None:
    first = await receiver.get(share.ticket, tmp_path / "a.bin")
    first.path.unlink()
    again = await receiver.get(share.ticket, tmp_path / "a.bin")
    assert again.path.read_bytes() == DATA
    assert again.stats.present == 0
    assert receiver.check_store().ok


async def test_the_keep_received_setting_keeps_a_private_copy(share: Share, tmp_path: Path) -> None:
    data_dir = tmp_path / "keeper"
    data_dir.mkdir()
    (data_dir / "config.json").write_text('{"port": 29999, "keep_received": true}')
    with Node(data_dir) as keeper:
        received = await keeper.get(share.ticket, tmp_path / "a.bin")
        blob = keeper._store.blob(share.root)
    assert received.path.read_bytes() == DATA
    assert (received.moved, received.copied) == (0, SIZE)
    assert blob is not None
    assert blob.location == "file"


def test_a_damaged_keep_received_setting_is_reported(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"port": 29999, "keep_received": "yes"}')
    with pytest.raises(StoreError, match="keep_received must be true or false"):
        Node(tmp_path)
