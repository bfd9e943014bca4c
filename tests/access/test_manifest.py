"""Signed ring manifests: the shared vectors, signing, and how a node keeps them (the newest valid
version wins; older, forged and unasked ones are ignored) and gates by them."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

import blake3
import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringdrop.access import MIGRATIONS, Access
from ringdrop.access.decision import RESERVE
from ringdrop.access.manifest import (
    MAX_MANIFEST_BYTES,
    MAX_MEMBERS,
    Manifest,
    ManifestMember,
    parse_manifest,
    sign_manifest,
)
from ringdrop.errors import InvalidManifestError
from ringdrop.identity import Identity, PeerId
from ringdrop.store.db import Database

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "ring_manifests.json").read_text())
T0 = 1_800_000_000
ROOT = hashlib.sha256(b"holiday photos").digest()


def identity(n: int) -> Identity:
    return Identity(nacl.signing.SigningKey(bytes([n]) * 32))


OWNER, B, C, E, STRANGER = (identity(n) for n in range(1, 6))


@pytest.fixture
def access(tmp_path: Path) -> Iterator[Access]:
    db = Database(tmp_path / "db.sqlite", MIGRATIONS)
    yield Access(db)
    db.close()


def ring(
    *members: PeerId,
    version: int = 1,
    by: Identity = OWNER,
    issued: int = T0,
    serve: bool = True,
    ring_id: bytes = b"r" * 16,
    name: str = "family",
) -> Manifest:
    return sign_manifest(
        by,
        ring_id=ring_id,
        version=version,
        name=name,
        members=[ManifestMember(m) for m in members],
        members_serve=serve,
        issued_at=issued,
        valid_until=issued + 86400,
    )


# -- the format -----------------------------------------------------------------------------------


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vectors_parse_to_their_fields_and_signing_them_again_gives_the_same_bytes(
    vector: dict[str, object],
) -> None:
    raw = bytes.fromhex(str(vector["manifest"]))
    manifest = parse_manifest(raw)
    members = [[m.peer_id.raw.hex(), m.expires_at] for m in manifest.members]
    assert (manifest.ring_id.hex(), manifest.owner.raw.hex(), manifest.version) == (
        vector["ring_id"],
        vector["owner"],
        vector["version"],
    )
    assert (manifest.issued_at, manifest.valid_until, manifest.members_serve) == (
        vector["issued_at"],
        vector["valid_until"],
        vector["members_serve"],
    )
    assert (manifest.name, members) == (vector["ring_name"], vector["members"])
    seed = blake3.blake3(str(vector["owner_seed"]).encode()).digest()
    again = sign_manifest(
        Identity(nacl.signing.SigningKey(seed)),
        ring_id=manifest.ring_id,
        version=manifest.version,
        name=manifest.name,
        members=reversed(manifest.members),  # any order in, one encoding out
        members_serve=manifest.members_serve,
        issued_at=manifest.issued_at,
        valid_until=manifest.valid_until,
    )
    assert again.raw == raw


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vectors_are_refused_saying_why(vector: dict[str, str]) -> None:
    with pytest.raises(InvalidManifestError, match=vector["error"]):
        parse_manifest(bytes.fromhex(vector["manifest"]))


def test_a_full_ring_fits_the_size_limit_and_one_member_more_cannot_be_signed() -> None:
    members = [
        Identity(nacl.signing.SigningKey(i.to_bytes(32, "big"))).peer_id
        for i in range(1, MAX_MEMBERS + 1)
    ]
    full = ring(*members, name="r" * 64)
    assert len(full.raw) == MAX_MANIFEST_BYTES
    with pytest.raises(InvalidManifestError, match=str(MAX_MEMBERS)):
        ring(*members, OWNER.peer_id)
    with pytest.raises(InvalidManifestError, match="at most"):
        parse_manifest(full.raw + b"\x00")


@given(st.binary(max_size=600))
def test_arbitrary_bytes_never_parse_unless_signed(data: bytes) -> None:
    with pytest.raises(InvalidManifestError):
        parse_manifest(data)


def test_validity_and_admission_follow_the_clock_and_member_expiry() -> None:
    manifest = sign_manifest(
        OWNER,
        ring_id=b"r" * 16,
        version=1,
        name="family",
        members=[ManifestMember(B.peer_id), ManifestMember(C.peer_id, T0 + 60)],
        members_serve=True,
        issued_at=T0,
        valid_until=T0 + 3600,
    )
    assert manifest.admits(B.peer_id, T0)
    assert manifest.admits(C.peer_id, T0 + 59)
    assert not manifest.admits(C.peer_id, T0 + 60)
    assert not manifest.admits(E.peer_id, T0)
    assert not manifest.admits(B.peer_id, T0 + 3600)  # past valid_until: nobody
    assert not manifest.is_valid(T0 - 3600)  # issued far in the future


# -- keeping them ---------------------------------------------------------------------------------


def test_a_member_keeps_a_new_ring_only_when_it_asked_and_is_listed(access: Access) -> None:
    listed, unlisted = ring(B.peer_id, C.peer_id), ring(C.peer_id, ring_id=b"u" * 16)
    assert access.store_manifests([listed.raw], B.peer_id, new_ring_ok=False, now=T0) == []
    assert access.store_manifests([unlisted.raw], B.peer_id, new_ring_ok=True, now=T0) == []
    assert access.store_manifests([listed.raw], B.peer_id, new_ring_ok=True, now=T0) == [listed]
    assert access.manifest(listed.ring_id) == listed


def test_the_newest_valid_version_wins_and_older_or_forged_ones_change_nothing(
    access: Access,
) -> None:
    v1 = ring(B.peer_id, E.peer_id, version=1)
    v2 = ring(B.peer_id, version=2)
    forged = ring(B.peer_id, E.peer_id, version=3, by=B)  # B signs as if it were the owner
    tampered = bytearray(v2.raw)
    tampered[63] ^= 1  # the version's last byte
    access.store_manifests([v1.raw], B.peer_id, new_ring_ok=True, now=T0)
    assert access.store_manifests([v2.raw], B.peer_id, new_ring_ok=False, now=T0) == [v2]
    assert access.store_manifests([v1.raw], B.peer_id, new_ring_ok=True, now=T0) == []
    assert access.store_manifests([forged.raw, bytes(tampered)], B.peer_id, new_ring_ok=True,
                                  now=T0) == []  # fmt: skip
    assert access.manifest(v1.ring_id) == v2
    assert access.manifests_admitting(E.peer_id, now=T0) == []
    assert access.manifests_admitting(B.peer_id, now=T0) == [v2.raw]


def test_an_expired_manifest_is_never_kept_nor_served(access: Access) -> None:
    old = ring(B.peer_id, issued=T0 - 2 * 86400)
    assert access.store_manifests([old.raw], B.peer_id, new_ring_ok=True, now=T0) == []
    current = ring(B.peer_id, C.peer_id, version=2)
    access.store_manifests([current.raw], B.peer_id, new_ring_ok=True, now=T0)
    assert access.manifests_admitting(C.peer_id, now=T0 + 86400) == []


def test_an_owner_never_takes_its_own_ring_from_a_peer(access: Access) -> None:
    mine = ring(B.peer_id, by=OWNER)
    assert access.store_manifests([mine.raw], OWNER.peer_id, new_ring_ok=True, now=T0) == []


# -- the owner's side -----------------------------------------------------------------------------


def test_every_change_to_a_ring_signs_a_higher_version_with_its_members(access: Access) -> None:
    access.create_ring("family")
    first = access.sign_ring(OWNER, "family", now=T0)
    assert first is not None
    assert first.members == ()
    assert first.owner == OWNER.peer_id
    access.add_member("family", B.peer_id, expires_at=T0 + 10.5)
    access.set_members_serve("family", False)
    second = access.sign_ring(OWNER, "family", now=T0)
    assert second is not None
    assert second.version == first.version + 1
    assert second.ring_id == first.ring_id
    assert not second.members_serve
    assert second.members == (ManifestMember(B.peer_id, T0 + 11),)
    assert access.sign_ring(OWNER, "open") is None


def test_own_manifests_are_signed_again_past_half_their_validity(access: Access) -> None:
    access.create_ring("family")
    assert [m.name for m in access.sign_due(OWNER, now=T0)] == ["family"]  # none yet
    assert access.sign_due(OWNER, now=T0 + 3600) == []
    again = access.sign_due(OWNER, now=T0 + 12 * 3600 + 1)
    assert [m.version for m in again] == [2]


# -- the member's gate ----------------------------------------------------------------------------


def test_a_member_serves_what_it_received_under_a_ring_to_the_ring_alone(access: Access) -> None:
    manifest = ring(B.peer_id, C.peer_id)
    access.store_manifests([manifest.raw], B.peer_id, new_ring_ok=True, now=T0)
    access.record_received(ROOT, [manifest])
    allowed, entry = access.judge(C.peer_id, ROOT, now=T0, reserve=True)
    assert allowed.allowed
    assert allowed.ring == "family"
    assert entry.allowed
    assert not access.judge(STRANGER.peer_id, ROOT, now=T0, reserve=True)[0].allowed
    assert not access.judge(C.peer_id, ROOT, now=T0, reserve=False)[0].allowed  # refuses itself
    other = hashlib.sha256(b"not received under the ring").digest()
    assert not access.judge(C.peer_id, other, now=T0, reserve=True)[0].allowed
    assert not access.judge(C.peer_id, ROOT, now=T0 + 86400, reserve=True)[0].allowed


def test_a_newer_manifest_without_a_member_makes_the_others_refuse_it(access: Access) -> None:
    access.store_manifests([ring(B.peer_id, E.peer_id).raw], B.peer_id, new_ring_ok=True, now=T0)
    access.record_received(ROOT, [ring(B.peer_id, E.peer_id)])
    assert access.judge(E.peer_id, ROOT, now=T0, reserve=True)[0].allowed
    access.store_manifests([ring(B.peer_id, version=2).raw], B.peer_id, new_ring_ok=False, now=T0)
    assert not access.judge(E.peer_id, ROOT, now=T0, reserve=True)[0].allowed


def test_members_do_not_serve_when_the_owner_says_they_may_not(access: Access) -> None:
    manifest = ring(B.peer_id, C.peer_id, serve=False)
    access.store_manifests([manifest.raw], B.peer_id, new_ring_ok=True, now=T0)
    access.record_received(ROOT, [manifest])
    assert not access.judge(C.peer_id, ROOT, now=T0, reserve=True)[0].allowed


def test_the_member_gate_is_an_indexed_lookup(access: Access) -> None:
    with access._db.snapshot() as conn:
        plan = " ".join(
            str(row[-1])
            for row in conn.execute(
                "EXPLAIN QUERY PLAN " + RESERVE, {"peer": b"p" * 32, "root": ROOT, "now": T0}
            )
        )
    assert "SCAN" not in plan.replace("SCAN CONSTANT ROW", ""), plan
