"""Tickets: the shared vectors, round trips, versions 1 and 2 still read, relay URLs checked, a
single file's metadata carried, and that no text makes decoding fail another way."""

from __future__ import annotations

import contextlib
import json
import math
import zlib
from ipaddress import IPv6Address, ip_address
from pathlib import Path
from typing import Any, get_args

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringdrop.errors import InvalidTicketError, TicketError, TicketErrorKind
from ringdrop.identity import PeerId, base32_decode, base32_encode
from ringdrop.ticket import PREFIX, Address, Ticket, check_relay_url

VECTORS: dict[str, Any] = json.loads(
    (Path(__file__).parent.parent / "tickets" / "vectors.json").read_text(encoding="utf-8")
)
BASE32 = "abcdefghijklmnopqrstuvwxyz234567"


def address(text: str) -> Address:
    host, _, port = text.rpartition(":")
    return Address(ip_address(host.strip("[]")), int(port))


def fields_of(vector: dict[str, Any]) -> Ticket:
    return Ticket(
        PeerId.parse(vector["peer_id"]),
        tuple(address(text) for text in vector["addresses"]),
        bytes.fromhex(vector["content_hash"]),
        vector["format"],
        vector["name"],
        vector["size"],
        vector["relay"],
        vector["mtime_ns"],
        vector["executable"],
    )


def text_of(data: bytes) -> str:
    return PREFIX + base32_encode(data)


def bytes_of(ticket: Ticket) -> bytes:
    return base32_decode(ticket.encode()[len(PREFIX) :])


def with_checksum(payload: bytes) -> bytes:
    return payload + zlib.crc32(payload).to_bytes(4, "big")


def as_version_3(data: bytes) -> bytes:
    """An older ticket's bytes as version 3 writes the same ticket: only the version byte (and
    so the checksum) differs."""
    return with_checksum(bytes([3]) + data[1:-4]) if data[0] < 3 else data


def decodes_to_itself_or_fails_cleanly(text: str) -> None:
    """Decoding gives a TicketError or a ticket whose own text is `text`, up to case and blanks
    (and, for an older version's ticket, the version byte)."""
    with contextlib.suppress(TicketError):
        ticket = Ticket.decode(text)
        data = base32_decode(text.strip().lower()[len(PREFIX) :])
        assert bytes_of(ticket) == as_version_3(data)


SIMPLE = Ticket(
    PeerId(nacl.signing.SigningKey(bytes(32)).verify_key.encode()),
    (Address(ip_address("192.0.2.1"), 4433),),
    bytes(32),
)

peer_ids = st.binary(min_size=32, max_size=32).map(
    lambda seed: PeerId(nacl.signing.SigningKey(seed).verify_key.encode())
)
addresses = st.builds(Address, st.ip_addresses(v=4) | st.ip_addresses(v=6), st.integers(1, 65535))
relays = st.builds(
    "{}://{}{}{}".format,
    st.sampled_from(["http", "https"]),
    st.from_regex(r"[a-z0-9][a-z0-9.-]{0,40}", fullmatch=True),
    st.just("") | st.integers(1, 65535).map(":{}".format),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=60).map("/{}".format),
)
# At most 63 characters of at most 4 bytes each: always within the 255-byte limit.
names = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=63)
# Addresses, a relay, both or neither (the key alone: version 3).
reachable = st.tuples(st.lists(addresses, max_size=6), st.none() | relays)
# A single file's metadata: (executable, mtime_ns); a collection's ticket carries none.
file_metadata = st.tuples(st.booleans(), st.none() | st.integers(-(2**63), 2**63 - 1))
tickets = st.builds(
    lambda peer_id, reach, content_hash, format, name, size, file: Ticket(
        peer_id,
        tuple(reach[0]),
        content_hash,
        format,
        name,
        size,
        reach[1],
        file[1] if format == "blob" else None,
        file[0] and format == "blob",
    ),
    peer_ids,
    reachable,
    st.binary(min_size=32, max_size=32),
    st.sampled_from(["blob", "collection"]),
    st.none() | names,
    st.none() | st.integers(0, 2**64 - 1),
    file_metadata,
)


# The shared vectors


def test_invalid_vectors_cover_every_kind_decoding_can_find() -> None:
    only_made_by_constructors = {"hash"}
    kinds = {vector["kind"] for vector in VECTORS["invalid"]}
    assert kinds == set(get_args(TicketErrorKind)) - only_made_by_constructors


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["description"])
def test_valid_vector_decodes_to_its_fields(vector: dict[str, Any]) -> None:
    assert Ticket.decode(vector["text"]) == fields_of(vector)


