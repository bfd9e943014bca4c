"""Announce and since against a serving node, from peers that write their own requests
(tests/hostile.py): real QUIC on loopback, real protocol bytes. A member keeps only its ring
owner's signed news, refuses and logs forgeries, and keeps nothing of a stranger's however many
it sends; an owner tells its news to its ring's members only, a page at a time, and never
answers a stranger with more than three times what it sent."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import nacl.signing

from ringdrop.access import AccessLogEntry
from ringdrop.access.announcement import parse_announcement, sign_announcement
from ringdrop.identity import Identity, PeerId
from ringdrop.node import Node
from ringdrop.protocol import (
    AnnounceRequest,
    News,
    ResponseHeader,
    SinceRequest,
    encode,
)
from tests.files import pseudo_random, write
from tests.hostile import HostilePeer, connected, frames
from tests.rings_util import family_manifest

RING = b"R" * 16


def someone() -> Identity:
    return Identity(nacl.signing.SigningKey.generate())


async def ask(peer: HostilePeer, request: bytes) -> tuple[ResponseHeader, News | None, int]:
    """The header and NEWS of the answer to `request`, and the answer's size."""
    answer = await peer.ask(request)
    found = frames(answer)
    header = found[0]
    assert isinstance(header, ResponseHeader)
    news = found[1] if len(found) > 1 else None
    assert news is None or isinstance(news, News)
    return header, news, len(answer)


async def wait_for(condition: Callable[[], object], what: str) -> None:
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"waited 30 s for {what}"
        await asyncio.sleep(0.05)


def manifest(owner: Identity, *members: PeerId, ring_id: bytes = RING, version: int = 1) -> bytes:
    return family_manifest(owner, *members, ring_id=ring_id, version=version).raw


def announcement(
    by: Identity, sequence: int, *, ring_id: bytes = RING, owner_field: Identity | None = None
) -> bytes:
    signed = sign_announcement(
        owner_field or by,
        ring_id=ring_id,
        ring_name="family",
        sequence=sequence,
        at=int(time.time()),
        kind="share",
        root=bytes([sequence]) * 32,
        format="blob",
        size=1000,
        name=f"photo-{sequence}.jpg",
    ).raw
    if owner_field is None:
        return signed
    # The owner's key in the announcement, a signature made by `by`: a forgery.
    body = signed[:-64]
    return body + by.sign(b"ringdrop/1 announcement\x00" + body)


def denials(node: Node, peer: PeerId, operation: str) -> list[str]:
    return [
        e.reason
        for e in node.decisions(1000)
        if e.peer_id == peer and not e.allowed and e.operation == operation
    ]


# -- a member taking news -------------------------------------------------------------------------


async def test_the_owner_a_member_knows_is_heard_and_its_news_kept(serving: Node) -> None:
    owner = someone()
    serving.add_peer(owner.peer_id, "mum")
    news = News(manifest(owner, serving.peer_id), (announcement(owner, 1), announcement(owner, 2)))
    async with connected(serving, owner) as peer:
        header, _, _ = await ask(peer, encode(AnnounceRequest(news)))
    assert header.status == "allowed"
    assert [(i.name, i.nickname, i.ring, i.state) for i in serving.inbox()] == [
        ("photo-1.jpg", "mum", "family", "new"),
        ("photo-2.jpg", "mum", "family", "new"),
    ]
    await wait_for(
        lambda: any(e.operation == "announce" and e.allowed for e in serving.decisions()),
        "the announcement in the access log",
    )


async def test_news_signed_by_a_member_or_passed_on_by_one_is_refused_and_logged(
    serving: Node,
) -> None:
    owner, member = someone(), someone()
    serving.add_peer(owner.peer_id)
    serving.add_peer(member.peer_id)
    ring = manifest(owner, serving.peer_id, member.peer_id)
    attempts = [
        News(ring, (announcement(member, 1, owner_field=owner),)),  # the owner's name, forged
        News(ring, (announcement(member, 2),)),  # signed by the member as itself
        News(ring, (announcement(owner, 3),)),  # the owner's real news, passed on
    ]
    async with connected(serving, member) as peer:
        for news in attempts:
            header, _, _ = await ask(peer, encode(AnnounceRequest(news)))
            assert header.status == "denied"
    assert serving.inbox() == []

    def logged() -> list[AccessLogEntry]:
        return [e for e in serving.decisions(1000) if e.peer_id == member.peer_id]

    await wait_for(
        lambda: sum(e.count for e in logged()) == len(attempts), "the refusals in the access log"
    )
    reasons = denials(serving, member.peer_id, "announce")
    assert any("owner" in r for r in reasons), reasons
    # The repeated refusals share a row naming the first one's content: the forgery's.
    assert [e.root for e in logged()] == [bytes([1]) * 32]


