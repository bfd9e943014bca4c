"""Signed ring announcements: the news a ring's owner sends its members — content shared to the
ring, or withdrawn from it — in one fixed binary layout (tickets/PROTOCOL.md, "Announcements"),
signed with the owner's key.

Parsing checks every limit before the signature; nothing here touches the database or the
network (`access/news.py` stores them, `node/news.py` sends them).
"""

from __future__ import annotations

import ipaddress
import struct
import unicodedata
from dataclasses import dataclass
from typing import Literal, get_args

from ringdrop.access.manifest import RING_ID_BYTES
from ringdrop.access.records import RING_NAME_MAX, check_ring_name
from ringdrop.errors import InvalidAnnouncementError, InvalidNameError, TicketError
from ringdrop.identity import Identity, PeerId, verify
from ringdrop.ticket import MAX_RELAY_BYTES, Address, Format, check_relay_url

__all__ = [
    "MAGIC",
    "MAX_ADDRESSES",
    "MAX_ANNOUNCEMENT_BYTES",
    "MAX_NAME_BYTES",
    "SIGNATURE_CONTEXT",
    "Announcement",
    "Kind",
    "announced_name",
    "named_root",
    "parse_announcement",
    "sign_announcement",
]

MAGIC = b"RDNEWS\x00\x01"
SIGNATURE_CONTEXT = b"ringdrop/1 announcement\x00"
MAX_NAME_BYTES = 255
"""A shared file's or folder's name: one path component, as file systems allow it."""
MAX_ADDRESSES = 8

Kind = Literal["share", "withdraw"]
_KINDS: tuple[Kind, ...] = get_args(Kind)
_FORMATS: tuple[Format, ...] = get_args(Format)

# magic, ring id, owner, sequence, at, kind, root, format, size, flags, mtime
_HEAD = struct.Struct(">8s16s32sQQB32sBQBq")
_EXECUTABLE, _HAS_MTIME = 0x01, 0x02
_SIGNATURE = 64
_ADDRESS_MAX = 1 + 16 + 2
MAX_ANNOUNCEMENT_BYTES = (
    _HEAD.size
    + 1
    + RING_NAME_MAX
    + 1
    + MAX_NAME_BYTES
    + 1
    + MAX_RELAY_BYTES
    + 1
    + MAX_ADDRESSES * _ADDRESS_MAX
    + _SIGNATURE
)


@dataclass(frozen=True, slots=True)
class Announcement:
    """One piece of a ring's news, as its owner signed it. `raw` is the exact signed bytes,
    signature included: what is stored and passed on, so that every holder can check it.

    `sequence` numbers the ring's announcements from 1, one more for each; a share announced
    again, or withdrawn, gets a new one. `relay` and `addresses` say how the owner is reached
    (hints, as a ticket's are). A single file's time and executable bit ride along as a
    version 3 ticket carries them."""

    ring_id: bytes
    owner: PeerId
    sequence: int
    at: int
    kind: Kind
    root: bytes
    format: Format
    size: int
    name: str
    ring_name: str
    relay: str | None
    addresses: tuple[Address, ...]
    raw: bytes
    mtime_ns: int | None = None
    executable: bool = False