VERSION_1 = [v for v in VECTORS["valid"] if v["version"] == 1]
VERSION_2 = [v for v in VECTORS["valid"] if v["version"] == 2]
VERSION_3 = [v for v in VECTORS["valid"] if v["version"] == 3]


def test_vectors_hold_every_version_and_each_way_to_reach_a_sharer() -> None:
    assert VERSION_1
    assert any(v["relay"] and not v["addresses"] for v in VERSION_2)
    assert any(v["relay"] and v["addresses"] for v in VERSION_2)
    assert any(not v["relay"] and not v["addresses"] for v in VERSION_3)
    assert any(v["executable"] and v["mtime_ns"] is not None for v in VERSION_3)
    assert any(v["mtime_ns"] is not None and v["mtime_ns"] < 0 for v in VERSION_3)
    assert {v["version"] for v in VECTORS["valid"]} == {1, 2, 3}


@pytest.mark.parametrize("vector", VERSION_3, ids=lambda v: v["description"])
def test_version_3_vector_is_what_its_fields_encode_to(vector: dict[str, Any]) -> None:
    assert fields_of(vector).encode() == vector["text"]


@pytest.mark.parametrize("vector", VERSION_1 + VERSION_2, ids=lambda v: v["description"])
def test_older_vector_is_written_again_as_version_3_with_only_the_version_changed(
    vector: dict[str, Any],
) -> None:
    data = bytes.fromhex(vector["bytes_hex"])
    assert data[0] in (1, 2)
    assert bytes_of(fields_of(vector)) == as_version_3(data)


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["description"])
def test_valid_vector_bytes_are_its_text_decoded(vector: dict[str, Any]) -> None:
    assert base32_decode(vector["text"][len(PREFIX) :]).hex() == vector["bytes_hex"]
    assert bytes.fromhex(vector["bytes_hex"])[0] == vector["version"]


@pytest.mark.parametrize("vector", VECTORS["accepted"], ids=lambda v: v["description"])
def test_accepted_spelling_decodes_like_its_canonical_text(vector: dict[str, Any]) -> None:
    assert Ticket.decode(vector["text"]) == Ticket.decode(vector["canonical"])


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["description"])
def test_invalid_vector_fails_with_its_kind(vector: dict[str, Any]) -> None:
    with pytest.raises(InvalidTicketError) as caught:
        Ticket.decode(vector["text"])
    assert caught.value.kind == vector["kind"]


# What the person reads


def test_the_shortest_ticket_with_an_address_has_131_characters() -> None:
    assert len(SIMPLE.encode()) == 131


def test_a_ticket_naming_only_the_key_has_120_characters() -> None:
    assert len(Ticket(SIMPLE.peer_id, (), SIMPLE.content_hash).encode()) == 120


def test_bad_character_message_names_the_character_and_its_position() -> None:
    text = SIMPLE.encode()
    with pytest.raises(InvalidTicketError, match=r"Character 21 of the ticket is '8'"):
        Ticket.decode(text[:20] + "8" + text[21:])


def test_mangled_ticket_message_blames_copy_paste() -> None:
    text = SIMPLE.encode()
    changed = text[:40] + ("b" if text[40] != "b" else "c") + text[41:]
    with pytest.raises(InvalidTicketError, match="copy-paste"):
        Ticket.decode(changed)


def test_newer_version_message_says_to_upgrade() -> None:
    payload = bytes_of(SIMPLE)[:-4]
    with pytest.raises(InvalidTicketError, match="Upgrade ringdrop"):
        Ticket.decode(text_of(with_checksum(bytes([4]) + payload[1:])))


def test_a_ticket_with_a_relay_and_no_address_reads_back() -> None:
    ticket = Ticket(SIMPLE.peer_id, (), SIMPLE.content_hash, relay="http://127.0.0.1:1/")
    assert Ticket.decode(ticket.encode()).relay == "http://127.0.0.1:1/"


def test_a_ticket_naming_only_the_key_reads_back_as_key_only() -> None:
    ticket = Ticket.decode(Ticket(SIMPLE.peer_id, (), SIMPLE.content_hash).encode())
    assert ticket.key_only
    assert not SIMPLE.key_only


