"""Writes tests/vectors/announcements.json, the shared vectors of signed ring announcements.

Run `python -m tests.make_announcement_vectors` from the repository root and commit the output.
Every announcement is assembled here field by field from the layout in tickets/PROTOCOL.md ("A
ring's news") and signed with PyNaCl directly: no call into the code under test. Each invalid one
has one problem, and `error` is a word the refusal names.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import Any

import blake3
import nacl.signing

OUT = Path(__file__).parent / "vectors" / "announcements.json"
CONTEXT = b"ringdrop/1 announcement\x00"
MAGIC = b"RDNEWS\x00\x01"


def key(seed: int) -> nacl.signing.SigningKey:
    return nacl.signing.SigningKey(
        blake3.blake3(b"ringdrop announcement vector %d" % seed).digest()
    )


OWNER, MEMBER = key(0), key(1)
RING_ID = bytes(range(16))
ROOT = blake3.blake3(b"holiday photos").digest()
RELAY = b"https://relay.example.org/"


def pub(signing: nacl.signing.SigningKey) -> bytes:
    return signing.verify_key.encode()


def short(text: bytes) -> bytes:
    return bytes([len(text)]) + text


def body(
    *,
    magic: bytes = MAGIC,
    sequence: int = 3,
    at: int = 1_780_000_000,
    kind: int = 1,
    format: int = 0,
    size: int = 5_000_000,
    flags: int = 3,
    mtime: int = 1_779_000_000_123_456_789,
    ring: bytes = b"family",
    name: bytes = "été.jpg".encode(),
    relay: bytes = RELAY,
    addresses: bytes = b"\x02\x04\xc0\x00\x02\x07\x11\x5c\x06" + bytes(15) + b"\x01\x11\x5c",
) -> bytes:
    out = magic + RING_ID + pub(OWNER)
    out += struct.pack(">QQB", sequence, at, kind) + ROOT
    out += struct.pack(">BQBq", format, size, flags, mtime)
    return out + short(ring) + short(name) + short(relay) + addresses


def signed(raw: bytes, by: nacl.signing.SigningKey = OWNER) -> bytes:
    return raw + by.sign(CONTEXT + raw).signature


def main() -> None:
    fields = {
        "ring_id": RING_ID.hex(),
        "owner": pub(OWNER).hex(),
        "root": ROOT.hex(),
        "ring_name": "family",
        "owner_seed": "ringdrop announcement vector 0",
    }
    valid: list[dict[str, Any]] = [
        {
            "name": "a single file shared, with its time and executable bit, relay and addresses",
            "announcement": signed(body()).hex(),
            **fields,
            "sequence": 3,
            "at": 1_780_000_000,
            "kind": "share",
            "format": "blob",
            "size": 5_000_000,
            "content_name": "été.jpg",
            "mtime_ns": 1_779_000_000_123_456_789,
            "executable": True,
            "relay": RELAY.decode(),
            "addresses": ["192.0.2.7:4444", "[::1]:4444"],
        },
        {
            "name": "a folder withdrawn, reached by key alone",
            "announcement": signed(
                body(
                    sequence=9,
                    kind=2,
                    format=1,
                    flags=0,
                    mtime=0,
                    name=b"photos",
                    relay=b"",
                    addresses=b"\x00",
                )
            ).hex(),
            **fields,
            "sequence": 9,
            "at": 1_780_000_000,
            "kind": "withdraw",
            "format": "collection",
            "size": 5_000_000,
            "content_name": "photos",
            "mtime_ns": None,
            "executable": False,
            "relay": None,
            "addresses": [],
        },
    ]
    good = signed(body())
    invalid = [
        ("signed by a member, not the owner", signed(body(), by=MEMBER), "signed"),
        ("the sequence altered", good[:63] + bytes([good[63] ^ 1]) + good[64:], "signed"),
        ("signature cut off", body(), "short"),
        ("unknown magic", signed(body(magic=b"RDNEWS\x00\x02")), "magic"),
        ("sequence 0", signed(body(sequence=0)), "sequence"),
        ("unknown kind", signed(body(kind=3)), "kind"),
        ("unknown format", signed(body(format=2)), "format"),
        ("unknown flag", signed(body(flags=4)), "flags"),
        ("a time without its flag", signed(body(flags=1)), "time"),
        ("an empty name", signed(body(name=b"")), "empty"),
        ("a name with a control character", signed(body(name=b"a\nb")), "control"),
        ("a ring name breaking the rules", signed(body(ring=b"-x")), "naming"),
        ("a relay that is no URL", signed(body(relay=b"ftp://x")), "http"),
        (
            "nine addresses",
            signed(body(addresses=b"\x09" + b"\x04\x01\x02\x03\x04\x00\x01" * 9)),
            "8",
        ),
        ("trailing byte", good + b"\x00", "length"),
    ]
    OUT.write_text(
        json.dumps(
            {
                "valid": valid,
                "invalid": [
                    {"name": n, "announcement": m.hex(), "error": e} for n, m, e in invalid
                ],
            },
            indent=1,
            ensure_ascii=False,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
