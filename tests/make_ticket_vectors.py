"""Writes the version 2 entries of tickets/vectors.json; the version 1 entries stay as committed.

Run `python -m tests.make_ticket_vectors` from the repository root and commit the output. Valid
tickets come from `Ticket.encode`; invalid ones are assembled here field by field from the layout
in tickets/SPEC.md (no call into the code under test), each with one problem. Version 1 vectors
were written when version 1 was current and a version 1 ticket reads the same forever, so they are
kept as they are (marked `"version": 1` and `"relay": null`), except the one that said version 2
is unknown: that is now a version 3 vector.
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
OBSOLETE = {"version 2, from a newer ringdrop"}
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
) -> dict[str, Any]:
    ticket = Ticket(peer_id, addresses, content_hash, format, name, size, relay)
    text = ticket.encode()
    return {
        "description": description,
        "version": 2,
        "text": text,
        "bytes_hex": _bytes_of(text).hex(),
        "peer_id": str(peer_id),
        "addresses": [str(address) for address in addresses],
        "relay": relay,
        "content_hash": content_hash.hex(),
        "format": format,
        "name": name,
        "size": size,
    }


def raw(
    *,
    version: int = 2,
    flags: int | None = None,
    peer_id: PeerId | None = None,
    addresses: bytes = b"\x01\x04\xc0\x00\x02\x01\x11\x51",  # one address: 192.0.2.1:4433
    relay: bytes | None = None,
    tail: bytes = b"",
) -> str:
    """A ticket's text assembled from raw fields as SPEC.md lays them out (no size, no name):
    `flags` defaults to the relay bit if a relay is given; `tail` goes before the checksum."""
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


def valid_v2() -> list[dict[str, Any]]:
    return [
        valid(
            "version 2: a relay and no address, so the ticket reveals no address of the sharer",
            key(1),
            (),
            HELLO,
            relay=RELAY,
        ),
        valid(
            "version 2: a collection with a relay (IPv6 literal and port), two addresses, "
            "name and size",
            key(2),
            (at("192.168.1.23:41641"), at("[2001:db8:4006:812::200e]:41641")),
            blake3.blake3(b"holiday-photos").digest(),
            "collection",
            "holiday-photos",
            734_003_200,
            "http://[2001:db8::2]:3340/",
        ),
        valid(
            "version 2 without a relay: one IPv4 address, the shortest ticket",
            key(3),
            (at("192.0.2.1:4433"),),
            HELLO,
        ),
        valid(
            "version 2: a relay URL of 255 bytes, the longest there is",
            key(4),
            (),
            HELLO,
            "blob",
            "notes.txt",
            None,
            LONGEST_RELAY,
        ),
    ]


def invalid_v2() -> list[dict[str, Any]]:
    no_address = b"\x00"
    return [
        invalid("version 3, from a newer ringdrop", raw(version=3), "version"),
        invalid(
            "version 2 with neither an address nor a relay",
            raw(addresses=no_address),
            "no_addresses",
        ),
        invalid(
            "version 1 with the relay flag (bit 4), which version 1 does not define",
            raw(version=1, relay=RELAY.encode()),
            "flags",
        ),
        invalid("version 2 with an unknown flag bit (bit 5)", raw(flags=0x20), "flags"),
        invalid("a relay URL of 0 bytes", raw(addresses=no_address, relay=b""), "relay"),
        invalid(
            "a relay URL that is not ASCII",
            raw(relay="https://relay.exämple.net/".encode()),
            "relay",
        ),
        invalid("a relay URL whose scheme is ftp", raw(relay=b"ftp://relay.example.net/"), "relay"),
        invalid(
            "a relay URL whose scheme is in upper case",
            raw(relay=b"HTTPS://relay.example.net/"),
            "relay",
        ),
        invalid("a relay URL with no host", raw(relay=b"https:///relay"), "relay"),
        invalid(
            "a relay URL with a user name and password",
            raw(relay=b"https://user:secret@relay.example.net/"),
            "relay",
        ),
        invalid("a relay URL with a space", raw(relay=b"https://relay.example.net/a b"), "relay"),
        invalid(
            "a relay URL with a terminal escape sequence",
            raw(relay=b"https://relay.example.net/\x1b[2J"),
            "relay",
        ),
        invalid("a relay URL with port 0", raw(relay=b"http://relay.example.net:0/"), "relay"),
        invalid(
            "a relay URL with a port above 65535",
            raw(relay=b"http://relay.example.net:65536/"),
            "relay",
        ),
        invalid(
            "a relay URL length longer than the URL",
            raw(addresses=no_address, flags=0x10, tail=b"\x40" + RELAY.encode()),
            "truncated",
        ),
    ]


def main() -> None:
    vectors: dict[str, Any] = json.loads(OUT.read_text(encoding="utf-8"))
    made_valid, made_invalid = valid_v2(), invalid_v2()
    made = {v["description"] for v in made_valid + made_invalid} | OBSOLETE
    kept_valid = [v for v in vectors["valid"] if v["description"] not in made]
    for vector in kept_valid:
        vector.setdefault("version", 1)
        vector.setdefault("relay", None)
    upper = made_valid[1]["text"].upper()
    accepted = [v for v in vectors["accepted"] if v["canonical"] != made_valid[1]["text"]]
    accepted.append(
        {
            "description": "a version 2 ticket in upper case",
            "text": upper,
            "canonical": made_valid[1]["text"],
        }
    )
    vectors = {
        "format": "ringdrop ticket, versions 1 and 2 (tickets/SPEC.md); writers write version 2",
        "valid": kept_valid + made_valid,
        "accepted": accepted,
        "invalid": [v for v in vectors["invalid"] if v["description"] not in made] + made_invalid,
    }
    OUT.write_text(json.dumps(vectors, indent=2, ensure_ascii=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