def sign_announcement(
    identity: Identity,
    *,
    ring_id: bytes,
    ring_name: str,
    sequence: int,
    at: int,
    kind: Kind,
    root: bytes,
    format: Format,
    size: int,
    name: str,
    relay: str | None = None,
    addresses: tuple[Address, ...] = (),
    mtime_ns: int | None = None,
    executable: bool = False,
) -> Announcement:
    """The announcement of these facts, signed by `identity` as the ring's owner."""
    if len(ring_id) != RING_ID_BYTES:
        raise ValueError(f"a ring id is {RING_ID_BYTES} bytes")
    if len(root) != 32:
        raise ValueError("a root hash is 32 bytes")
    if kind not in _KINDS or format not in _FORMATS:
        raise ValueError(f"{kind!r} or {format!r} cannot be announced")
    for value in (sequence, at, size):
        if not 0 <= value < 1 << 64:
            raise ValueError(f"{value} does not fit in 64 bits")
    if sequence == 0:
        raise ValueError("sequence numbers start at 1")
    if mtime_ns is not None and not -(1 << 63) <= mtime_ns < 1 << 63:
        raise ValueError(f"{mtime_ns} does not fit in 64 bits")
    if len(addresses) > MAX_ADDRESSES:
        raise ValueError(f"an announcement names at most {MAX_ADDRESSES} addresses")
    if relay is not None:
        check_relay_url(relay)
    flags = (_EXECUTABLE if executable else 0) | (_HAS_MTIME if mtime_ns is not None else 0)
    body = bytearray(
        _HEAD.pack(
            MAGIC,
            ring_id,
            identity.peer_id.raw,
            sequence,
            at,
            _KINDS.index(kind) + 1,
            root,
            _FORMATS.index(format),
            size,
            flags,
            mtime_ns or 0,
        )
    )
    body += _encode_tail(ring_name, name, relay, addresses)
    raw = bytes(body) + identity.sign(SIGNATURE_CONTEXT + bytes(body))
    return parse_announcement(raw)


def _encode_tail(
    ring_name: str, name: str, relay: str | None, addresses: tuple[Address, ...]
) -> bytes:
    """The fields of varying length after the fixed head, each behind its length."""
    body = bytearray()
    ring = check_ring_name(ring_name).encode()
    body += bytes([len(ring)]) + ring
    encoded = _check_name(name).encode()
    body += bytes([len(encoded)]) + encoded
    url = (relay or "").encode()
    body += bytes([len(url)]) + url
    body.append(len(addresses))
    for address in addresses:
        body += bytes([address.ip.version]) + address.ip.packed + address.port.to_bytes(2, "big")
    return bytes(body)


def parse_announcement(raw: bytes) -> Announcement:
    """The announcement in `raw`, once its layout, limits and owner's signature check out;
    InvalidAnnouncementError saying what is wrong otherwise."""
    if len(raw) > MAX_ANNOUNCEMENT_BYTES:
        raise InvalidAnnouncementError(
            f"An announcement is at most {MAX_ANNOUNCEMENT_BYTES} bytes, and this one is "
            f"{len(raw)}."
        )
    _need(len(raw) >= _HEAD.size + 4 + _SIGNATURE, "it is cut short")
    (magic, ring_id, owner_raw, sequence, at, kind, root, format_code, size, flags, mtime) = (
        _HEAD.unpack_from(raw)
    )
    _need(magic == MAGIC, "it does not start with the announcement magic of version 1")
    _need(sequence > 0, "its sequence number is 0")
    _need(1 <= kind <= len(_KINDS), f"it is of the unknown kind {kind}")
    _need(format_code < len(_FORMATS), f"it names the unknown format {format_code}")
    _need(flags & ~(_EXECUTABLE | _HAS_MTIME) == 0, f"it has unknown flags {flags:#04x}")
    _need(flags & _HAS_MTIME or mtime == 0, "it has a time without saying so")
    cursor = _Cursor(raw, _HEAD.size)
    ring_name, name, relay, addresses = _decode_tail(cursor)
    _need(cursor.at + _SIGNATURE == len(raw), "its length does not match")
    owner = _check_signature(owner_raw, raw[: cursor.at], raw[cursor.at :])
    return Announcement(
        ring_id,
        owner,
        sequence,
        at,
        _KINDS[kind - 1],
        root,
        _FORMATS[format_code],
        size,
        name,
        ring_name,
        relay,
        addresses,
        bytes(raw),
        mtime if flags & _HAS_MTIME else None,
        bool(flags & _EXECUTABLE),
    )


