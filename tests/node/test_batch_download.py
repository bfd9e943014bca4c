"""The receiving side of members requests against a sharer that lies or stops: nothing
unverified is stored, memory stays bounded, and what verified before a failure is kept."""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from pathlib import Path

import pytest

from ringdrop.bao import outboard_from_bytes
from ringdrop.errors import IntegrityError, TransferError
from ringdrop.node.batch_download import Member, fetch_small_members
from ringdrop.node.progress import Tracker
from ringdrop.protocol import MemberPart, MemberSelection, encode
from ringdrop.store import Store

COLLECTION = bytes(32)


class ScriptedSource:
    """Answers members requests with the scripted parts of each member asked for; the
    connection is lost when it comes to member `lost_at`."""

    def __init__(self, parts: dict[int, list[MemberPart]], lost_at: int | None = None) -> None:
        self.parts = parts
        self.lost_at = lost_at
        self.asked: list[int] = []

    async def fetch_members(
        self, collection: bytes, members: Sequence[MemberSelection]
    ) -> AsyncGenerator[bytes, None]:
        for selection in members:
            self.asked.append(selection.index)
            if selection.index == self.lost_at:
                raise TransferError("the link was lost")
            for part in self.parts[selection.index]:
                yield encode(part)


def member(index: int, data: bytes) -> tuple[Member, MemberPart]:
    root = outboard_from_bytes(data)[0]
    stream = len(data).to_bytes(8, "little") + data
    return Member(index, root, f"f{index}", len(data)), MemberPart(stream, last=True)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "store")


async def fetch(store: Store, source: ScriptedSource, members: list[Member]) -> None:
    tracker = Tracker("folder", None, 1)
    await fetch_small_members(store, source, COLLECTION, members, tracker, lambda _: None)


async def test_members_that_verify_are_stored(store: Store) -> None:
    pairs = [member(i, bytes([i]) * (i * 100)) for i in range(3)]
    source = ScriptedSource({m.index: [part] for m, part in pairs})
    await fetch(store, source, [m for m, _ in pairs])
    assert sorted(source.asked) == [0, 1, 2]
    assert store.complete_roots(m.root for m, _ in pairs) == {m.root for m, _ in pairs}


async def test_a_member_with_wrong_bytes_fails_and_its_group_is_not_stored(store: Store) -> None:
    good, good_part = member(0, b"good")
    bad, _ = member(1, b"expected")
    lie = MemberPart((8).to_bytes(8, "little") + b"forgery!", last=True)
    with pytest.raises(IntegrityError):
        await fetch(store, ScriptedSource({0: [good_part], 1: [lie]}), [good, bad])
    assert store.complete_roots([good.root, bad.root]) == set()


async def test_a_member_that_never_ends_is_refused_before_it_fills_memory(store: Store) -> None:
    small, _ = member(0, b"small")
    endless = [MemberPart(b"x" * 4096) for _ in range(10)]
    with pytest.raises(IntegrityError, match="not the small file"):
        await fetch(store, ScriptedSource({0: endless}), [small])


async def test_members_verified_before_a_lost_connection_are_kept(store: Store) -> None:
    pairs = [member(i, bytes([i + 1]) * 50) for i in range(4)]
    source = ScriptedSource({m.index: [part] for m, part in pairs}, lost_at=1)
    with pytest.raises(TransferError):
        await fetch(store, source, [m for m, _ in pairs])
    kept = store.complete_roots(m.root for m, _ in pairs)
    assert pairs[0][0].root in kept
    assert pairs[1][0].root not in kept
