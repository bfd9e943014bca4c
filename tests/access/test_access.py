"""Access: rings, the open ring, expiry, the peer book and nicknames, grants, the decision, logs."""

from __future__ import annotations

import hashlib
import ipaddress
import itertools
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringdrop.access import (
    MIGRATIONS,
    OPEN_RING_ID,
    Access,
    CatalogRow,
    check_nickname,
    check_ring_name,
)
from ringdrop.access.decision import CATALOG, DECIDE, DECIDE_COLLECTION
from ringdrop.errors import (
    AccessDeniedError,
    AmbiguousError,
    InvalidNameError,
    NotFoundError,
    OpenRingError,
    RingdropError,
    StoreError,
    TicketError,
)
from ringdrop.identity import PeerId
from ringdrop.store.db import Database
from ringdrop.ticket import Address

T0 = 1_800_000_000.0
BASE32 = "abcdefghijklmnopqrstuvwxyz234567"
SPEC_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def peer(n: int) -> PeerId:
    return PeerId(nacl.signing.SigningKey(bytes([n]) * 32).verify_key.encode())


def peers_sharing_prefix(count: int, head: bytes = b"\x8a\x51\x23\x99\x0f") -> list[PeerId]:
    """`count` valid peer ids whose raw keys start with `head` (5 bytes: 8 base32 characters)."""
    found: list[PeerId] = []
    for i in itertools.count():
        raw = head + hashlib.sha256(i.to_bytes(4, "big")).digest()[: 32 - len(head)]
        try:
            found.append(PeerId(raw))
        except TicketError:
            continue
        if len(found) == count:
            return found
    raise AssertionError("unreachable")


def root(n: int) -> bytes:
    return hashlib.sha256(b"content %d" % n).digest()


ALICE, BOB, CAROL = peer(1), peer(2), peer(3)
FILE, OTHER_FILE, COLLECTION, MEMBER = root(1), root(2), root(3), root(4)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "db.sqlite3"


@pytest.fixture
def db(db_path: Path) -> Iterator[Database]:
    db = Database(db_path, MIGRATIONS)
    yield db
    db.close()


@pytest.fixture
def access(db: Database) -> Access:
    return Access(db)


def reads(access: Access, who: PeerId, what: bytes, now: float = T0) -> bool:
    return access.decide(who, what, "read", now=now).allowed


# Rings


def test_a_new_database_has_only_the_open_ring(access: Access) -> None:
    [ring] = access.rings()
    assert (ring.name, ring.is_open, ring.member_count, ring.content_count) == ("open", True, 0, 0)


def test_a_created_ring_is_listed_after_the_open_ring(access: Access) -> None:
    access.create_ring("friends")
    access.create_ring("Band")
    assert [r.name for r in access.rings()] == ["open", "Band", "friends"]


def test_rings_count_their_members_and_attached_content(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE)
    access.add_member("friends", BOB)
    access.attach(FILE, "friends")
    access.attach(FILE, "friends", "write")
    counts = {r.name: (r.member_count, r.content_count) for r in access.rings()}
    assert counts == {"open": (0, 0), "friends": (2, 1)}


def test_ring_names_are_unique_whatever_their_case(access: Access) -> None:
    access.create_ring("friends")
    with pytest.raises(StoreError, match="already a ring named 'friends'"):
        access.create_ring("FRIENDS")


def test_no_ring_may_take_the_name_of_the_open_ring(access: Access) -> None:
    with pytest.raises(StoreError, match="already a ring named 'open'"):
        access.create_ring("Open")


def test_rings_are_found_whatever_the_case_of_their_name(access: Access) -> None:
    access.create_ring("Friends")
    access.add_member("friends", ALICE)
    assert [m.peer_id for m in access.members("FRIENDS")] == [ALICE]


@pytest.mark.parametrize("name", ["", "-x", ".x", "a b", "a/b", "é", "x" * 65, "a\n", "a\x00"])
def test_an_invalid_ring_name_is_refused(access: Access, name: str) -> None:
    with pytest.raises(InvalidNameError, match="cannot be a ring name"):
        access.create_ring(name)


