"""RINGS, ABOUT and HAVE against a serving node, from a peer that writes its own requests
(tests/hostile.py): real QUIC on loopback, real protocol bytes. Strangers learn nothing and leave
nothing behind; members get the owner's newest manifests and the providers; a forged or older
manifest changes nothing; oversized input is refused with a small answer."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import nacl.signing

from ringdrop.access.manifest import ManifestMember, parse_manifest, sign_manifest
from ringdrop.identity import Identity
from ringdrop.node import Node
from ringdrop.protocol import (
    AboutRequest,
    HaveRequest,
    Info,
    ResponseHeader,
    RingsRequest,
    encode,
)
from tests.files import pseudo_random, write
from tests.hostile import HostilePeer, connected, frames


def someone() -> Identity:
    return Identity(nacl.signing.SigningKey.generate())


async def ask(peer: HostilePeer, request: bytes) -> tuple[ResponseHeader, Info | None]:
    answer = frames(await peer.ask(request))
    header = answer[0]
    assert isinstance(header, ResponseHeader)
    info = answer[1] if len(answer) > 1 else None
    assert info is None or isinstance(info, Info)
    return header, info


async def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + 30
    while not callable(condition) or not condition():
        assert time.monotonic() < deadline, f"waited 30 s for {what}"
        await asyncio.sleep(0.05)


async def test_a_stranger_learns_nothing_and_leaves_no_provider_behind(
    serving: Node, tmp_path: Path
) -> None:
    serving.create_ring("family")
    member = someone()
    serving.add_member("family", member.peer_id)
    share = serving.share(write(tmp_path / "a.bin", pseudo_random(5000, seed=1)), rings=["family"])
    mallory = someone()
    async with connected(serving, mallory) as peer:
        requests = [
            encode(RingsRequest()),
            encode(AboutRequest(share.root)),
            encode(HaveRequest(share.root, "https://relay.example/", (("192.0.2.1", 4433),))),
        ]
        for request in requests:
            answer = await peer.ask(request)
            header = frames(answer)[0]
            assert isinstance(header, ResponseHeader)
            assert header.status == "denied"
            assert len(frames(answer)) == 1
            assert len(answer) <= 3 * len(request) + 200  # a refusal, no manifest, no list
    assert serving._access.providers(share.root) == []
    await wait_for(
        lambda: any(
            e.peer_id == mallory.peer_id and not e.allowed and e.root == share.root
            for e in serving.decisions()
        ),
        "the stranger's refusal in the access log",
    )


async def test_a_member_gets_the_owners_newest_manifest_with_itself_in_it(
    serving: Node,
) -> None:
    serving.create_ring("family")
    member = someone()
    serving.add_member("family", member.peer_id)
    async with connected(serving, member) as peer:
        header, info = await ask(peer, encode(RingsRequest()))
    assert header.status == "allowed"
    assert info is not None
    (manifest,) = [parse_manifest(raw) for raw in info.manifests]
    assert manifest.owner == serving.peer_id
    assert manifest.admits(member.peer_id, time.time())
    assert manifest.version == serving.rings()[1].version


async def test_have_registers_a_provider_that_about_shows_to_other_members_only(
    serving: Node, tmp_path: Path
) -> None:
    serving.create_ring("family")
    b, c = someone(), someone()
    for member in (b, c):
        serving.add_member("family", member.peer_id)
    share = serving.share(write(tmp_path / "a.bin", pseudo_random(5000, seed=2)), rings=["family"])
    reach = (("192.0.2.7", 4433),)
    async with connected(serving, b) as peer:
        header, info = await ask(
            peer,
            encode(HaveRequest(share.root, None, reach, ((serving.peer_id, 10), (c.peer_id, 7)))),
        )
    assert header.status == "allowed"
    assert info is not None
    assert [parse_manifest(m).name for m in info.manifests] == ["family"]
    async with connected(serving, c) as peer:
        header, info = await ask(peer, encode(AboutRequest(share.root)))
    assert info is not None
    assert [(p.peer_id, p.addresses) for p in info.providers] == [(b.peer_id, reach)]
    # The bytes B reported getting from C are in the upload log as C's upload to B.
    await wait_for(
        lambda: any(u.via == c.peer_id and u.peer_id == b.peer_id for u in serving.uploads()),
        "the reported upload",
    )
    assert not any(u.via == serving.peer_id for u in serving.uploads())


async def test_a_forged_or_older_manifest_pushed_to_a_member_changes_nothing(
    serving: Node, tmp_path: Path
) -> None:
    # `serving` plays member B of a ring owned by A; C and E are members too.
    owner, c, e = someone(), someone(), someone()

    def manifest(version: int, *members: Identity, by: Identity = owner) -> bytes:
        now = int(time.time())
        return sign_manifest(
            by,
            ring_id=b"R" * 16,
            version=version,
            name="family",
            members=[ManifestMember(m.peer_id) for m in (*members,)],
            members_serve=True,
            issued_at=now,
            valid_until=now + 3600,
        ).raw

    unlisted = manifest(1, c, e)
    # A ring that does not list B is not kept, even when B asked.
    assert serving._access.store_manifests([unlisted], serving.peer_id, new_ring_ok=True) == []
    listed = sign_manifest(
        owner,
        ring_id=b"R" * 16,
        version=1,
        name="family",
        members=[ManifestMember(x) for x in (serving.peer_id, c.peer_id, e.peer_id)],
        members_serve=True,
        issued_at=int(time.time()),
        valid_until=int(time.time()) + 3600,
    )
    assert serving._access.store_manifests([listed.raw], serving.peer_id, new_ring_ok=True)
    root = serving.share(write(tmp_path / "a.bin", pseudo_random(5000, seed=3))).root
    serving._access.record_received(root, [listed])

    without_e = sign_manifest(
        c,  # a member signs a "newer" version that drops E: a forgery
        ring_id=b"R" * 16,
        version=5,
        name="family",
        members=[ManifestMember(x) for x in (serving.peer_id, c.peer_id)],
        members_serve=True,
        issued_at=int(time.time()),
        valid_until=int(time.time()) + 3600,
    )
    async with connected(serving, c) as peer:
        header, info = await ask(peer, encode(RingsRequest((without_e.raw,))))
        assert header.status == "allowed"  # C is a member: it gets the newest real manifest
        assert info is not None
        assert [parse_manifest(m) for m in info.manifests] == [listed]
    assert serving._access.manifest(b"R" * 16) == listed
    async with connected(serving, e) as peer:
        header, _ = await ask(peer, encode(AboutRequest(root)))
    assert header.status == "allowed"  # E is still admitted by the real manifest


async def test_too_many_manifests_or_an_oversized_request_get_a_short_error(
    serving: Node,
) -> None:
    member = someone()
    serving.create_ring("family")
    serving.add_member("family", member.peer_id)
    seventeen = bytes([0x10]) + (2 + 1 + 17 * 3).to_bytes(4, "big") + bytes([1, 3, 17])
    seventeen += b"\x00\x01x" * 17
    oversized = bytes([0x10]) + (70000).to_bytes(4, "big") + bytes([1, 3]) + bytes(100)
    async with connected(serving, member) as peer:
        for request in (seventeen, oversized):
            answer = await peer.ask(request)
            header = frames(answer)[0]
            assert isinstance(header, ResponseHeader)
            assert header.status == "error"
            assert len(answer) <= 3 * len(request) + 100
