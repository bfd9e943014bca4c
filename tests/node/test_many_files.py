"""Folders of many small files: members requests bring them on a few streams, the gate checks
them, the receiver commits them in groups, and a receiver SIGKILLed in the middle of 10,000
files resumes without fetching a verified file again."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from ringdrop.bao import ChunkRanges, outboard_from_bytes
from ringdrop.errors import NotFoundError
from ringdrop.node import Node, Progress, RetryPolicy
from ringdrop.protocol import MemberPart, MemberSelection, MembersReader, MembersRequest
from ringdrop.transport import connect
from tests.files import pseudo_random, tree
from tests.node.relay import Relay
from tests.node.test_resume import kill_receiver_when, start_sharer, via

PATIENT = RetryPolicy(attempts=20, first_delay=0.2, max_delay=1.0)


def small_folder(path: Path, files: int, seed: int = 0) -> dict[str, bytes]:
    """`files` files of 1 to 4,096 bytes in 10 subfolders; their names and contents."""
    rng = random.Random(seed)
    expected = {}
    for i in range(files):
        name = f"dir{i % 10}/file{i:06d}.bin"
        data = rng.randbytes(rng.randint(1, 4096))
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(data)
        expected[name] = data
    return expected


async def test_a_folder_of_2000_small_files_arrives_whole_on_a_few_streams(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    expected = small_folder(tmp_path / "small", 2000)
    for i in range(3):  # large members still travel on their own streams, alongside
        data = pseudo_random(100_000 + i, seed=i)
        (tmp_path / "small" / f"large{i}.bin").write_bytes(data)
        expected[f"large{i}.bin"] = data
    share = serving.share(tmp_path / "small", open=True)
    received = await receiver.get(share.ticket, tmp_path / "out")
    assert tree(received.path) == expected
    assert received.stats.files == len(expected)
    # One decision for the collection blob, one per members request (the 2,000 small members
    # go in two, to overlap), one per large file; each member logged as an upload once.
    assert len(serving.decisions(limit=100)) == 1 + 2 + 3
    uploads = serving.uploads(limit=10_000)
    collection = receiver._store.collection(share.root)
    members = {e.root for e in collection.entries}
    assert sorted(u.root for u in uploads if u.root in members) == sorted(members)
    assert all(u.outcome == "complete" for u in uploads)


async def test_a_folder_of_small_files_gets_a_progress_report_per_group(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    small_folder(tmp_path / "small", 3000, seed=1)
    share = serving.share(tmp_path / "small", open=True)
    events: list[Progress] = []
    await receiver.get(share.ticket, tmp_path / "out", progress=events.append)
    done = [e.files_done for e in events]
    assert done == sorted(done)
    assert done[-1] == 3000
    assert events[-1].done == events[-1].total


async def members(
    serving: Node, receiver: Node, request: MembersRequest
) -> tuple[str, list[MemberPart]]:
    """Sends `request` from `receiver` to `serving`: the status and each member's stream."""
    addresses = list(serving.addresses())
    connection = await connect(receiver.identity, serving.peer_id, addresses)
    async with connection:
        header, body = await connection.request(request)
        if header.status != "allowed":
            return header.status, []
        reader = MembersReader(len(request.members))
        joined: dict[int, MemberPart] = {}
        async for piece in body:
            for event in reader.feed(piece):
                old = joined.get(event.position, MemberPart())
                joined[event.position] = MemberPart(
                    old.data + event.data, event.last, event.missing
                )
        reader.finish()
        return header.status, [joined[i] for i in range(len(request.members))]


def whole(*indices: int) -> tuple[MemberSelection, ...]:
    return tuple(MemberSelection(i, ChunkRanges.all()) for i in indices)