def test_renaming_a_ring_keeps_its_members_and_content(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE)
    access.attach(FILE, "friends")
    access.rename_ring("friends", "family")
    assert [m.peer_id for m in access.members("family")] == [ALICE]
    assert access.decide(ALICE, FILE, now=T0).ring == "family"


def test_a_ring_cannot_be_renamed_to_the_name_of_another(access: Access) -> None:
    access.create_ring("friends")
    access.create_ring("family")
    with pytest.raises(StoreError, match="already a ring named 'family'"):
        access.rename_ring("friends", "Family")


def test_a_ring_may_be_renamed_to_its_own_name_in_another_case(access: Access) -> None:
    access.create_ring("friends")
    access.rename_ring("friends", "Friends")
    assert [r.name for r in access.rings()] == ["open", "Friends"]


def test_deleting_a_ring_removes_its_memberships_and_links_but_not_the_peers(
    access: Access,
) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE)
    access.attach(FILE, "friends")
    access.delete_ring("friends")
    assert [r.name for r in access.rings()] == ["open"]
    assert access.attachments(FILE) == []
    assert not reads(access, ALICE, FILE)
    assert [p.peer_id for p in access.peers()] == [ALICE]


@pytest.mark.parametrize(
    "operation",
    [
        lambda a: a.rename_ring("nope", "x"),
        lambda a: a.delete_ring("nope"),
        lambda a: a.add_member("nope", ALICE),
        lambda a: a.remove_member("nope", ALICE),
        lambda a: a.members("nope"),
        lambda a: a.attach(FILE, "nope"),
        lambda a: a.detach(FILE, "nope"),
    ],
)
def test_an_unknown_ring_is_not_found(
    access: Access, operation: Callable[[Access], object]
) -> None:
    with pytest.raises(NotFoundError, match="no ring named 'nope'"):
        operation(access)


# The open ring


def test_the_open_ring_cannot_be_deleted(access: Access) -> None:
    with pytest.raises(OpenRingError, match="cannot be deleted"):
        access.delete_ring("open")


def test_the_open_ring_cannot_be_renamed(access: Access) -> None:
    with pytest.raises(OpenRingError, match="cannot be renamed"):
        access.rename_ring("OPEN", "public")


def test_the_open_ring_cannot_be_given_members(access: Access) -> None:
    with pytest.raises(OpenRingError, match="no members"):
        access.add_member("open", ALICE)
    assert access.peers() == []


def test_content_in_the_open_ring_is_readable_by_a_peer_nobody_has_heard_of(
    access: Access,
) -> None:
    access.attach(FILE, "open")
    decision = access.decide(CAROL, FILE, now=T0)
    assert decision.allowed
    assert decision.ring == "open"
    assert "open ring" in decision.reason


def test_the_open_ring_grants_only_the_permission_it_was_given(access: Access) -> None:
    access.attach(FILE, "open")
    assert not access.decide(CAROL, FILE, "write", now=T0).allowed


# Membership and expiry


def test_a_member_of_a_ring_may_read_content_attached_to_it(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE)
    access.attach(FILE, "friends")
    decision = access.decide(ALICE, FILE, now=T0)
    assert decision.allowed
    assert decision.ring == "friends"
    assert "member of the ring 'friends'" in decision.reason


def test_a_peer_outside_the_ring_may_not_read(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE)
    access.attach(FILE, "friends")
    decision = access.decide(BOB, FILE, now=T0)
    assert not decision.allowed
    assert decision.ring is None
    assert "not a member of any ring" in decision.reason


def test_content_attached_to_no_ring_is_refused_to_everyone(access: Access) -> None:
    decision = access.decide(ALICE, FILE, now=T0)
    assert not decision.allowed
    assert "not attached to any ring" in decision.reason


def test_a_member_may_read_only_content_attached_to_its_rings(access: Access) -> None:
    access.create_ring("friends")
    access.create_ring("work")
    access.add_member("friends", ALICE)
    access.attach(FILE, "work")
    assert not reads(access, ALICE, FILE)


def test_read_on_content_does_not_allow_writing_it(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE)
    access.attach(FILE, "friends", "read")
    assert not access.decide(ALICE, FILE, "write", now=T0).allowed


def test_a_membership_admits_until_it_expires(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE, expires_at=T0 + 60)
    access.attach(FILE, "friends")
    assert reads(access, ALICE, FILE, now=T0 + 59.9)


