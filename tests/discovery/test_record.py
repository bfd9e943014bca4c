"""Address records as bytes: iroh's own output reproduced byte for byte, and every way a record
from a discovery service can be wrong refused with a reason (no network here)."""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

import dns.flags
import dns.message
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.TXT
import nacl.signing
import pytest

from ringdrop.discovery import relay_allowed
from ringdrop.discovery.record import (
    MAX_ADDRESSES,
    MAX_PAYLOAD,
    Record,
    dns_name,
    parse_txt,
    sign,
    verify_payload,
    z32_decode,
    z32_encode,
)
from ringdrop.errors import InvalidRecordError
from ringdrop.identity import Identity
from ringdrop.ticket import Address

# Written by iroh-dns 1.4.1's own EndpointInfo::to_pkarr_signed_packet (the crate that
# iroh-dns-server 1.4.1 runs): tests/iroh_pkarr_vectors/ is the program that made them.
IROH_VECTORS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "iroh_pkarr.json").read_text()
)


def identity(seed: bytes | None = None) -> Identity:
    key = nacl.signing.SigningKey(seed) if seed else nacl.signing.SigningKey.generate()
    return Identity(key)


def address(text: str, port: int) -> Address:
    return Address(ipaddress.ip_address(text), port)


def signed_payload(signer: Identity, packet: bytes, timestamp: int = 1) -> bytes:
    """A relay's answer whose signature over `packet` is good (for `signer`'s key)."""
    stamp = b"3:seqi%de1:v%d:" % (timestamp, len(packet))
    return signer.sign(stamp + packet) + timestamp.to_bytes(8, "big") + packet


def txt_packet(name: str, *strings: bytes) -> bytes:
    message = dns.message.Message(id=0)
    message.flags = dns.flags.QR
    rrset = message.find_rrset(
        message.answer, dns.name.from_text(name), dns.rdataclass.IN, dns.rdatatype.TXT, create=True
    )
    for text in strings:
        rrset.add(dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [text]), 30)
    return message.to_wire(want_shuffle=False)


@pytest.mark.parametrize("vector", IROH_VECTORS, ids=lambda v: v["name"])
def test_a_record_is_byte_for_byte_what_iroh_writes(vector: dict[str, object]) -> None:
    signer = identity(bytes.fromhex(str(vector["seed"])))
    packet = bytes.fromhex(str(vector["signed_packet"]))
    record = verify_payload(signer.peer_id, packet[32:])
    assert record.strings() == vector["txt"]
    assert record.timestamp == vector["timestamp"]
    assert record.ttl == vector["ttl"]
    assert sign(signer, record) == packet


def test_keys_are_written_in_z_base_32_as_iroh_writes_them() -> None:
    # The pair in iroh-dns's own test_from_hickory_lookup (endpoint_info.rs).
    raw = bytes.fromhex("1992d53c02cdc04566e5c0edb1ce83305cd550297953a047a445ea3264b54b18")
    text = "dgjpkxyn3zyrk3zfads5duwdgbqpkwbjxfj4yt7rezidr3fijccy"
    assert z32_encode(raw) == text
    assert z32_decode(text) == raw


def test_a_record_round_trips() -> None:
    signer = identity()
    record = Record(
        signer.peer_id,
        "https://relay.example.net/",
        (address("192.0.2.1", 4000), address("2001:db8::5", 4000)),
        timestamp=1_700_000_000_000_000,
        ttl=60,
    )
    assert verify_payload(signer.peer_id, sign(signer, record)[32:]) == record


def test_a_record_signed_by_another_key_is_refused() -> None:
    owner, other = identity(), identity()
    payload = sign(other, Record(other.peer_id, "https://relay.example.net/"))[32:]
    with pytest.raises(InvalidRecordError, match="not signed by"):
        verify_payload(owner.peer_id, payload)


def test_a_record_changed_after_signing_is_refused() -> None:
    signer = identity()
    payload = bytearray(sign(signer, Record(signer.peer_id, "https://relay.example.net/"))[32:])
    payload[-3] ^= 0x01
    with pytest.raises(InvalidRecordError, match="not signed by"):
        verify_payload(signer.peer_id, bytes(payload))


def test_a_signed_record_whose_dns_packet_is_garbled_is_refused() -> None:
    signer = identity()
    with pytest.raises(InvalidRecordError, match="DNS packet cannot be read"):
        verify_payload(signer.peer_id, signed_payload(signer, b"\x00\x00\x80\x00\x00\x00\x00\x05"))


def test_a_record_too_large_or_too_short_is_refused() -> None:
    signer = identity()
    with pytest.raises(InvalidRecordError, match="more than the"):
        verify_payload(signer.peer_id, signed_payload(signer, b"\x00" * (MAX_PAYLOAD)))
    with pytest.raises(InvalidRecordError, match="cut short"):
        verify_payload(signer.peer_id, b"\x01" * 70)


def test_an_unknown_attribute_refuses_the_whole_record_as_iroh_does() -> None:
    signer = identity()
    name = dns_name(signer.peer_id)
    packet = txt_packet(name, b"relay=https://relay.example.net/", b"color=blue")
    with pytest.raises(InvalidRecordError, match="unknown attribute 'color'"):
        verify_payload(signer.peer_id, signed_payload(signer, packet))


def test_records_under_other_names_are_not_read() -> None:
    signer, other = identity(), identity()
    packet = txt_packet(dns_name(other.peer_id), b"relay=https://relay.example.net/")
    record = verify_payload(signer.peer_id, signed_payload(signer, packet))
    assert record.empty


def test_unreadable_relays_and_addresses_are_skipped_and_addresses_are_capped() -> None:
    strings = [b"relay=ftp://nope/", b"relay=https://relay.example.net/", b"addr=nonsense:1"]
    strings += [b"addr=[fe80::1%eth0]:5", b"addr=192.0.2.1:0"]
    strings += [f"addr=192.0.2.{i}:7000".encode() for i in range(1, 40)]
    relay, addresses = parse_txt(strings)
    assert relay == "https://relay.example.net/"
    assert addresses == tuple(address(f"192.0.2.{i}", 7000) for i in range(1, MAX_ADDRESSES + 1))


def test_a_value_ends_at_a_second_equals_sign_as_iroh_reads_it() -> None:
    relay, _ = parse_txt([b"relay=https://relay.example.net/=x"])
    assert relay == "https://relay.example.net/"


def test_a_record_too_large_for_a_packet_is_not_signed() -> None:
    signer = identity()
    many = tuple(address(f"2001:db8::{i:x}", 40000) for i in range(1, 60))
    with pytest.raises(InvalidRecordError, match="at most 1000"):
        sign(signer, Record(signer.peer_id, "https://relay.example.net/", many))


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://relay.example.net/", True),
        ("https://203.0.113.9/", False),  # documentation range: not global
        ("https://8.8.8.8/", True),
        ("http://relay.example.net/", False),
        ("https://127.0.0.1:3340/", False),
        ("https://[::1]/", False),
        ("https://10.1.2.3/", False),
        ("https://localhost/", False),
        ("https://relay.localhost./", False),
    ],
)
def test_a_record_may_name_only_a_public_https_relay(url: str, allowed: bool) -> None:
    assert relay_allowed(url, ()) is allowed


def test_a_record_may_name_one_of_this_nodes_own_relays_whatever_it_is() -> None:
    assert relay_allowed("http://127.0.0.1:3340/", ("http://127.0.0.1:3340/",))