async def test_a_peer_no_ring_admits_gets_no_member(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    small_folder(tmp_path / "small", 5)
    serving.create_ring("friends")
    share = serving.share(tmp_path / "small", rings=["friends"])
    status, parts = await members(serving, receiver, MembersRequest(share.root, whole(0, 1)))
    assert (status, parts) == ("denied", [])
    assert serving.uploads() == []


async def test_members_inherit_the_collections_ring_and_stream_verifiably(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    expected = small_folder(tmp_path / "small", 5)
    serving.create_ring("friends")
    serving.add_member("friends", receiver.peer_id)
    share = serving.share(tmp_path / "small", rings=["friends"])
    status, parts = await members(serving, receiver, MembersRequest(share.root, whole(1, 3)))
    assert status == "allowed"
    names = sorted(expected)
    for part, name in zip(parts, [names[1], names[3]], strict=True):
        data = expected[name]
        assert part.data == len(data).to_bytes(8, "little") + data
        assert part.last
        assert not part.missing


async def test_a_member_index_past_the_folder_is_an_error(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    small_folder(tmp_path / "small", 5)
    share = serving.share(tmp_path / "small", open=True)
    status, _ = await members(serving, receiver, MembersRequest(share.root, whole(2, 5)))
    assert status == "error"


async def test_a_member_the_sharer_lost_is_marked_missing_and_the_rest_still_come(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    small_folder(tmp_path / "small", 5)
    share = serving.share(tmp_path / "small", open=True)
    lost = serving._store.collection(share.root).entries[2].root
    with serving._store.db.transaction() as conn:
        conn.execute("DELETE FROM blobs WHERE root = ?", (lost,))
    status, parts = await members(serving, receiver, MembersRequest(share.root, whole(1, 2, 3)))
    assert status == "allowed"
    shapes = [(p.missing, bool(p.data)) for p in parts]
    assert shapes == [(False, True), (True, False), (False, True)]
    with pytest.raises(NotFoundError, match="no longer has"):
        await receiver.get(share.ticket, tmp_path / "out")


async def test_receiver_killed_in_a_10000_file_folder_never_fetches_a_verified_file_again(
    tmp_path: Path,
) -> None:
    expected = small_folder(tmp_path / "small", 10_000, seed=3)
    with Node(tmp_path / "sharer") as sharer:
        share = sharer.share(tmp_path / "small", open=True)
    server, port = await start_sharer(tmp_path / "sharer")
    relay = await Relay(port, 6e6).start()  # about 4 s for the 20 MB: time to land the kill
    receiver_dir, out = tmp_path / "receiver", tmp_path / "out"
    try:
        await kill_receiver_when(
            receiver_dir,
            via(share.ticket, relay),
            out,
            lambda progress: (
                bool(progress.get("total")) and progress["done"] > progress["total"] * 0.3
            ),
            timeout=60,
        )
        # The sharer would log the killed run's unfinished stream only when its connection
        # times out; restarted, it starts the rerun's log from a clean point.
        server.kill()
        server.wait()
        server, again = await start_sharer(tmp_path / "sharer")
        assert again == port
        with Node(receiver_dir) as receiver:
            collection = receiver._store.collection(share.root)
            members = [e.root for e in collection.entries]
            verified = receiver._store.complete_roots(members)
            assert 0 < len(verified) < len(members), "the kill did not land mid-transfer"
            assert not out.exists() or tree(out / "small").items() <= expected.items()
            with Node(tmp_path / "sharer") as sharer:
                before = len(sharer.uploads(limit=1_000_000))
            received = await receiver.get(via(share.ticket, relay), out, retry=PATIENT)
            assert receiver.check_store().ok
    finally:
        relay.close()
        server.kill()
        server.wait()
    assert tree(received.path) == expected
    with Node(tmp_path / "sharer") as sharer:
        rerun = sharer.uploads(limit=1_000_000)[: -before or None]
    fetched_again = {u.root for u in rerun} & verified
    assert fetched_again == set(), f"{len(fetched_again)} verified files were fetched again"
    assert {u.root for u in rerun} == set(members) - verified
    present = [d for d in expected.values() if outboard_from_bytes(d)[0] in verified]
    assert received.stats.present == sum(map(len, present))