def test_an_expired_membership_admits_no_more_and_the_reason_says_so(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE, expires_at=T0 + 60)
    access.attach(FILE, "friends")
    decision = access.decide(ALICE, FILE, now=T0 + 60)
    assert not decision.allowed
    assert "membership of the ring 'friends' expired at 2027-01-15 08:01:00 UTC" in decision.reason


def test_an_expired_membership_is_the_reason_given_over_other_rings(access: Access) -> None:
    access.create_ring("aaa")
    access.create_ring("zzz")
    access.add_member("zzz", ALICE, expires_at=T0)
    access.attach(FILE, "aaa")
    access.attach(FILE, "zzz")
    assert "membership of the ring 'zzz' expired" in access.decide(ALICE, FILE, now=T0).reason


def test_an_expired_membership_does_not_hide_another_ring_that_admits(access: Access) -> None:
    access.create_ring("aaa")
    access.create_ring("zzz")
    access.add_member("aaa", ALICE, expires_at=T0)
    access.add_member("zzz", ALICE)
    access.attach(FILE, "aaa")
    access.attach(FILE, "zzz")
    assert access.decide(ALICE, FILE, now=T0).ring == "zzz"


def test_a_named_ring_is_reported_rather_than_the_open_ring(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE)
    access.attach(FILE, "friends")
    access.attach(FILE, "open")
    assert access.decide(ALICE, FILE, now=T0).ring == "friends"


def test_adding_a_member_again_replaces_its_expiry(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE, expires_at=T0)
    access.add_member("friends", ALICE)
    access.attach(FILE, "friends")
    assert reads(access, ALICE, FILE, now=T0 + 1_000_000)
    [member] = access.members("friends")
    assert member.expires_at is None


def test_members_lists_nicknames_and_expiry(access: Access) -> None:
    access.add_peer(BOB, "bob")
    access.create_ring("friends")
    access.add_member("friends", BOB, expires_at=T0)
    access.add_member("friends", ALICE)
    members = access.members("friends")
    assert [(m.peer_id, m.nickname, m.expires_at) for m in members] == [
        (BOB, "bob", T0),
        (ALICE, None, None),
    ]
    assert members[0].is_active(T0 - 1)
    assert not members[0].is_active(T0)


def test_the_open_ring_has_no_member_list(access: Access) -> None:
    assert access.members("open") == []


def test_adding_a_member_enters_the_peer_in_the_peer_book(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE)
    assert [p.peer_id for p in access.peers()] == [ALICE]


def test_removing_a_member_stops_its_access(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE)
    access.attach(FILE, "friends")
    access.remove_member("friends", ALICE)
    assert not reads(access, ALICE, FILE)


def test_removing_a_peer_that_is_not_a_member_is_not_found(access: Access) -> None:
    access.create_ring("friends")
    access.add_peer(ALICE, "alice")
    with pytest.raises(NotFoundError, match=r"'friends' does not include alice \("):
        access.remove_member("friends", ALICE)


def test_an_infinite_expiry_is_refused(access: Access) -> None:
    access.create_ring("friends")
    with pytest.raises(ValueError, match="finite"):
        access.add_member("friends", ALICE, expires_at=float("nan"))


# The peer book and nicknames


def test_a_peer_is_added_with_a_nickname(access: Access) -> None:
    added = access.add_peer(ALICE, "alice")
    assert (added.peer_id, added.nickname) == (ALICE, "alice")
    assert access.peers() == [added]


def test_a_peer_may_be_added_by_its_text(access: Access) -> None:
    access.add_peer(f"  {str(ALICE).upper()}\n")
    assert [p.peer_id for p in access.peers()] == [ALICE]


def test_adding_a_known_peer_again_keeps_its_nickname(access: Access) -> None:
    access.add_peer(ALICE, "alice")
    assert access.add_peer(ALICE).nickname == "alice"


def test_nicknames_are_unique_whatever_their_case(access: Access) -> None:
    access.add_peer(ALICE, "alice")
    with pytest.raises(StoreError, match="already the nickname of"):
        access.add_peer(BOB, "ALICE")
    assert access.add_peer(BOB).nickname is None