def test_a_single_files_time_and_executable_bit_read_back() -> None:
    ticket = Ticket(
        SIMPLE.peer_id, SIMPLE.addresses, SIMPLE.content_hash, mtime_ns=-5, executable=True
    )
    decoded = Ticket.decode(ticket.encode())
    assert (decoded.mtime_ns, decoded.executable) == (-5, True)
    assert len(bytes_of(ticket)) == len(bytes_of(SIMPLE)) + 1 + 8


def test_writers_write_version_3() -> None:
    assert bytes_of(SIMPLE)[0] == 3


def test_an_unusable_relay_in_a_ticket_is_blamed_on_its_writer() -> None:
    vector = next(v for v in VECTORS["invalid"] if v["kind"] == "relay")
    with pytest.raises(InvalidTicketError, match="new ticket"):
        Ticket.decode(vector["text"])


def test_an_older_ticket_naming_neither_address_nor_relay_is_blamed_on_its_writer() -> None:
    payload = bytes([2, 0]) + SIMPLE.peer_id.raw + SIMPLE.content_hash + b"\x00"
    with pytest.raises(InvalidTicketError, match="neither an address nor a relay") as caught:
        Ticket.decode(text_of(with_checksum(payload)))
    assert caught.value.kind == "no_addresses"


@given(tickets)
def test_ticket_length_follows_the_formula_in_the_spec(ticket: Ticket) -> None:
    size_bytes = 0 if ticket.size is None else max(1, math.ceil(ticket.size.bit_length() / 7))
    expected = (
        71
        + sum(7 if a.ip.version == 4 else 19 for a in ticket.addresses)
        + size_bytes
        + (1 + len(ticket.name.encode()) if ticket.name is not None else 0)
        + (1 + len(ticket.relay) if ticket.relay is not None else 0)
        + (1 if ticket.has_file_metadata else 0)
        + (8 if ticket.mtime_ns is not None else 0)
    )
    assert len(bytes_of(ticket)) == expected
    assert len(ticket.encode()) == len(PREFIX) + math.ceil(8 * expected / 5)


# Making tickets


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        pytest.param({"content_hash": bytes(31)}, "hash", id="hash of 31 bytes"),
        pytest.param(
            {"format": "collection", "executable": True}, "file", id="a collection's mode"
        ),
        pytest.param({"format": "collection", "mtime_ns": 0}, "file", id="a collection's time"),
        pytest.param({"mtime_ns": 2**63}, "file", id="time of 2**63 ns"),
        pytest.param({"addresses": (Address(ip_address("192.0.2.1"), 0),)}, "address", id="port 0"),
        pytest.param(
            {"addresses": (Address(ip_address("192.0.2.1"), 65536),)}, "address", id="port 65536"
        ),
        pytest.param(
            {"addresses": (Address(IPv6Address("fe80::1%eth0"), 4433),)},
            "address",
            id="IPv6 address with a scope",
        ),
        pytest.param(
            {"addresses": (Address(ip_address("192.0.2.1"), 4433),) * 256},
            "address",
            id="256 addresses",
        ),
        pytest.param({"name": ""}, "name", id="empty name"),
        pytest.param({"name": "n" * 256}, "name", id="name of 256 bytes"),
        pytest.param({"name": "é" * 128}, "name", id="name of 128 two-byte characters"),
        pytest.param({"name": "bad\nname"}, "name", id="name with a control character"),
        pytest.param({"name": "surrogate \udcff"}, "name", id="name that UTF-8 cannot encode"),
        pytest.param({"size": -1}, "size", id="negative size"),
        pytest.param({"size": 2**64}, "size", id="size of 2**64"),
        pytest.param({"relay": ""}, "relay", id="empty relay URL"),
        pytest.param({"relay": "ftp://relay.example/"}, "relay", id="relay URL with scheme ftp"),
        pytest.param({"relay": "relay.example"}, "relay", id="relay URL without a scheme"),
        pytest.param({"relay": "https://"}, "relay", id="relay URL without a host"),
        pytest.param({"relay": "https://:443/"}, "relay", id="relay URL with a port, no host"),
        pytest.param(
            {"relay": "https://u:p@relay.example/"}, "relay", id="relay URL with userinfo"
        ),
        pytest.param({"relay": "https://relay.example/ x"}, "relay", id="relay URL with a space"),
        pytest.param({"relay": "https://relay.example/\t"}, "relay", id="relay URL with a tab"),
        pytest.param({"relay": "https://relay.exämple/"}, "relay", id="relay URL not ASCII"),
        pytest.param({"relay": "https://relay.example:0/"}, "relay", id="relay URL with port 0"),
        pytest.param({"relay": "http://[::1/"}, "relay", id="relay URL with a broken IPv6 host"),
        pytest.param(
            {"relay": "https://" + "r" * 240 + ".example/"}, "relay", id="relay URL of 257 bytes"
        ),
        pytest.param(
            {"addresses": (), "relay": "https://u@relay.example/"},
            "relay",
            id="no address and a bad relay URL",
        ),
    ],
)
def test_invalid_fields_make_no_ticket(change: dict[str, Any], kind: str) -> None:
    fields: dict[str, Any] = {
        "peer_id": SIMPLE.peer_id,
        "addresses": SIMPLE.addresses,
        "content_hash": SIMPLE.content_hash,
    }
    with pytest.raises(InvalidTicketError) as caught:
        Ticket(**(fields | change))
    assert caught.value.kind == kind


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:1/",
        "https://relay.example.net/",
        "https://relay.example.net",
        "http://[2001:db8::2]:3340/",
        "https://" + "r" * 238 + ".example/",  # 255 bytes
    ],
)
def test_usable_relay_urls_are_accepted(url: str) -> None:
    assert check_relay_url(url) == url
    assert Ticket(SIMPLE.peer_id, (), SIMPLE.content_hash, relay=url).relay == url


