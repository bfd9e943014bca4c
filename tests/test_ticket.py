"""Tickets: the shared vectors, round trips, and that no text makes decoding fail another way."""

from __future__ import annotations

import contextlib
import json
import zlib
from ipaddress import IPv6Address, ip_address
from pathlib import Path
from typing import Any, get_args

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringdrop.errors import TicketError
from ringdrop.identity import PeerId, base32_decode, base32_encode
from ringdrop.ticket import PREFIX, Address, InvalidTicketError, Ticket, TicketErrorKind

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
    )


def text_of(data: bytes) -> str:
    return PREFIX + base32_encode(data)


def bytes_of(ticket: Ticket) -> bytes:
    return base32_decode(ticket.encode()[len(PREFIX) :])


def with_checksum(payload: bytes) -> bytes:
    return payload + zlib.crc32(payload).to_bytes(4, "big")


def decodes_to_itself_or_fails_cleanly(text: str) -> None:
    """Decoding gives a TicketError or a ticket whose own text is `text`, up to case and blanks."""
    with contextlib.suppress(TicketError):
        assert Ticket.decode(text).encode() == text.strip().lower()


SIMPLE = Ticket(
    PeerId(nacl.signing.SigningKey(bytes(32)).verify_key.encode()),
    (Address(ip_address("192.0.2.1"), 4433),),
    bytes(32),
)

peer_ids = st.binary(min_size=32, max_size=32).map(
    lambda seed: PeerId(nacl.signing.SigningKey(seed).verify_key.encode())
)
addresses = st.builds(Address, st.ip_addresses(v=4) | st.ip_addresses(v=6), st.integers(1, 65535))
# At most 63 characters of at most 4 bytes each: always within the 255-byte limit.
names = st.text(st.characters(exclude_categories=("Cc", "Cs")), min_size=1, max_size=63)
tickets = st.builds(
    Ticket,
    peer_ids,
    st.lists(addresses, min_size=1, max_size=6).map(tuple),
    st.binary(min_size=32, max_size=32),
    st.sampled_from(["blob", "collection"]),
    st.none() | names,
    st.none() | st.integers(0, 2**64 - 1),
)


# The shared vectors


def test_invalid_vectors_cover_every_kind_decoding_can_find() -> None:
    only_made_by_constructors = {"hash"}
    kinds = {vector["kind"] for vector in VECTORS["invalid"]}
    assert kinds == set(get_args(TicketErrorKind)) - only_made_by_constructors


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["description"])
def test_valid_vector_decodes_to_its_fields(vector: dict[str, Any]) -> None:
    assert Ticket.decode(vector["text"]) == fields_of(vector)


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["description"])
def test_valid_vector_is_what_its_fields_encode_to(vector: dict[str, Any]) -> None:
    assert fields_of(vector).encode() == vector["text"]


@pytest.mark.parametrize("vector", VECTORS["valid"], ids=lambda v: v["description"])
def test_valid_vector_bytes_are_its_text_decoded(vector: dict[str, Any]) -> None:
    assert bytes_of(Ticket.decode(vector["text"])).hex() == vector["bytes_hex"]


@pytest.mark.parametrize("vector", VECTORS["accepted"], ids=lambda v: v["description"])
def test_accepted_spelling_decodes_like_its_canonical_text(vector: dict[str, Any]) -> None:
    assert Ticket.decode(vector["text"]) == Ticket.decode(vector["canonical"])


@pytest.mark.parametrize("vector", VECTORS["invalid"], ids=lambda v: v["description"])
def test_invalid_vector_fails_with_its_kind(vector: dict[str, Any]) -> None:
    with pytest.raises(InvalidTicketError) as caught:
        Ticket.decode(vector["text"])
    assert caught.value.kind == vector["kind"]


# What the person reads


def test_the_shortest_ticket_has_131_characters() -> None:
    assert len(SIMPLE.encode()) == 131


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
        Ticket.decode(text_of(with_checksum(bytes([2]) + payload[1:])))


# Making tickets


@pytest.mark.parametrize(
    ("change", "kind"),
    [
        pytest.param({"content_hash": bytes(31)}, "hash", id="hash of 31 bytes"),
        pytest.param({"addresses": ()}, "no_addresses", id="no address"),
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