def test_a_nickname_can_be_changed_and_cleared(access: Access) -> None:
    access.add_peer(ALICE, "alice")
    access.set_nickname("alice", "ally")
    assert access.resolve_peer("ally") == ALICE
    access.set_nickname(ALICE, None)
    assert access.peers()[0].nickname is None
    with pytest.raises(NotFoundError):
        access.resolve_peer("ally")


def test_a_nickname_cannot_be_given_to_a_peer_outside_the_book(access: Access) -> None:
    with pytest.raises(NotFoundError, match="not in your peer book"):
        access.set_nickname(ALICE, "alice")


def test_a_nickname_cannot_look_like_a_peer_id(access: Access) -> None:
    with pytest.raises(InvalidNameError, match="looks like a peer id"):
        access.add_peer(ALICE, str(BOB))


@pytest.mark.parametrize("nickname", ["", "-bob", "bob smith", "x" * 33, "bøb"])
def test_an_invalid_nickname_is_refused(access: Access, nickname: str) -> None:
    with pytest.raises(InvalidNameError, match="cannot be a nickname"):
        access.add_peer(ALICE, nickname)


def test_removing_a_peer_removes_it_from_every_ring_and_grant(access: Access) -> None:
    access.create_ring("friends")
    access.create_ring("work")
    access.add_member("friends", ALICE)
    access.add_member("work", ALICE)
    access.add_member("work", BOB)
    access.grant(ALICE)
    access.attach(FILE, "work")
    access.remove_peer(ALICE)
    assert access.members("friends") == []
    assert [m.peer_id for m in access.members("work")] == [BOB]
    assert access.grants(ALICE) == []
    assert not reads(access, ALICE, FILE)
    assert reads(access, BOB, FILE)


def test_removing_a_peer_keeps_the_logs_about_it(access: Access) -> None:
    access.add_peer(ALICE)
    access.decide(ALICE, FILE, now=T0)
    access.log_upload(ALICE, FILE, 10, "complete", at=T0)
    access.remove_peer(ALICE)
    assert [e.peer_id for e in access.access_log()] == [ALICE]
    assert [u.peer_id for u in access.uploads()] == [ALICE]


def test_removing_a_peer_outside_the_book_is_not_found(access: Access) -> None:
    with pytest.raises(NotFoundError, match="not in your peer book"):
        access.remove_peer(ALICE)


# Naming peers by text


def test_a_whole_peer_id_resolves_even_outside_the_book(access: Access) -> None:
    assert access.resolve_peer(f" {str(CAROL).upper()} ") == CAROL


def test_a_nickname_resolves_whatever_its_case(access: Access) -> None:
    access.add_peer(ALICE, "Alice")
    assert access.resolve_peer("aLICE") == ALICE


def test_eight_leading_characters_of_a_known_peer_id_resolve(access: Access) -> None:
    access.add_peer(ALICE)
    access.add_peer(BOB)
    assert access.resolve_peer(str(ALICE)[:8].upper()) == ALICE


def test_fewer_than_eight_leading_characters_do_not_resolve(access: Access) -> None:
    access.add_peer(ALICE)
    with pytest.raises(NotFoundError, match="neither a peer id nor the nickname"):
        access.resolve_peer(str(ALICE)[:7])


def test_a_prefix_shared_by_two_peers_is_ambiguous(access: Access) -> None:
    first, second = peers_sharing_prefix(2)
    access.add_peer(first, "first")
    access.add_peer(second)
    with pytest.raises(AmbiguousError, match="several peers") as raised:
        access.resolve_peer(str(first)[:8])
    assert "first (" in str(raised.value)
    assert access.resolve_peer(str(second)[:20]) == second


def test_a_nickname_that_is_also_the_start_of_another_peer_id_is_ambiguous(
    access: Access,
) -> None:
    access.add_peer(BOB)
    access.add_peer(ALICE, str(BOB)[:8])
    with pytest.raises(AmbiguousError):
        access.resolve_peer(str(BOB)[:8])


def test_an_unknown_nickname_is_not_found(access: Access) -> None:
    with pytest.raises(NotFoundError, match=r"'mallory' is neither a peer id nor the nickname"):
        access.resolve_peer("mallory")


