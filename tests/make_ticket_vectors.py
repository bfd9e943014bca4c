"""Writes the version 3 entries of tickets/vectors.json; older entries stay as committed.

Run `python -m tests.make_ticket_vectors` from the repository root and commit the output. Valid
tickets come from `Ticket.encode`; invalid ones are assembled here field by field from the layout
in tickets/SPEC.md (no call into the code under test), each with one problem. Version 1 and 2
vectors were written when their version was current, and a ticket reads the same forever, so they
are kept as they are, except the one that said the next version is unknown: that is now a
version 4 vector.
"""

from __future__ import annotations

import json
import zlib
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import blake3
import nacl.signing

from ringdrop.identity import PeerId, base32_decode, base32_encode
from ringdrop.ticket import PREFIX, Address, Format, Ticket

OUT = Path(__file__).parent.parent / "tickets" / "vectors.json"
OBSOLETE = {"version 2, from a newer ringdrop", "version 3, from a newer ringdrop"}
HELLO = blake3.blake3(b"hello").digest()


def key(seed: int) -> PeerId:
    """A peer id made from a secret that is a function of `seed`, so a valid Ed25519 key."""
    secret = blake3.blake3(b"ringdrop ticket vector %d" % seed).digest()
    return PeerId(nacl.signing.SigningKey(secret).verify_key.encode())


def at(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return Address(ip_address(host.strip("[]")), int(port))


def valid(
    description: str,
    peer_id: PeerId,
    addresses: tuple[Address, ...],
    content_hash: bytes,
    format: Format = "blob",
    name: str | None = None,
    size: int | None = None,
    relay: str | None = None,
    mtime_ns: int | None = None,
    executable: bool = False,
) -> dict[str, Any]:
    ticket = Ticket(
        peer_id, addresses, content_hash, format, name, size, relay, mtime_ns, executable
    )
    text = ticket.encode()
    return {
        "description": description,
        "version": 3,
        "text": text,
        "bytes_hex": _bytes_of(text).hex(),
        "peer_id": str(peer_id),
        "addresses": [str(address) for address in addresses],
        "relay": relay,
        "content_hash": content_hash.hex(),
        "format": format,
        "name": name,
        "size": size,
        "mtime_ns": mtime_ns,
        "executable": executable,
    }


def raw(
    *,
    version: int = 3,
    flags: int | None = None,
    peer_id: PeerId | None = None,
    addresses: bytes = b"\x01\x04\xc0\x00\x02\x01\x11\x51",  # one address: 192.0.2.1:4433
    relay: bytes | None = None,
    tail: bytes = b"",
) -> str:
    """A ticket's text assembled from raw fields as SPEC.md lays them out (no size, no name):
    `flags` defaults to the relay bit if a relay is given; `tail` goes before the checksum (where
    the file metadata field goes, since no name is written)."""
    if flags is None:
        flags = 0x10 if relay is not None else 0
    payload = bytes([version, flags]) + (peer_id or key(1)).raw + HELLO + addresses
    if relay is not None:
        payload += bytes([len(relay)]) + relay
    payload += tail
    return PREFIX + base32_encode(payload + zlib.crc32(payload).to_bytes(4, "big"))


def invalid(description: str, text: str, kind: str) -> dict[str, Any]:
    return {"description": description, "text": text, "kind": kind}


def _bytes_of(text: str) -> bytes:
    return base32_decode(text[len(PREFIX) :])


RELAY = "https://relay.example.net/"
LONGEST_RELAY = "https://" + "r" * (255 - len("https://") - len(".example/")) + ".example/"


def valid_v3() -> list[dict[str, Any]]:
    return [
        valid(
            "version 3: the key alone, no address and no relay: the sharer is found by discovery",
            key(5),
            (),
            HELLO,
        ),
        valid(
            "version 3: a single file with its time and executable bit, a relay and an address",
            key(6),
            (at("192.0.2.7:4433"),),
            blake3.blake3(b"#!/bin/sh").digest(),
            "blob",
            "run.sh",
            9,
            RELAY,
            1_700_000_000_123_456_789,
            True,
        ),
        valid(
            "version 3: a file modified before 1970 (a negative time), not executable",
            key(7),
            (),
            HELLO,
            "blob",
            "old.txt",
            5,
            RELAY,
            -1_000_000_001,
        ),
        valid(
            "version 3: an executable file whose time is unknown",
            key(8),
            (at("[2001:db8::7]:4433"),),
            HELLO,
            name="tool",
            executable=True,
        ),
        valid(
            "version 3: a collection with a relay (IPv6 literal and port), two addresses, "
            "name and size",
            key(2),
            (at("192.168.1.23:41641"), at("[2001:db8:4006:812::200e]:41641")),
            blake3.blake3(b"holiday-photos").digest(),
            "collection",
            "holiday-photos",
            734_003_200,
            "http://[2001:db8::2]:3340/",
        ),
    ]


def invalid_v3() -> list[dict[str, Any]]:
    no_address = b"\x00"
    file_flag = 0x20
    collection = 0x01
    mtime = (1_700_000_000_000_000_000).to_bytes(8, "big")
    return [
        invalid("version 4, from a newer ringdrop", raw(version=4), "version"),
        invalid("version 3 with an unknown flag bit (bit 6)", raw(flags=0x40), "flags"),
        invalid(
            "version 3: file metadata on a collection's ticket",
            raw(flags=collection | file_flag, tail=b"\x01"),
            "file",
        ),
        invalid(
            "version 3: a file metadata field with no bit set",
            raw(flags=file_flag, tail=b"\x00"),
            "file",
        ),
        invalid(
            "version 3: a file metadata field with an unknown bit (bit 2)",
            raw(flags=file_flag, tail=b"\x04"),
            "flags",
        ),
        invalid(
            "version 3: a modification time cut short",
            raw(flags=file_flag, tail=b"\x02" + mtime[:5]),
            "truncated",
        ),
        invalid(
            "version 3: bytes after the file metadata",
            raw(flags=file_flag, tail=b"\x02" + mtime + b"\x00"),
            "trailing_bytes",
        ),
        invalid(
            "version 2 with the file metadata flag (bit 5), which version 2 does not define",
            raw(version=2, flags=file_flag, tail=b"\x01"),
            "flags",
        ),
        invalid(
            "version 2 with neither an address nor a relay (only version 3 may name the key alone)",
            raw(version=2, addresses=no_address),
            "no_addresses",
        ),
    ]


def main() -> None:
    vectors: dict[str, Any] = json.loads(OUT.read_text(encoding="utf-8"))
    made_valid, made_invalid = valid_v3(), invalid_v3()
    made = {v["description"] for v in made_valid + made_invalid} | OBSOLETE
    kept_valid = [v for v in vectors["valid"] if v["description"] not in made]
    for vector in kept_valid:
        vector.setdefault("version", 1)
        vector.setdefault("relay", None)
        vector.setdefault("mtime_ns", None)
        vector.setdefault("executable", False)
    upper = made_valid[1]["text"].upper()
    description = "a version 3 ticket in upper case"
    accepted = [v for v in vectors["accepted"] if v["description"] != description]
    accepted.append({"description": description, "text": upper, "canonical": made_valid[1]["text"]})
    vectors = {
        "format": "ringdrop ticket, versions 1 to 3 (tickets/SPEC.md); writers write version 3",
        "valid": kept_valid + made_valid,
        "accepted": accepted,
        "invalid": [v for v in vectors["invalid"] if v["description"] not in made] + made_invalid,
    }
    OUT.write_text(json.dumps(vectors, indent=2, ensure_ascii=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
