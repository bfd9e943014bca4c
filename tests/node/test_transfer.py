"""Transfers between two nodes over real QUIC on loopback: the ring gate, resume, integrity."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import time
from ipaddress import ip_address
from pathlib import Path

import pytest

from ringdrop.errors import (
    AccessDeniedError,
    DiskFullError,
    RingdropError,
    TransferError,
    UnreachableError,
    WrongPeerError,
)
from ringdrop.node import Node, Progress, RetryPolicy
from ringdrop.node.upload import PIECE, READ_AHEAD
from ringdrop.ticket import Address, Ticket
from tests.files import pseudo_random, write
from tests.node.relay import Relay

FAST_RETRY = RetryPolicy(attempts=2, first_delay=0.05)


def overhead_bound(size: int) -> int:
    """Wire bytes beyond the content a full transfer may take: hash tree (0.4 %) and headers."""
    return size // 100 + 64 * 1024


async def test_member_receives_the_file(serving: Node, receiver: Node, tmp_path: Path) -> None:
    data = pseudo_random(3 * 2**20 + 17)
    serving.create_ring("friends")
    serving.add_member("friends", str(receiver.peer_id))
    share = serving.share(write(tmp_path / "in" / "film.bin", data), rings=["friends"])
    (tmp_path / "out").mkdir()
    received = await receiver.get(share.ticket, tmp_path / "out")
    assert received.path == tmp_path / "out" / "film.bin"
    assert received.path.read_bytes() == data
    assert received.stats.total == len(data)
    assert received.stats.present == 0
    assert len(data) <= received.stats.received <= len(data) + overhead_bound(len(data))
    uploads = serving.uploads()
    assert [(u.peer_id, u.root, u.outcome) for u in uploads] == [
        (receiver.peer_id, share.root, "complete")
    ]


async def test_non_member_is_denied_and_gets_no_content(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    serving.create_ring("friends")
    share = serving.share(write(tmp_path / "secret.bin", pseudo_random(200_000)), rings=["friends"])
    with pytest.raises(AccessDeniedError, match=str(receiver.peer_id)):
        await receiver.get(share.ticket, tmp_path / "out", retry=FAST_RETRY)
    assert serving.uploads() == []
    assert [(e.peer_id, e.allowed) for e in serving.decisions()] == [(receiver.peer_id, False)]
    assert not (tmp_path / "out").exists()
    assert receiver._store.blob(share.root) is None
    assert all(p.size is None for p in receiver._store.partials())


async def test_open_ring_admits_any_peer(serving: Node, receiver: Node, tmp_path: Path) -> None:
    data = pseudo_random(50_000)
    share = serving.share(write(tmp_path / "public.txt", data), open=True)
    received = await receiver.get(share.ticket, tmp_path / "out")
    assert received.path.read_bytes() == data


async def test_expired_membership_is_denied(serving: Node, receiver: Node, tmp_path: Path) -> None:
    serving.create_ring("friends")
    serving.add_member("friends", str(receiver.peer_id), expires_at=time.time() - 1)
    share = serving.share(write(tmp_path / "a.bin", pseudo_random(40_000)), rings=["friends"])
    with pytest.raises(AccessDeniedError):
        await receiver.get(share.ticket, tmp_path / "out", retry=FAST_RETRY)


async def test_admission_takes_effect_on_the_next_request(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    serving.create_ring("friends")
    share = serving.share(write(tmp_path / "a.bin", pseudo_random(40_000)), rings=["friends"])
    with pytest.raises(AccessDeniedError):
        await receiver.get(share.ticket, tmp_path / "out", retry=FAST_RETRY)
    serving.add_member("friends", str(receiver.peer_id))
    received = await receiver.get(share.ticket, tmp_path / "out")
    assert received.path.read_bytes() == pseudo_random(40_000)


async def test_impostor_at_the_address_is_rejected_naming_both_ids(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    share = serving.share(write(tmp_path / "a.bin", pseudo_random(10_000)), open=True)
    with Node(tmp_path / "someone-else") as other:
        forged = Ticket(
            peer_id=other.peer_id,
            addresses=share.ticket.addresses,
            content_hash=share.root,
            name="a.bin",
        )
        with pytest.raises(WrongPeerError) as failure:
            await receiver.get(forged, tmp_path / "out", retry=FAST_RETRY)
    message = str(failure.value)
    assert str(other.peer_id) in message
    assert str(serving.peer_id) in message
    assert not (tmp_path / "out").exists()


async def test_folder_with_many_files_arrives_whole(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    source = tmp_path / "photos"
    expected = {}
    for i in range(150):
        name = f"{'nested/deeper/' if i % 3 == 0 else ''}file-{i:03d}-é.bin"
        data = pseudo_random(i * 997 + (40_000 if i % 10 == 0 else 0), seed=i)
        write(source / name, data)
        expected[name] = data
    write(source / "empty.txt", b"")
    expected["empty.txt"] = b""
    share = serving.share(source, open=True)
    events: list[Progress] = []
    received = await receiver.get(share.ticket, tmp_path / "out", progress=events.append)
    assert received.path == tmp_path / "out"
    for name, data in expected.items():
        assert (received.path / name).read_bytes() == data
    assert received.stats.files == len(expected)
    assert events[-1].state == "done"
    assert events[-1].done == events[-1].total == sum(len(d) for d in expected.values())
    assert events[-1].files_done == len(expected)
    in_flight = [f for event in events for f in event.active]
    assert in_flight
    assert all(f.done <= f.total for f in in_flight if f.total is not None)
    assert all(f.done == 0 for f in in_flight if f.total is None)


async def test_second_get_of_the_same_content_transfers_nothing(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    data = pseudo_random(500_000)
    share = serving.share(write(tmp_path / "a.bin", data), open=True)
    await receiver.get(share.ticket, tmp_path / "one")
    again = await receiver.get(share.ticket, tmp_path / "two")
    assert again.path.read_bytes() == data
    assert again.stats.present == len(data)
    assert again.stats.received == 0


async def test_existing_destination_is_refused_without_force(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    share = serving.share(write(tmp_path / "a.bin", pseudo_random(1000)), open=True)
    write(tmp_path / "out" / "a.bin", b"mine")
    with pytest.raises(Exception, match="already exists"):
        await receiver.get(share.ticket, tmp_path / "out")
    assert (tmp_path / "out" / "a.bin").read_bytes() == b"mine"
    received = await receiver.get(share.ticket, tmp_path / "out", existing="force")
    assert received.path.read_bytes() == pseudo_random(1000)


async def test_changed_reference_file_fails_without_corrupt_export(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    data = bytearray(pseudo_random(400_000))
    source = write(tmp_path / "live.bin", bytes(data))
    share = serving.share(source, open=True, reference=True)
    data[300_000] ^= 1
    source.write_bytes(bytes(data))
    with pytest.raises(TransferError, match="changed"):
        await receiver.get(share.ticket, tmp_path / "out", retry=FAST_RETRY)
    assert not (tmp_path / "out").exists()


async def test_a_change_deep_inside_a_file_is_found_after_the_pieces_before_it_went_out(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    # The sharer reads ahead of the network, several pieces at a time: the piece that fails
    # verification must still end the upload only after every good piece before it was sent.
    size = 3 * READ_AHEAD
    source = write(tmp_path / "live.bin", pseudo_random(size))
    share = serving.share(source, open=True, reference=True)
    before = source.stat()
    with source.open("r+b") as f:  # behind an unchanged size and time: only hashing tells
        f.seek(size - 1000)
        f.write(b"changed!")
    os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
    with pytest.raises(TransferError, match="error reading the content"):
        await receiver.get(share.ticket, tmp_path / "out", retry=RetryPolicy(attempts=1))
    [upload] = serving.uploads()
    assert upload.outcome == "failed"
    # The last group's piece failed; every piece before it was handed to the network.
    assert size - 2 * PIECE <= upload.bytes_sent < size


async def test_two_receivers_download_the_same_content_at_once(
    serving: Node, tmp_path: Path
) -> None:
    data = pseudo_random(4 * 2**20)
    share = serving.share(write(tmp_path / "a.bin", data), open=True)
    with Node(tmp_path / "r1") as first, Node(tmp_path / "r2") as second:
        got = await asyncio.gather(
            first.get(share.ticket, tmp_path / "o1"), second.get(share.ticket, tmp_path / "o2")
        )
    assert [r.path.read_bytes() == data for r in got] == [True, True]


async def test_a_sharer_that_never_answers_fails_at_once_naming_the_likely_cause(
    sharer: Node, receiver: Node, tmp_path: Path
) -> None:
    share = sharer.share(write(tmp_path / "a.bin", pseudo_random(1000)), open=True)
    events: list[Progress] = []
    with pytest.raises(UnreachableError) as caught:
        await receiver.get(
            share.ticket, tmp_path / "out", progress=events.append, retry=RetryPolicy(attempts=8)
        )
    assert str(caught.value) == "the sharer did not answer: is its node serving?"
    assert caught.value.kind == "not-serving"  # for the CLI to name the commands that serve
    tried = caught.value.__notes__
    assert len(tried) == 1
    assert "127.0.0.1" in tried[0]
    assert not [e for e in events if e.state == "retrying"]


async def test_a_connection_that_worked_is_retried_when_lost(
    sharer: Node, receiver: Node, tmp_path: Path
) -> None:
    data = pseudo_random(8 * 2**20)
    share = sharer.share(write(tmp_path / "a.bin", data), open=True)
    ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(
        sharer.serve(host="127.0.0.1", ready=lambda port: ready.set_result(port))
    )
    relay = await Relay(await asyncio.wait_for(ready, 10), 2e6).start()
    events: list[Progress] = []

    def on_progress(progress: Progress) -> None:
        events.append(progress)
        if progress.done and not serving.done():
            serving.cancel()  # the sharer stops mid-transfer, and nothing answers after it
            relay.close()

    ticket = dataclasses.replace(
        share.ticket, addresses=(Address(ip_address("127.0.0.1"), relay.port),)
    )
    try:
        with pytest.raises(TransferError, match="gave up after 3 attempts"):
            await receiver.get(
                ticket, tmp_path / "out", progress=on_progress, retry=RetryPolicy(3, 0.05)
            )
    finally:
        serving.cancel()
        relay.close()
        await asyncio.gather(serving, return_exceptions=True)
    assert [e.attempt for e in events if e.state == "retrying"][:2] == [2, 3]


async def test_a_ticket_bigger_than_the_free_space_fails_before_transferring(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    share = serving.share(write(tmp_path / "a.bin", pseudo_random(1000)), open=True)
    huge = dataclasses.replace(share.ticket, size=2**62)
    with pytest.raises(DiskFullError, match="needs"):
        await receiver.get(huge, tmp_path / "out")
    assert serving.decisions() == []


async def test_cancelled_download_keeps_what_it_verified(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    data = pseudo_random(24 * 2**20)
    share = serving.share(write(tmp_path / "a.bin", data), open=True)
    relay = await Relay(share.ticket.addresses[0].port, 8e6).start()
    ticket = dataclasses.replace(
        share.ticket, addresses=(Address(ip_address("127.0.0.1"), relay.port),)
    )
    halfway = asyncio.Event()

    def on_progress(progress: Progress) -> None:
        if progress.done > len(data) // 2:
            halfway.set()

    try:
        task = asyncio.create_task(receiver.get(ticket, tmp_path / "out", progress=on_progress))
        await asyncio.wait_for(halfway.wait(), 30)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        again = await receiver.get(ticket, tmp_path / "out")
    finally:
        relay.close()
    assert again.path.read_bytes() == data
    assert again.stats.present >= len(data) // 2
    assert again.stats.received <= len(data) - again.stats.present + overhead_bound(len(data))


async def test_a_folder_with_duplicate_files_reports_them_done(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    same = pseudo_random(300_000)
    for name in ("a.bin", "copy/a.bin", "b.bin"):
        write(tmp_path / "dups" / name, same if "a.bin" in name else pseudo_random(1000))
    share = serving.share(tmp_path / "dups", open=True)
    events: list[Progress] = []
    received = await receiver.get(share.ticket, tmp_path / "out", progress=events.append)
    assert (received.path / "copy" / "a.bin").read_bytes() == same
    last = events[-1]
    assert (last.done, last.files_done) == (last.total, 3)
    assert received.stats.received < 2 * len(same)


async def test_a_blob_that_is_no_collection_is_refused_and_not_kept_as_one(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    info, _ = serving._store.import_bytes(b"not a collection" * 100, display_name="bogus")
    serving._access.attach(info.root, "open")
    bogus = Ticket(
        peer_id=serving.peer_id,
        addresses=serving.addresses(),
        content_hash=info.root,
        format="collection",
        name="bogus",
    )
    with pytest.raises(RingdropError):
        await receiver.get(bogus, tmp_path / "out")
    assert all(tag.root != info.root for tag in receiver._store.tags())
    assert receiver.shares() == []
    assert not (tmp_path / "out").exists()
