"""A ring's news in the database: how an owner numbers what it shares to a ring and withdraws,
whom it still owes news, and what a member keeps — only from owners it knows, for rings that
admit it, once per announcement, within a bound per ring."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import nacl.signing
import pytest

from ringdrop.access import MIGRATIONS, Access, news
from ringdrop.access.announcement import Announcement, Kind, sign_announcement
from ringdrop.access.manifest import Manifest
from ringdrop.identity import Identity, PeerId
from ringdrop.store.db import Database
from tests.rings_util import family_manifest


def identity(n: int) -> Identity:
    return Identity(nacl.signing.SigningKey(bytes([n]) * 32))


OWNER, B, C, STRANGER = (identity(n) for n in range(11, 15))
RING = b"R" * 16


def root(n: int) -> bytes:
    return hashlib.sha256(b"content %d" % n).digest()


@pytest.fixture
def access(tmp_path: Path) -> Iterator[Access]:
    db = Database(tmp_path / "db.sqlite", MIGRATIONS)
    yield Access(db)
    db.close()


def manifest(
    *members: PeerId, version: int = 1, by: Identity = OWNER, ring_id: bytes = RING
) -> Manifest:
    return family_manifest(by, *members, ring_id=ring_id, version=version)


def announcement(
    sequence: int,
    n: int,
    kind: Kind = "share",
    *,
    by: Identity = OWNER,
    ring_id: bytes = RING,
) -> Announcement:
    return sign_announcement(
        by,
        ring_id=ring_id,
        ring_name="family",
        sequence=sequence,
        at=int(time.time()),
        kind=kind,
        root=root(n),
        format="blob",
        size=1000 + n,
        name=f"file-{n}.bin",
    )


# -- the owner's side -----------------------------------------------------------------------------


def ring_id(access: Access, name: str) -> int:
    signed = access.sign_ring(OWNER, name)
    assert signed is not None
    found = access.own_ring(signed.ring_id)
    assert found is not None
    return found[0]


def test_sharing_withdrawing_and_sharing_again_each_take_the_next_number(access: Access) -> None:
    access.create_ring("family")
    r = ring_id(access, "family")
    access.attach(root(1), "family", name="a")
    access.attach(root(1), "family", name="a")  # attached already: nothing new to say
    access.attach(root(2), "family", name="b")
    access.detach(root(1), "family")
    access.attach(root(1), "family", name="a")
    items, more = access.news_since(r, 0, 16)
    assert not more
    assert [(i.root, i.sequence, i.kind) for i in items] == [
        (root(2), 2, "share"),
        (root(1), 4, "share"),
    ]
    items, _ = access.news_since(r, 2, 16)
    assert [(i.root, i.sequence, i.kind) for i in items] == [(root(1), 4, "share")]


def test_a_member_with_nothing_yet_is_told_no_withdrawals_but_one_told_before_is(
    access: Access,
) -> None:
    access.create_ring("family")
    r = ring_id(access, "family")
    access.attach(root(1), "family")
    access.attach(root(2), "family")
    access.detach(root(1), "family")
    fresh, _ = access.news_since(r, 0, 16)
    assert [(i.root, i.kind) for i in fresh] == [(root(2), "share")]
    told, _ = access.news_since(r, 2, 16)
    assert [(i.root, i.kind, i.sequence) for i in told] == [(root(1), "withdraw", 3)]


def test_the_open_ring_and_other_permissions_announce_nothing(access: Access) -> None:
    access.attach(root(1), "open")
    access.create_ring("family")
    access.attach(root(2), "family", "write")
    assert access.news_since(ring_id(access, "family"), 0, 16) == ([], False)


def test_news_comes_a_page_at_a_time_in_order(access: Access) -> None:
    access.create_ring("family")
    r = ring_id(access, "family")
    for n in range(5):
        access.attach(root(n), "family")
    first, more = access.news_since(r, 0, 3)
    assert [i.sequence for i in first] == [1, 2, 3]
    assert more
    rest, more = access.news_since(r, 3, 3)
    assert [i.sequence for i in rest] == [4, 5]
    assert not more


def test_only_members_the_newest_manifest_admits_are_owed_news(access: Access) -> None:
    access.create_ring("family")
    for member in (B, C):
        access.add_member("family", member.peer_id)
    access.sign_ring(OWNER, "family")
    access.attach(root(1), "family")
    owed = access.news_due(OWNER.peer_id)
    assert sorted(d.peer.raw for d in owed) == sorted([B.peer_id.raw, C.peer_id.raw])
    assert {(d.sent, d.sequence) for d in owed} == {(0, 1)}

    access.remove_member("family", C.peer_id)
    access.sign_ring(OWNER, "family")
    access.add_member("family", STRANGER.peer_id, expires_at=time.time() - 1)
    access.sign_ring(OWNER, "family")
    assert [d.peer for d in access.news_due(OWNER.peer_id)] == [B.peer_id]

    access.mark_sent(owed[0].ring_id, B.peer_id, 1)
    assert access.news_due(OWNER.peer_id) == []
    access.attach(root(2), "family")
    assert [(d.peer, d.sent, d.sequence) for d in access.news_due(OWNER.peer_id)] == [
        (B.peer_id, 1, 2)
    ]


def test_a_member_added_later_is_owed_what_the_ring_already_has(access: Access) -> None:
    access.create_ring("family")
    access.add_member("family", B.peer_id)
    r = ring_id(access, "family")
    for n in (1, 2, 3):
        access.attach(root(n), "family", name=f"file-{n}.bin")
    access.detach(root(2), "family")
    access.mark_sent(r, B.peer_id, 4)
    assert access.news_due(OWNER.peer_id) == []

    access.add_member("family", C.peer_id)
    access.sign_ring(OWNER, "family")
    (owed,) = access.news_due(OWNER.peer_id)
    assert (owed.peer, owed.sent, owed.sequence) == (C.peer_id, 0, 4)
    items, _ = access.news_since(r, owed.sent, 16)
    assert [(i.root, i.kind) for i in items] == [(root(1), "share"), (root(3), "share")]


# -- a member's side ------------------------------------------------------------------------------


def test_news_of_a_ring_not_held_from_an_owner_this_node_does_not_know_leaves_nothing(
    access: Access,
) -> None:
    reason, changed = access.accept_news(
        B.peer_id, manifest(B.peer_id), [announcement(1, 1)], asked=False
    )
    assert reason == "this node does not know the ring's owner"
    assert changed == []
    assert access.inbox() == []
    assert access.manifest(RING) is None
    assert access.ring_cursor(RING) == 0


def test_an_owner_in_the_peer_book_is_heard_and_its_manifest_kept(access: Access) -> None:
    access.add_peer(OWNER.peer_id, "mum")
    reason, changed = access.accept_news(
        B.peer_id, manifest(B.peer_id), [announcement(1, 1), announcement(2, 2)], asked=False
    )
    assert reason is None
    entries = access.inbox()
    assert [e.id for e in entries] == changed
    assert [(e.name, e.state, e.sequence, e.asked) for e in entries] == [
        ("file-1.bin", "new", 1, False),
        ("file-2.bin", "new", 2, False),
    ]
    assert access.manifest(RING) == manifest(B.peer_id)
    assert access.ring_cursor(RING) == 2


def test_news_this_node_asked_for_is_kept_without_knowing_the_owner(access: Access) -> None:
    reason, _ = access.accept_news(B.peer_id, manifest(B.peer_id), [announcement(1, 1)], asked=True)
    assert reason is None
    assert [e.asked for e in access.inbox()] == [True]


def test_a_ring_that_does_not_admit_this_node_is_refused_even_from_a_known_owner(
    access: Access,
) -> None:
    access.add_peer(OWNER.peer_id)
    reason, _ = access.accept_news(B.peer_id, manifest(C.peer_id), [announcement(1, 1)], asked=True)
    assert reason == "the ring's manifest does not admit this node"
    assert access.inbox() == []


def test_once_removed_an_older_manifest_does_not_let_the_news_in_again(access: Access) -> None:
    access.add_peer(OWNER.peer_id)
    assert (
        access.accept_news(B.peer_id, manifest(B.peer_id), [announcement(1, 1)], asked=False)[0]
        is None
    )
    removed = manifest(C.peer_id, version=2)
    reason, _ = access.accept_news(B.peer_id, removed, [announcement(2, 2)], asked=False)
    assert reason == "the ring's manifest does not admit this node"
    reason, _ = access.accept_news(
        B.peer_id, manifest(B.peer_id), [announcement(3, 3)], asked=False
    )
    assert reason == "the ring's manifest does not admit this node"
    assert [e.name for e in access.inbox()] == ["file-1.bin"]


def test_a_ring_id_held_under_another_owner_is_refused(access: Access) -> None:
    access.add_peer(OWNER.peer_id)
    access.add_peer(C.peer_id)
    access.accept_news(B.peer_id, manifest(B.peer_id), [announcement(1, 1)], asked=False)
    squatter = manifest(B.peer_id, version=9, by=C)
    reason, _ = access.accept_news(B.peer_id, squatter, [announcement(2, 2, by=C)], asked=False)
    assert reason == "another key owns a ring of that id here"


def test_news_heard_twice_changes_nothing_and_a_withdrawal_marks_the_entry(access: Access) -> None:
    access.add_peer(OWNER.peer_id)
    ring = manifest(B.peer_id)
    access.accept_news(B.peer_id, ring, [announcement(1, 1)], asked=False)
    (entry,) = access.inbox()
    access.set_inbox_state(entry.id, "received", path="/tmp/x")
    _, changed = access.accept_news(B.peer_id, ring, [announcement(1, 1)], asked=False)
    assert changed == []
    assert access.inbox()[0].state == "received"

    _, changed = access.accept_news(
        B.peer_id,
        ring,
        [announcement(2, 1, "withdraw"), announcement(3, 9, "withdraw")],
        asked=False,
    )
    assert changed == [entry.id]  # a withdrawal of what it was never told leaves no entry
    (withdrawn,) = access.inbox()
    assert (withdrawn.state, withdrawn.path) == ("withdrawn", "/tmp/x")

    _, changed = access.accept_news(B.peer_id, ring, [announcement(4, 1)], asked=False)
    assert [e.state for e in access.inbox()] == ["new"]
    assert access.ring_cursor(RING) == 4


def test_a_rings_inbox_keeps_its_newest_entries_dropping_what_needs_nothing_first(
    access: Access, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(news, "MAX_INBOX", 20)
    access.add_peer(OWNER.peer_id)
    ring = manifest(B.peer_id)
    access.accept_news(B.peer_id, ring, [announcement(n, n) for n in range(1, 21)], asked=False)
    for entry in access.inbox()[-3:]:
        access.set_inbox_state(entry.id, "dismissed")
    access.accept_news(B.peer_id, ring, [announcement(n, n) for n in range(21, 24)], asked=False)
    assert [e.sequence for e in access.inbox()] == [*range(1, 18), 21, 22, 23]
    access.accept_news(B.peer_id, ring, [announcement(n, n) for n in range(24, 60)], asked=False)
    assert [e.sequence for e in access.inbox()] == list(range(40, 60))


def test_a_follow_enters_the_owner_in_the_peer_book_and_matches_its_ring_by_name_then_id(
    access: Access,
) -> None:
    follow = access.add_follow(OWNER.peer_id, "FAMILY", "/tmp/into", "rename", 10)
    assert access.knows([OWNER.peer_id]) == [True]
    assert (follow.uid, follow.existing, follow.max_size) == (None, "rename", 10)
    access.accept_news(B.peer_id, manifest(B.peer_id), [announcement(1, 1)], asked=False)
    (entry,) = access.inbox()
    assert [(e.id, f.id) for e, f in access.followed()] == [(entry.id, follow.id)]
    assert access.follows()[0].uid == RING  # a renamed ring stays followed

    other = sign_announcement(
        OWNER,
        ring_id=b"S" * 16,
        ring_name="family",
        sequence=1,
        at=1,
        kind="share",
        root=root(5),
        format="blob",
        size=1,
        name="x",
    )
    access.accept_news(B.peer_id, manifest(B.peer_id, ring_id=b"S" * 16), [other], asked=False)
    # Another ring of the same name and owner is not followed; an entry set aside is not offered.
    assert [e.id for e, _ in access.followed()] == [entry.id]
    access.set_inbox_state(entry.id, "new", note="larger than the cap")
    assert access.followed() == []
    access.remove_follow(OWNER.peer_id, "family")
    assert access.follows() == []
