"""Signed ring announcements: the shared vectors, signing, and every limit of the layout."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import blake3
import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringdrop.access.announcement import (
    MAX_ANNOUNCEMENT_BYTES,
    MAX_NAME_BYTES,
    announced_name,
    named_root,
    parse_announcement,
    sign_announcement,
)
from ringdrop.errors import InvalidAnnouncementError
from ringdrop.identity import Identity
from ringdrop.ticket import Address

VECTORS = json.loads((Path(__file__).parent.parent / "vectors" / "announcements.json").read_text())
OWNER = Identity(nacl.signing.SigningKey(b"o" * 32))


def _address(text: str) -> Address:
    host, port = text.rsplit(":", 1)
    return Address(ipaddress.ip_address(host.strip("[]")), int(port))


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["name"])
def test_valid_vectors_parse_to_their_fields_and_signing_them_again_gives_the_same_bytes(
    vector: dict[str, object],
) -> None:
    raw = bytes.fromhex(str(vector["announcement"]))
    found = parse_announcement(raw)
    assert found.ring_id.hex() == vector["ring_id"]
    assert found.owner.raw.hex() == vector["owner"]
    assert found.root.hex() == vector["root"]
    assert (found.sequence, found.at, found.kind, found.format, found.size) == (
        vector["sequence"],
        vector["at"],
        vector["kind"],
        vector["format"],
        vector["size"],
    )
    assert (found.name, found.ring_name, found.relay) == (
        vector["content_name"],
        vector["ring_name"],
        vector["relay"],
    )
    assert (found.mtime_ns, found.executable) == (vector["mtime_ns"], vector["executable"])
    assert [str(a) for a in found.addresses] == vector["addresses"]
    owner = Identity(
        nacl.signing.SigningKey(blake3.blake3(str(vector["owner_seed"]).encode()).digest())
    )
    again = sign_announcement(
        owner,
        ring_id=found.ring_id,
        ring_name=found.ring_name,
        sequence=found.sequence,
        at=found.at,
        kind=found.kind,
        root=found.root,
        format=found.format,
        size=found.size,
        name=found.name,
        relay=found.relay,
        addresses=tuple(_address(a) for a in vector["addresses"]),
        mtime_ns=found.mtime_ns,
        executable=found.executable,
    )
    assert again.raw == raw


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["name"])
def test_invalid_vectors_are_refused_naming_what_is_wrong(vector: dict[str, str]) -> None:
    with pytest.raises(InvalidAnnouncementError, match=vector["error"]):
        parse_announcement(bytes.fromhex(vector["announcement"]))


def _largest() -> bytes:
    return sign_announcement(
        OWNER,
        ring_id=b"r" * 16,
        ring_name="r" * 64,
        sequence=(1 << 64) - 1,
        at=(1 << 64) - 1,
        kind="share",
        root=b"x" * 32,
        format="collection",
        size=(1 << 64) - 1,
        name="é" * (MAX_NAME_BYTES // 2) + "x",
        relay="https://" + "r" * 238 + ".example/",
        addresses=tuple(
            Address(ipaddress.ip_address(f"2001:db8::{n + 1}"), 65535) for n in range(8)
        ),
        mtime_ns=-(1 << 63),
        executable=True,
    ).raw


def test_the_largest_announcement_is_the_documented_maximum_and_one_byte_more_is_refused() -> None:
    raw = _largest()
    assert len(raw) == MAX_ANNOUNCEMENT_BYTES == 917
    with pytest.raises(InvalidAnnouncementError, match="at most 917"):
        parse_announcement(raw + b"\x00")


def test_an_altered_byte_anywhere_breaks_the_signature_or_the_layout() -> None:
    raw = _largest()
    for at in range(0, len(raw), 7):
        altered = raw[:at] + bytes([raw[at] ^ 0x40]) + raw[at + 1 :]
        with pytest.raises(InvalidAnnouncementError):
            parse_announcement(altered)


def test_the_root_a_refused_announcement_named_is_read_without_its_signature() -> None:
    raw = _largest()
    root = parse_announcement(raw).root
    unsigned = raw[:-64] + bytes(64)
    with pytest.raises(InvalidAnnouncementError):
        parse_announcement(unsigned)
    assert named_root(unsigned) == root
    assert named_root(raw[:100]) is None  # shorter than the fixed fields
    assert named_root(b"X" + raw[1:]) is None  # not an announcement at all


@given(
    name=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=80),
    sequence=st.integers(1, (1 << 64) - 1),
    mtime=st.none() | st.integers(-(1 << 63), (1 << 63) - 1),
    executable=st.booleans(),
    withdraw=st.booleans(),
)
def test_what_is_signed_parses_back_to_the_same_facts(
    name: str, sequence: int, mtime: int | None, executable: bool, withdraw: bool
) -> None:
    signed = sign_announcement(
        OWNER,
        ring_id=b"q" * 16,
        ring_name="family",
        sequence=sequence,
        at=1_800_000_000,
        kind="withdraw" if withdraw else "share",
        root=b"z" * 32,
        format="blob",
        size=123,
        name=name,
        mtime_ns=mtime,
        executable=executable,
    )
    assert parse_announcement(signed.raw) == signed
    assert (signed.name, signed.mtime_ns, signed.executable) == (name, mtime, executable)


def test_a_name_an_announcement_cannot_carry_becomes_one_made_from_the_root() -> None:
    root = bytes(range(32))
    assert announced_name("holiday.jpg", root) == "holiday.jpg"
    assert announced_name("x" * 256, root) == root.hex()[:16]
    assert announced_name("line\nbreak", root) == root.hex()[:16]
    assert announced_name(None, root) == root.hex()[:16]