def _decode_tail(cursor: _Cursor) -> tuple[str, str, str | None, tuple[Address, ...]]:
    """The ring name, name, relay and addresses after the fixed head, each checked."""
    try:
        ring_name = check_ring_name(cursor.text(RING_NAME_MAX, "ring name"))
    except InvalidNameError:
        raise InvalidAnnouncementError(
            "The announcement's ring name breaks the naming rules."
        ) from None
    name = cursor.text(MAX_NAME_BYTES, "name")
    try:
        _check_name(name)
    except ValueError as error:
        raise InvalidAnnouncementError(f"The announcement is invalid: {error}.") from None
    relay_text = cursor.text(MAX_RELAY_BYTES, "relay URL", empty=True)
    try:
        relay = check_relay_url(relay_text) if relay_text else None
    except TicketError as error:
        raise InvalidAnnouncementError(f"The announcement names a bad relay: {error}") from None
    return ring_name, name, relay, cursor.addresses()


def _check_signature(owner_raw: bytes, body: bytes, signature: bytes) -> PeerId:
    """The owner, once `signature` is its signature of `body`."""
    try:
        owner = PeerId(owner_raw)
    except TicketError:
        raise InvalidAnnouncementError(
            "The announcement names a key that is not Ed25519."
        ) from None
    if not verify(owner, SIGNATURE_CONTEXT + body, signature):
        raise InvalidAnnouncementError(
            f"The announcement is not signed by its ring's owner {owner.short()}…: it was "
            "forged or altered."
        )
    return owner


def named_root(raw: bytes) -> bytes | None:
    """The root `raw` names if it has an announcement's layout, its signature unchecked: what a
    refused announcement, a forged one too, is logged with."""
    if len(raw) < _HEAD.size or raw[: len(MAGIC)] != MAGIC:
        return None
    return bytes(_HEAD.unpack_from(raw)[6])


def announced_name(name: str | None, root: bytes) -> str:
    """`name` as an announcement may carry it, else a name made from the root: a sharer's file
    name may be longer than an announcement allows, or hold control characters."""
    try:
        return _check_name(name or "")
    except ValueError:
        return root.hex()[:16]


def _check_name(name: str) -> str:
    encoded = name.encode(errors="replace")
    if not 1 <= len(encoded) <= MAX_NAME_BYTES:
        raise ValueError(f"a name is 1 to {MAX_NAME_BYTES} bytes of UTF-8")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in name):
        raise ValueError("a name may not hold control characters")
    return name


class _Cursor:
    def __init__(self, raw: bytes, at: int) -> None:
        self.raw, self.at = raw, at

    def take(self, n: int) -> bytes:
        _need(self.at + n <= len(self.raw) - _SIGNATURE, "it is cut short")
        piece = self.raw[self.at : self.at + n]
        self.at += n
        return piece

    def text(self, limit: int, what: str, *, empty: bool = False) -> str:
        length = self.take(1)[0]
        _need(length <= limit, f"its {what} is longer than {limit} bytes")
        _need(empty or length > 0, f"its {what} is empty")
        try:
            return self.take(length).decode()
        except UnicodeDecodeError:
            raise InvalidAnnouncementError(f"The announcement's {what} is not UTF-8.") from None

    def addresses(self) -> tuple[Address, ...]:
        count = self.take(1)[0]
        _need(count <= MAX_ADDRESSES, f"it names more than {MAX_ADDRESSES} addresses")
        found = []
        for _ in range(count):
            family = self.take(1)[0]
            _need(family in (4, 6), "it names an address of an unknown family")
            ip = ipaddress.ip_address(self.take(4 if family == 4 else 16))
            port = int.from_bytes(self.take(2), "big")
            _need(port != 0, "it names port 0")
            found.append(Address(ip, port))
        return tuple(found)


def _need(condition: bool, what: str) -> None:
    if not condition:
        raise InvalidAnnouncementError(f"The announcement is invalid: {what}.")
