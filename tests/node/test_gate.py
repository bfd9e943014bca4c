"""The ring gate against a peer that writes its own requests (tests/hostile.py): real QUIC to a
serving node on loopback, real protocol bytes, nothing patched. A members request is answered
only for a collection this node recorded and a ring admits as a collection, with the members it
recorded; content the sharer removed is "no longer shared" to peers it knows and plain "denied"
to strangers."""

from __future__ import annotations

from pathlib import Path

import nacl.signing
import pytest

from ringdrop.bao import ChunkRanges, outboard_from_bytes
from ringdrop.errors import AccessDeniedError, NotFoundError
from ringdrop.identity import Identity
from ringdrop.node import Node, RetryPolicy
from ringdrop.protocol import (
    GetRequest,
    MemberSelection,
    MembersRequest,
    ResponseHeader,
    encode,
)
from ringdrop.store.collection import Collection, Entry
from ringdrop.ticket import Ticket
from tests.files import pseudo_random, write
from tests.hostile import connected, first_frame

SECRET = pseudo_random(3000, seed=7)


def stranger() -> Identity:
    return Identity(nacl.signing.SigningKey.generate())


def header(answer: bytes) -> ResponseHeader:
    message = first_frame(answer)
    assert isinstance(message, ResponseHeader)
    return message


def members_of(root: bytes, *indices: int) -> bytes:
    selections = tuple(MemberSelection(i, ChunkRanges.all()) for i in indices)
    return encode(MembersRequest(root, selections))


def get(root: bytes) -> bytes:
    return encode(GetRequest(root, ChunkRanges.all()))


@pytest.fixture
def rings(sharer: Node) -> Node:
    sharer.create_ring("friends")
    sharer.create_ring("family")
    return sharer


async def test_a_blob_shaped_as_a_collection_does_not_open_a_family_only_root(
    rings: Node, serving: Node, tmp_path: Path
) -> None:
    secret = rings.share(write(tmp_path / "diary.txt", SECRET), rings=["family"])
    # A file the attacker may read (in a folder shared with its ring), whose bytes list the
    # family-only root as if it were a folder's member.
    shaped = Collection.of([Entry("diary.txt", secret.root, len(SECRET))]).encode()
    folder = tmp_path / "for-friends"
    write(folder / "notes.bin", shaped)
    write(folder / "readme.txt", b"hello friends")
    rings.share(folder, rings=["friends"])
    mallory = stranger()
    rings.add_member("friends", str(mallory.peer_id))
    shaped_root = outboard_from_bytes(shaped)[0]

    async with connected(serving, mallory) as peer:
        assert header(await peer.ask(get(secret.root))).status == "denied"
        assert header(await peer.ask(get(shaped_root))).status == "allowed"
        answer = await peer.ask(members_of(shaped_root, 0))

    # No folder is shared under that root: a ring member is told so, and gets nothing.
    assert header(answer).status == "not_found"
    assert SECRET not in answer


async def test_a_member_of_an_attached_folder_is_not_admitted_as_a_collection(
    rings: Node, serving: Node, tmp_path: Path
) -> None:
    family = tmp_path / "family"
    write(family / "diary.txt", SECRET)
    write(family / "photo.jpg", pseudo_random(500, seed=8))
    secret = rings.share(family, rings=["family"])
    # The family folder's collection blob is a file in a folder shared with friends: its root
    # is then a member of an attached collection, which admits it as a blob, not as a folder.
    friends = tmp_path / "friends"
    write(friends / "listing.bin", rings._store.read_bytes(secret.root))
    rings.share(friends, rings=["friends"])
    mallory = stranger()
    rings.add_member("friends", str(mallory.peer_id))

    async with connected(serving, mallory) as peer:
        assert header(await peer.ask(get(secret.root))).status == "allowed"
        answer = await peer.ask(members_of(secret.root, 0, 1))

    assert header(answer).status == "denied"
    assert SECRET not in answer