# Properties


@given(tickets)
def test_encoding_then_decoding_gives_the_same_ticket(ticket: Ticket) -> None:
    assert Ticket.decode(ticket.encode()) == ticket


@given(tickets)
def test_encoded_ticket_is_the_prefix_and_lowercase_base32(ticket: Ticket) -> None:
    text = ticket.encode()
    assert text.startswith(PREFIX)
    assert set(text[len(PREFIX) :]) <= set(BASE32)


@given(tickets, st.text(" \t\r\n"), st.text(" \t\r\n"))
def test_case_and_surrounding_whitespace_do_not_matter(
    ticket: Ticket, before: str, after: str
) -> None:
    assert Ticket.decode(before + ticket.encode().upper() + after) == ticket


@given(tickets, st.data())
def test_a_single_changed_character_is_always_detected(ticket: Ticket, data: st.DataObject) -> None:
    text = ticket.encode()
    index = data.draw(st.integers(0, len(text) - 1))
    replacement = data.draw(st.characters().filter(lambda c: c.lower() != text[index]))
    with pytest.raises(TicketError):
        Ticket.decode(text[:index] + replacement + text[index + 1 :])


@given(tickets, st.data())
def test_a_single_flipped_bit_is_always_detected(ticket: Ticket, data: st.DataObject) -> None:
    flipped = bytearray(bytes_of(ticket))
    bit = data.draw(st.integers(0, len(flipped) * 8 - 1))
    flipped[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(TicketError):
        Ticket.decode(text_of(bytes(flipped)))


@given(st.text())
def test_decoding_any_text_gives_a_ticket_or_a_ticket_error(text: str) -> None:
    decodes_to_itself_or_fails_cleanly(text)


@given(st.text(BASE32 + BASE32.upper() + "01:= \n"))
def test_decoding_any_base32_after_the_prefix_gives_a_ticket_or_a_ticket_error(body: str) -> None:
    decodes_to_itself_or_fails_cleanly(PREFIX + body)


@given(st.binary())
def test_decoding_any_checksummed_bytes_gives_a_ticket_or_a_ticket_error(payload: bytes) -> None:
    decodes_to_itself_or_fails_cleanly(text_of(with_checksum(payload)))


@given(tickets, st.data())
def test_mutated_text_gives_a_ticket_or_a_ticket_error(ticket: Ticket, data: st.DataObject) -> None:
    text = ticket.encode()
    start = data.draw(st.integers(0, len(text)))
    end = data.draw(st.integers(start, len(text)))
    inserted = data.draw(st.text(max_size=3) | st.text(BASE32, max_size=8))
    decodes_to_itself_or_fails_cleanly(text[:start] + inserted + text[end:])


@given(tickets, st.data())
def test_mutated_bytes_with_a_good_checksum_give_a_ticket_or_a_ticket_error(
    ticket: Ticket, data: st.DataObject
) -> None:
    payload = bytes_of(ticket)[:-4]
    start = data.draw(st.integers(0, len(payload)))
    end = data.draw(st.integers(start, min(start + 4, len(payload))))
    inserted = data.draw(st.binary(max_size=4))
    decodes_to_itself_or_fails_cleanly(
        text_of(with_checksum(payload[:start] + inserted + payload[end:]))
    )
