"""Fuzzing what a sharer or a ticket hands a receiver: collections (a folder's listing, as a
blob), tickets and signed ring manifests. Only the module's own errors may come out, and a
hostile listing costs memory in proportion to its bytes, never to the count it claims."""

from __future__ import annotations

import json
import struct
from ipaddress import ip_address
from pathlib import Path

import nacl.signing
from hypothesis import given
from hypothesis import strategies as st

from ringdrop.access.manifest import Manifest, parse_manifest
from ringdrop.errors import InvalidManifestError, StoreError, TicketError, UnsafePathError
from ringdrop.identity import PeerId
from ringdrop.store.collection import (
    MAGIC,
    MAGIC_V1,
    MAX_COLLECTION_ENTRIES,
    Collection,
    Entry,
    member_roots,
)
from ringdrop.ticket import Address, Ticket
from tests.fuzz.common import fuzz, peak_memory, within
from tests.store.helpers import SAFE_PART

names = st.lists(SAFE_PART, min_size=1, max_size=3).map("/".join)
entries = st.builds(
    Entry,
    names,
    st.binary(min_size=32, max_size=32),
    st.integers(0, (1 << 64) - 1),
    st.none() | st.integers(-(1 << 63), (1 << 63) - 1),
    st.booleans(),
)


@st.composite
def collections(draw: st.DrawFn) -> Collection:
    drawn = draw(st.lists(entries, max_size=6, unique_by=lambda e: e.name))
    # A name may not also be a folder of another.
    kept = [e for e in drawn if not any(o.name.startswith(e.name + "/") for o in drawn)]
    return Collection.of(kept)


@st.composite
def mangled(draw: st.DrawFn, wire: bytes) -> bytes:
    data = bytearray(wire)
    for _ in range(draw(st.integers(0, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))]) + draw(st.binary(max_size=16))


listings = st.one_of(
    st.binary(max_size=1024),
    st.binary(max_size=1024).map(lambda b: MAGIC + b),
    st.binary(max_size=1024).map(lambda b: MAGIC_V1 + b),
    collections().map(Collection.encode),
    collections().flatmap(lambda c: mangled(c.encode())),
    st.tuples(st.integers(0, 0xFFFFFFFF), st.binary(max_size=512)).map(
        lambda t: MAGIC + struct.pack("<I", t[0]) + t[1]
    ),
)


@fuzz
@given(listings)
def test_decoding_a_listing_gives_a_collection_or_a_store_error(data: bytes) -> None:
    result, peak = peak_memory(lambda: Collection.decode(data))
    assert isinstance(result, Collection | StoreError | UnsafePathError)
    assert within(peak, len(data), factor=16)
    if isinstance(result, Collection):
        assert len(result.entries) <= MAX_COLLECTION_ENTRIES
        assert Collection.decode(result.encode()) == result


@fuzz
@given(listings)
def test_reading_a_listings_roots_gives_roots_or_a_store_error(data: bytes) -> None:
    result, peak = peak_memory(lambda: member_roots(data))
    assert isinstance(result, list | StoreError)
    assert within(peak, len(data), factor=16)
    if isinstance(result, list):
        assert all(len(root) == 32 for root in result)


@fuzz
@given(collections())
def test_every_collection_round_trips(collection: Collection) -> None:
    assert Collection.decode(collection.encode()) == collection


PEER = PeerId(nacl.signing.SigningKey(b"p" * 32).verify_key.encode())

tickets = st.builds(
    Ticket,
    st.just(PEER),
    st.lists(
        st.builds(
            Address,
            st.one_of(st.ip_addresses(v=4), st.ip_addresses(v=6)).filter(
                lambda ip: not ip.is_unspecified
            ),
            st.integers(1, 65535),
        ),
        min_size=1,
        max_size=3,
    ).map(tuple),
    st.binary(min_size=32, max_size=32),
    st.sampled_from(["blob", "collection"]),
    st.none() | SAFE_PART,
    st.none() | st.integers(0, (1 << 64) - 1),
    st.none() | st.just("https://relay.example.org/"),
)


@st.composite
def mistyped(draw: st.DrawFn, text: str) -> str:
    """`text` with characters replaced, dropped or added, as a person or a chat app might."""
    chars = list(text)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(chars)))
        action = draw(st.sampled_from(["replace", "drop", "add"]))
        letter = draw(st.sampled_from("abcdefghijklmnopqrstuvwxyz234567 :-_\n0189ÄÉ"))
        if action == "add" or at == len(chars):
            chars.insert(at, letter)
        elif action == "drop":
            del chars[at]
        else:
            chars[at] = letter
    return "".join(chars)


ticket_texts = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="abcdefghijklmnopqrstuvwxyz234567", max_size=400).map("rdrop:".__add__),
    tickets.map(Ticket.encode),
    tickets.flatmap(lambda t: mistyped(t.encode())),
)


@fuzz
@given(ticket_texts)
def test_decoding_any_text_gives_a_ticket_or_a_ticket_error(text: str) -> None:
    result, peak = peak_memory(lambda: Ticket.decode(text))
    assert isinstance(result, Ticket | TicketError)
    assert within(peak, len(text.encode("utf-8", "surrogatepass")), factor=16)
    if isinstance(result, Ticket):
        assert Ticket.decode(result.encode()) == result
        assert all(ip_address(a.ip) for a in result.addresses)


@fuzz
@given(tickets)
def test_every_ticket_round_trips(ticket: Ticket) -> None:
    assert Ticket.decode(ticket.encode()) == ticket


MANIFEST_VECTORS = json.loads(
    (Path(__file__).parent.parent / "vectors" / "ring_manifests.json").read_text()
)
manifests = st.sampled_from([bytes.fromhex(v["manifest"]) for v in MANIFEST_VECTORS["valid"]])


@fuzz
@given(st.one_of(st.binary(max_size=2048), manifests.flatmap(mangled)))
def test_parsing_a_ring_manifest_gives_one_or_an_invalid_manifest_error(data: bytes) -> None:
    result, peak = peak_memory(lambda: parse_manifest(data))
    assert isinstance(result, Manifest | InvalidManifestError)
    assert within(peak, len(data))
    if isinstance(result, Manifest):
        assert result.raw == data  # only the exact signed bytes verify