async def test_a_ring_member_gets_a_folders_members_from_the_recorded_list(
    rings: Node, serving: Node, tmp_path: Path
) -> None:
    folder = tmp_path / "family"
    write(folder / "a.txt", b"first file")
    write(folder / "b.txt", SECRET)
    shared = rings.share(folder, rings=["family"])
    aunt = stranger()
    rings.add_member("family", str(aunt.peer_id))

    async with connected(serving, aunt) as peer:
        answer = await peer.ask(members_of(shared.root, 1))
        past_the_end = await peer.ask(members_of(shared.root, 2))

    assert header(answer).status == "allowed"
    assert SECRET in answer
    assert header(past_the_end).status == "error"


# Content the sharer removed (issue 22): who learns that it is gone.

FAST_RETRY = RetryPolicy(attempts=1)


@pytest.fixture
def removed(rings: Node, serving: Node, receiver: Node, tmp_path: Path) -> Ticket:
    """A file shared with `family`, of which `receiver` is a member, then removed."""
    rings.add_member("family", str(receiver.peer_id))
    share = rings.share(write(tmp_path / "diary.txt", SECRET), rings=["family"])
    rings.unshare(share.root)
    return share.ticket


async def test_a_ring_member_learns_that_removed_content_is_no_longer_shared(
    removed: Ticket, receiver: Node, tmp_path: Path
) -> None:
    with pytest.raises(NotFoundError, match="no longer") as raised:
        await receiver.get(removed, tmp_path / "out", retry=FAST_RETRY)
    assert raised.value.exit_code == 5


async def test_a_peer_in_the_sharers_peer_book_learns_it_too(
    rings: Node, removed: Ticket, tmp_path: Path
) -> None:
    with Node(tmp_path / "neighbour") as neighbour:
        rings.add_peer(neighbour.peer_id, "neighbour")
        with pytest.raises(NotFoundError, match="no longer"):
            await neighbour.get(removed, tmp_path / "out", retry=FAST_RETRY)


async def test_a_stranger_learns_only_that_removed_content_is_denied(
    removed: Ticket, tmp_path: Path
) -> None:
    with Node(tmp_path / "stranger") as outsider, pytest.raises(AccessDeniedError) as raised:
        await outsider.get(removed, tmp_path / "out", retry=FAST_RETRY)
    assert "no longer" not in str(raised.value)
    assert raised.value.exit_code == 4


async def test_a_ring_member_asking_for_a_removed_folder_learns_it_is_no_longer_shared(
    rings: Node, serving: Node, tmp_path: Path
) -> None:
    folder = tmp_path / "family"
    write(folder / "diary.txt", SECRET)
    shared = rings.share(folder, rings=["family"])
    aunt = stranger()
    rings.add_member("family", str(aunt.peer_id))
    rings.unshare(shared.root)

    async with connected(serving, aunt) as peer:
        answer = await peer.ask(members_of(shared.root, 0))

    assert header(answer).status == "not_found"
    assert SECRET not in answer


# A peer that asks again and again is one line in the access log, not one per request.


async def test_a_peers_stream_of_denied_requests_is_one_access_log_entry(
    rings: Node, serving: Node, tmp_path: Path
) -> None:
    secret = rings.share(write(tmp_path / "diary.txt", SECRET), rings=["family"])
    mallory = stranger()
    requests = 300
    async with connected(serving, mallory) as peer:
        for i in range(requests):
            # Other content each time: the entry keeps the first, and counts them all.
            root = secret.root if i == 0 else bytes([i % 256]) * 31 + bytes([i // 256])
            assert header(await peer.ask(get(root))).status == "denied"

    entries = [e for e in serving.decisions(limit=1000) if e.peer_id == mallory.peer_id]
    assert [(e.allowed, e.count, e.root) for e in entries] == [(False, requests, secret.root)]
