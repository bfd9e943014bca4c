"""Writes tests/vectors/ring_manifests.json, the shared vectors of signed ring manifests.

Run `python -m tests.make_manifest_vectors` from the repository root and commit the output. Every
manifest is assembled here field by field from the layout in tickets/PROTOCOL.md ("Ring
manifests") and signed with PyNaCl directly: no call into the code under test. Each invalid one
has one problem, and `error` is a word the refusal names.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import blake3
import nacl.signing

OUT = Path(__file__).parent / "vectors" / "ring_manifests.json"
CONTEXT = b"ringdrop/1 ring manifest\x00"
MAGIC = b"RDRING\x00\x01"


def key(seed: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(blake3.blake3(b"ringdrop manifest vector %d" % seed).digest())


OWNER, ALICE, BOB = key(0), key(1), key(2)
RING_ID = bytes(range(16))


def pub(signing: nacl.signing.SigningKey) -> bytes:
    return signing.verify_key.encode()


def body(
    *,
    magic: bytes = MAGIC,
    ring_id: bytes = RING_ID,
    owner: bytes | None = None,
    version: int = 7,
    issued: int = 1_780_000_000,
    valid: int = 1_780_086_400,
    flags: int = 1,
    name: bytes = b"family",
    members: list[tuple[bytes, int]] | None = None,
    count: int | None = None,
) -> bytes:
    members = sorted(
        members if members is not None else [(pub(ALICE), 0), (pub(BOB), 1_790_000_000)]
    )
    out = magic + ring_id + (owner or pub(OWNER))
    out += struct.pack(">QQQBB", version, issued, valid, flags, len(name)) + name
    out += struct.pack(">H", len(members) if count is None else count)
    for member, expires in members:
        out += member + struct.pack(">Q", expires)
    return out


def signed(raw: bytes, by: nacl.signing.SigningKey = OWNER) -> bytes:
    return raw + by.sign(CONTEXT + raw).signature


def main() -> None:
    alice_bob = sorted([(pub(ALICE), 0), (pub(BOB), 1_790_000_000)])
    valid: list[dict[str, Any]] = [
        {
            "name": "two members, one until a time, members serve",
            "manifest": signed(body()).hex(),
            "ring_id": RING_ID.hex(),
            "owner": pub(OWNER).hex(),
            "version": 7,
            "issued_at": 1_780_000_000,
            "valid_until": 1_780_086_400,
            "members_serve": True,
            "ring_name": "family",
            "members": [[k.hex(), e or None] for k, e in alice_bob],
            "owner_seed": "ringdrop manifest vector 0",
        },
        {
            "name": "no members, members do not serve",
            "manifest": signed(body(members=[], flags=0, version=1, name=b"x")).hex(),
            "ring_id": RING_ID.hex(),
            "owner": pub(OWNER).hex(),
            "version": 1,
            "issued_at": 1_780_000_000,
            "valid_until": 1_780_086_400,
            "members_serve": False,
            "ring_name": "x",
            "members": [],
            "owner_seed": "ringdrop manifest vector 0",
        },
    ]
    good = signed(body())
    unsorted = body()
    half = len(unsorted) - 2 * 40
    first, second = unsorted[half : half + 40], unsorted[half + 40 :]
    invalid = [
        ("signed by a member, not the owner", signed(body(), by=ALICE), "signed"),
        ("the version altered", good[:63] + bytes([good[63] ^ 1]) + good[64:], "signed"),
        ("signature cut off", body(), "length"),
        ("unknown magic", signed(body(magic=b"RDRING\x00\x02")), "magic"),
        ("unknown flag", signed(body(flags=3)), "flags"),
        ("valid until before issued", signed(body(valid=1_779_999_999)), "issued"),
        ("a name breaking the rules", signed(body(name=b"-bad")), "name"),
        ("members out of order", signed(unsorted[:half] + second + first), "order"),
        ("count larger than the members", signed(body(count=3)), "length"),
        ("more than 1000 members", signed(body(count=1001)), "1000"),
        ("trailing byte", good + b"\x00", "length"),
    ]
    OUT.write_text(
        json.dumps(
            {
                "valid": valid,
                "invalid": [{"name": n, "manifest": m.hex(), "error": e} for n, m, e in invalid],
            },
            indent=1,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