async def test_the_owners_news_of_a_ring_the_member_is_not_in_is_refused_and_logged(
    serving: Node,
) -> None:
    owner, other = someone(), someone()
    serving.add_peer(owner.peer_id, "mum")
    news = News(
        manifest(owner, other.peer_id, ring_id=b"T" * 16),
        (announcement(owner, 1, ring_id=b"T" * 16),),
    )
    async with connected(serving, owner) as peer:
        header, _, _ = await ask(peer, encode(AnnounceRequest(news)))
    assert header.status == "denied"
    assert "does not admit" in header.reason
    assert serving.inbox() == []
    assert serving._access.manifest(b"T" * 16) is None
    await wait_for(
        lambda: denials(serving, owner.peer_id, "announce"), "the refusal in the access log"
    )


async def test_a_strangers_flood_of_news_leaves_no_state_and_earns_small_answers(
    serving: Node,
) -> None:
    stranger = someone()
    sizes = []
    async with connected(serving, stranger) as peer:
        for n in range(1, 151):
            ring_id = n.to_bytes(16, "big")
            news = News(
                manifest(stranger, serving.peer_id, ring_id=ring_id),
                tuple(announcement(stranger, s, ring_id=ring_id) for s in range(1, 9)),
            )
            request = encode(AnnounceRequest(news))
            header, _, size = await ask(peer, request)
            assert header.status == "denied"
            sizes.append((size, len(request)))
    assert all(size <= 3 * sent for size, sent in sizes)
    assert serving.inbox() == []
    assert serving._access.held_manifests() == []
    await wait_for(
        lambda: denials(serving, stranger.peer_id, "announce"), "the refusals in the access log"
    )
    rows = [e for e in serving.decisions(1000) if e.peer_id == stranger.peer_id]
    assert len(rows) == 1  # 150 refusals in a row are one entry with a count
    assert rows[0].count == 150


# -- an owner answering since ---------------------------------------------------------------------


def own_ring(node: Node, tmp_path: Path, *members: PeerId, shares: int = 1) -> bytes:
    node.create_ring("family")
    for member in members:
        node.add_member("family", member)
    for n in range(shares):
        node.share(write(tmp_path / f"s{n}.bin", pseudo_random(2000, seed=n)), rings=["family"])
    signed = node.sign_ring("family")
    assert signed is not None
    return signed.ring_id


async def test_since_tells_a_member_the_news_a_page_at_a_time(
    serving: Node, tmp_path: Path
) -> None:
    member = someone()
    ring_id = own_ring(serving, tmp_path, member.peer_id, shares=20)
    reach = (("192.0.2.8", 4433),)
    async with connected(serving, member) as peer:
        header, news, _ = await ask(peer, encode(SinceRequest(ring_id, 0, None, reach)))
        assert header.status == "allowed"
        assert news is not None
        assert news.more
        first = [parse_announcement(a) for a in news.announcements]
        assert [a.sequence for a in first] == list(range(1, 17))
        assert all(a.owner == serving.peer_id and a.ring_id == ring_id for a in first)
        _, news, _ = await ask(peer, encode(SinceRequest(ring_id, 16)))
        assert news is not None
        assert not news.more
        assert [parse_announcement(a).sequence for a in news.announcements] == [17, 18, 19, 20]
    _, addresses = serving._access.member_reach(member.peer_id)
    assert [str(a) for a in addresses] == ["192.0.2.8:4433"]
    # It has been told everything: the owner owes it nothing more.
    assert serving._access.news_due(serving.peer_id) == []


async def test_since_from_a_stranger_or_a_removed_member_is_refused_small_and_logged(
    serving: Node, tmp_path: Path
) -> None:
    member, stranger = someone(), someone()
    ring_id = own_ring(serving, tmp_path, member.peer_id)
    serving.remove_member("family", member.peer_id)
    for who in (stranger, member):
        async with connected(serving, who) as peer:
            for ring in (ring_id, b"N" * 16):
                request = encode(SinceRequest(ring, 0))
                header, news, size = await ask(peer, request)
                assert header.status == "denied"
                assert news is None
                assert size <= 3 * len(request)
        await wait_for(partial(denials, serving, who.peer_id, "since"), "the refusal logged")
        assert serving._access.member_reach(who.peer_id) == (None, [])