def test_empty_text_names_no_peer(access: Access) -> None:
    with pytest.raises(NotFoundError, match="No peer was named"):
        access.resolve_peer("  ")


def test_a_mistyped_peer_id_says_what_is_wrong_with_it(access: Access) -> None:
    with pytest.raises(TicketError, match="has 52 characters, and this has 51"):
        access.resolve_peer(str(ALICE)[:-1])


def test_a_nickname_is_accepted_wherever_a_peer_is(access: Access) -> None:
    access.add_peer(ALICE, "alice")
    access.create_ring("friends")
    access.add_member("friends", "alice")
    access.grant("alice")
    assert [m.peer_id for m in access.members("friends")] == [ALICE]
    assert access.grants("ALICE") == ["catalog"]
    access.remove_member("friends", "alice")
    access.revoke("alice")
    access.remove_peer("alice")
    assert access.peers() == []


def test_a_peer_id_given_as_text_enters_the_book_as_a_member(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", str(CAROL))
    assert [p.peer_id for p in access.peers()] == [CAROL]


# Content links and collections


def test_content_may_be_attached_before_the_store_has_it(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE)
    access.attach(root(99), "friends")
    assert reads(access, ALICE, root(99))


def test_attachments_lists_the_rings_and_permissions_of_content(access: Access) -> None:
    access.create_ring("friends")
    access.attach(FILE, "friends", "read")
    access.attach(FILE, "friends", "delete")
    access.attach(FILE, "open")
    shown = [(a.ring, a.permission) for a in access.attachments(FILE)]
    assert shown == [("friends", "delete"), ("friends", "read"), ("open", "read")]


def test_attaching_twice_is_harmless(access: Access) -> None:
    access.attach(FILE, "open")
    access.attach(FILE, "open")
    assert len(access.attachments(FILE)) == 1


def test_detaching_content_stops_access(access: Access) -> None:
    access.attach(FILE, "open")
    access.detach(FILE, "open")
    assert not reads(access, ALICE, FILE)


def test_detaching_one_permission_keeps_the_others(access: Access) -> None:
    access.attach(FILE, "open", "read")
    access.attach(FILE, "open", "write")
    access.detach(FILE, "open", "write")
    assert [a.permission for a in access.attachments(FILE)] == ["read"]


def test_detaching_content_that_is_not_attached_is_not_found(access: Access) -> None:
    with pytest.raises(NotFoundError, match="is not attached to the ring 'open'"):
        access.detach(FILE, "open")


def test_a_malformed_root_is_a_programming_error(access: Access) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        access.attach(b"short", "open")


def test_attaching_a_collection_lets_the_ring_read_its_members(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE)
    access.record_collection(COLLECTION, [MEMBER, OTHER_FILE])
    access.attach(COLLECTION, "friends")
    decision = access.decide(ALICE, MEMBER, now=T0)
    assert decision.allowed
    assert f"the collection {COLLECTION.hex()[:16]}" in decision.reason
    assert not reads(access, BOB, MEMBER)


def test_a_member_of_a_collection_in_the_open_ring_is_open(access: Access) -> None:
    access.record_collection(COLLECTION, [MEMBER])
    access.attach(COLLECTION, "open")
    assert reads(access, CAROL, MEMBER)


def test_content_outside_an_attached_collection_stays_closed(access: Access) -> None:
    access.record_collection(COLLECTION, [MEMBER])
    access.attach(COLLECTION, "open")
    assert not reads(access, CAROL, FILE)


def test_detaching_a_collection_closes_its_members(access: Access) -> None:
    access.record_collection(COLLECTION, [MEMBER])
    access.attach(COLLECTION, "open")
    access.detach(COLLECTION, "open")
    assert not reads(access, CAROL, MEMBER)


def test_recording_a_collection_twice_is_harmless(access: Access) -> None:
    access.record_collection(COLLECTION, [MEMBER])
    access.record_collection(COLLECTION, [MEMBER])
    access.attach(COLLECTION, "open")
    assert reads(access, CAROL, MEMBER)


def test_a_collections_members_are_recorded_in_its_order(access: Access) -> None:
    members = [root(10 + i) for i in range(5)]
    access.record_collection(COLLECTION, members)
    assert access.recorded_members(COLLECTION, [0, 3, 4]) == (
        5,
        [members[0], members[3], members[4]],
    )


def test_the_recorded_members_stop_at_the_first_index_past_the_end(access: Access) -> None:
    access.record_collection(COLLECTION, [MEMBER, FILE])
    assert access.recorded_members(COLLECTION, [1, 2, 3]) == (2, [FILE])
    assert access.recorded_members(COLLECTION, [7]) == (2, [])


def test_a_root_never_recorded_as_a_collection_has_no_members(access: Access) -> None:
    access.record_collection(COLLECTION, [MEMBER])
    assert access.recorded_members(MEMBER, [0]) is None
    assert access.recorded_members(FILE, [0]) is None


def test_a_collection_recorded_again_keeps_its_first_list(access: Access) -> None:
    access.record_collection(COLLECTION, [MEMBER, FILE])
    access.record_collection(COLLECTION, [OTHER_FILE])
    assert access.recorded_members(COLLECTION, [0, 1]) == (2, [MEMBER, FILE])


def test_an_empty_collection_is_recorded_with_no_members(access: Access) -> None:
    access.record_collection(COLLECTION, [])
    assert access.recorded_members(COLLECTION, [0]) == (0, [])


def test_a_member_of_an_attached_collection_is_not_admitted_as_a_collection(
    access: Access,
) -> None:
    access.record_collection(COLLECTION, [MEMBER])
    access.attach(COLLECTION, "open")
    assert access.judge(CAROL, MEMBER, now=T0)[0].allowed
    assert not access.judge(CAROL, MEMBER, now=T0, as_collection=True)[0].allowed
    assert access.judge(CAROL, COLLECTION, now=T0, as_collection=True)[0].allowed


def test_content_shared_with_no_ring_is_not_shared_to_a_known_peer_only(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE)
    access.add_peer(BOB, "bob")
    known, in_book, stranger = (access.judge(p, FILE, now=T0)[0] for p in (ALICE, BOB, CAROL))
    assert (known.allowed, known.not_shared) == (False, True)
    assert (in_book.allowed, in_book.not_shared) == (False, True)
    assert (stranger.allowed, stranger.not_shared) == (False, False)


def test_content_shared_with_another_ring_is_denied_even_to_a_known_peer(access: Access) -> None:
    access.create_ring("friends")
    access.create_ring("family")
    access.add_member("friends", ALICE)
    access.attach(FILE, "family")
    decision = access.judge(ALICE, FILE, now=T0)[0]
    assert (decision.allowed, decision.not_shared) == (False, False)


# Grants and the catalog


def test_a_grant_is_listed_and_enters_the_peer_in_the_book(access: Access) -> None:
    access.grant(ALICE, "catalog")
    assert access.grants(ALICE) == ["catalog"]
    assert [p.peer_id for p in access.peers()] == [ALICE]


def test_a_revoked_grant_is_gone(access: Access) -> None:
    access.grant(ALICE)
    access.revoke(ALICE)
    assert access.grants(ALICE) == []


def test_revoking_a_grant_the_peer_lacks_is_not_found(access: Access) -> None:
    with pytest.raises(NotFoundError, match="no catalog grant for the peer"):
        access.revoke(ALICE)


def test_the_catalog_needs_the_catalog_grant(access: Access) -> None:
    access.attach(FILE, "open")
    with pytest.raises(AccessDeniedError, match="no catalog grant"):
        access.catalog(ALICE)


def test_the_catalog_lists_what_the_peer_may_read_with_its_description(access: Access) -> None:
    access.create_ring("friends")
    access.create_ring("work")
    access.add_member("friends", ALICE)
    access.grant(ALICE)
    access.attach(FILE, "friends", name="notes.txt", format="blob", size=12)
    access.attach(FILE, "open")
    access.attach(COLLECTION, "open", name="album", format="collection", size=3000)
    access.attach(OTHER_FILE, "work", name="secret.txt")
    access.attach(MEMBER, "friends", "write")
    assert access.catalog(ALICE, now=T0) == [
        CatalogRow(COLLECTION, "album", "collection", 3000),
        CatalogRow(FILE, "notes.txt", "blob", 12),
    ]


def test_the_catalog_leaves_out_rings_whose_membership_expired(access: Access) -> None:
    access.create_ring("friends")
    access.add_member("friends", ALICE, expires_at=T0)
    access.grant(ALICE)
    access.attach(FILE, "friends")
    assert access.catalog(ALICE, now=T0 - 1) == [CatalogRow(FILE, None, None, None)]
    assert access.catalog(ALICE, now=T0) == []


def test_attaching_again_without_a_description_keeps_the_old_one(access: Access) -> None:
    access.grant(ALICE)
    access.attach(FILE, "open", name="notes.txt", size=12)
    access.attach(FILE, "open", "write", format="blob")
    assert access.catalog(ALICE) == [CatalogRow(FILE, "notes.txt", "blob", 12)]


# The decision's query and the logs


def test_the_decision_and_catalog_queries_scan_no_table(db: Database) -> None:
    bindings: dict[str, object] = {
        "open": OPEN_RING_ID,
        "peer": ALICE.raw,
        "root": FILE,
        "operation": "read",
        "now": T0,
    }
    with db.snapshot() as conn:
        plans = [
            str(row[3])
            for sql in (DECIDE, DECIDE_COLLECTION, CATALOG)
            for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", bindings).fetchall()
        ]
    scans = [step for step in plans if step.startswith("SCAN") and step != "SCAN CONSTANT ROW"]
    assert scans == []
    assert any("SEARCH a USING PRIMARY KEY (hash=? AND permission=?)" in s for s in plans)


def test_every_decision_is_logged_newest_first(access: Access) -> None:
    access.attach(FILE, "open")
    access.decide(ALICE, FILE, now=T0)
    access.decide(BOB, OTHER_FILE, now=T0 + 1)
    log = access.access_log()
    assert [(e.at, e.peer_id, e.root, e.operation, e.allowed, e.ring) for e in log] == [
        (T0 + 1, BOB, OTHER_FILE, "read", False, None),
        (T0, ALICE, FILE, "read", True, "open"),
    ]
    assert "not attached" in log[0].reason


def test_the_access_log_returns_at_most_the_limit(access: Access) -> None:
    for i in range(5):
        access.decide(ALICE, FILE, now=T0 + i)
    assert [e.at for e in access.access_log(limit=2)] == [T0 + 4, T0 + 3]


def test_uploads_are_listed_newest_first_up_to_the_limit(access: Access) -> None:
    access.log_upload(ALICE, FILE, 100, "complete", at=T0)
    access.log_upload(BOB, OTHER_FILE, 7, "interrupted", at=T0 + 1)
    access.log_upload(CAROL, FILE, 0, "failed", at=T0 + 2)
    shown = [(u.at, u.peer_id, u.root, u.bytes_sent, u.outcome) for u in access.uploads(2)]
    assert shown == [
        (T0 + 2, CAROL, FILE, 0, "failed"),
        (T0 + 1, BOB, OTHER_FILE, 7, "interrupted"),
    ]


def test_an_unknown_upload_outcome_is_a_programming_error(access: Access) -> None:
    with pytest.raises(ValueError, match="outcome"):
        access.log_upload(ALICE, FILE, 1, "exploded")  # type: ignore[arg-type]


# Where peers were reached


def test_a_peers_addresses_are_kept_best_first_and_replaced_by_newer_ones(access: Access) -> None:
    first = [
        Address(ipaddress.ip_address("192.0.2.1"), 4433),
        Address(ipaddress.ip_address("::1"), 1),
    ]
    access.remember_addresses(ALICE, first)
    assert access.addresses_of(ALICE) == first
    newer = [Address(ipaddress.ip_address("198.51.100.7"), 9)]
    access.remember_addresses(ALICE, newer)
    assert access.addresses_of(ALICE) == newer
    assert access.addresses_of(BOB) == []
    assert access.peers() == []  # using a ticket does not enter its sharer in the peer book


def test_concurrent_writers_of_addresses_lose_none_of_each_others_peers(db_path: Path) -> None:
    many = [peer(n) for n in range(10, 50)]

    def remember(peers: list[PeerId]) -> None:
        db = Database(db_path, MIGRATIONS)
        try:
            for n, p in enumerate(peers):
                Access(db).remember_addresses(p, [Address(ipaddress.ip_address("192.0.2.1"), n)])
        finally:
            db.close()

    Database(db_path, MIGRATIONS).close()
    threads = [threading.Thread(target=remember, args=(many[i::2],)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    db = Database(db_path, MIGRATIONS)
    try:
        assert all(len(Access(db).addresses_of(p)) == 1 for p in many)
    finally:
        db.close()


# Persistence


def test_everything_survives_reopening_the_database(db_path: Path) -> None:
    first_db = Database(db_path, MIGRATIONS)
    first = Access(first_db)
    first.add_peer(ALICE, "alice")
    first.create_ring("friends")
    first.add_member("friends", "alice", expires_at=T0 + 60)
    first.record_collection(COLLECTION, [MEMBER])
    first.attach(COLLECTION, "friends", name="album", format="collection", size=5)
    first.grant("alice")
    first.decide(ALICE, MEMBER, now=T0)
    first.log_upload(ALICE, MEMBER, 5, "complete", at=T0)
    first_db.close()

    again_db = Database(db_path, MIGRATIONS)
    again = Access(again_db)
    assert [(r.name, r.member_count, r.content_count) for r in again.rings()] == [
        ("open", 0, 0),
        ("friends", 1, 1),
    ]
    assert again.resolve_peer("alice") == ALICE
    assert [m.expires_at for m in again.members("friends")] == [T0 + 60]
    assert reads(again, ALICE, MEMBER, now=T0 + 1)
    assert not reads(again, ALICE, MEMBER, now=T0 + 60)
    assert again.grants(ALICE) == ["catalog"]
    assert again.catalog(ALICE, now=T0) == [CatalogRow(COLLECTION, "album", "collection", 5)]
    assert [e.at for e in again.access_log()] == [T0 + 60, T0 + 1, T0]
    assert [u.bytes_sent for u in again.uploads()] == [5]
    again_db.close()


# Properties of names and of naming peers


@given(st.text(max_size=80))
def test_ring_names_are_accepted_exactly_when_they_follow_the_rule(name: str) -> None:
    valid = bool(SPEC_NAME.fullmatch(name)) and name.isascii() and len(name) <= 64
    try:
        assert check_ring_name(name) == name
    except InvalidNameError:
        assert not valid
    else:
        assert valid


@given(st.text(max_size=60) | st.text(alphabet=BASE32, min_size=52, max_size=52))
def test_nicknames_are_accepted_exactly_when_they_follow_the_rule(nickname: str) -> None:
    valid = bool(SPEC_NAME.fullmatch(nickname)) and nickname.isascii() and len(nickname) <= 32
    try:
        assert check_nickname(nickname) == nickname
    except InvalidNameError:
        assert not valid
    else:
        assert valid


@pytest.fixture
def book(access: Access) -> Access:
    """A peer book with nicknames and two peers whose ids start alike."""
    access.add_peer(ALICE, "alice")
    access.add_peer(BOB, "b0b")
    for i, same_start in enumerate(peers_sharing_prefix(2)):
        access.add_peer(same_start, f"twin{i}")
    return access


PEERISH = st.one_of(
    st.text(max_size=70),
    st.text(alphabet=BASE32 + BASE32.upper() + " 01=", max_size=60),
    st.sampled_from([str(ALICE), str(BOB)]).map(lambda s: s[: len(s) // 2]),
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=300)
@given(text=PEERISH)
def test_resolving_any_text_gives_a_peer_or_a_ringdrop_error(book: Access, text: str) -> None:
    try:
        resolved = book.resolve_peer(text)
    except RingdropError:
        return
    assert isinstance(resolved, PeerId)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    nickname=st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}", fullmatch=True),
    upper=st.booleans(),
)
def test_any_valid_nickname_resolves_to_its_peer_in_any_case(
    access: Access, nickname: str, upper: bool
) -> None:
    access.add_peer(CAROL, nickname)
    assert access.resolve_peer(nickname.upper() if upper else nickname.lower()) == CAROL


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(length=st.integers(8, 52), upper=st.booleans())
def test_every_long_enough_start_of_a_known_peer_id_resolves(
    book: Access, length: int, upper: bool
) -> None:
    text = str(ALICE)[:length]
    assert book.resolve_peer(text.upper() if upper else text) == ALICE
