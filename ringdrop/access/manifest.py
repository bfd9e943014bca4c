"""Signed ring manifests: a ring's owner, id, name, version, members and validity in one fixed
binary layout (tickets/PROTOCOL.md, "Ring manifests"), signed with the owner's key.

A manifest is how a ring travels: members carry the newest valid one and gate by it exactly as
the owner gates by its own tables. Parsing checks every limit before the signature; nothing
here touches the database (`Access` stores them).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from ringdrop.access.records import RING_NAME_MAX, check_ring_name
from ringdrop.errors import InvalidManifestError, InvalidNameError, TicketError
from ringdrop.identity import Identity, PeerId, verify

__all__ = [
    "CLOCK_SKEW",
    "DEFAULT_VALIDITY",
    "MAGIC",
    "MAX_MANIFEST_BYTES",
    "MAX_MEMBERS",
    "RING_ID_BYTES",
    "SIGNATURE_CONTEXT",
    "Manifest",
    "ManifestMember",
    "parse_manifest",
    "sign_manifest",
]

MAGIC = b"RDRING\x00\x01"
SIGNATURE_CONTEXT = b"ringdrop/1 ring manifest\x00"
RING_ID_BYTES = 16
MAX_MEMBERS = 1000
DEFAULT_VALIDITY = 24 * 3600
"""Seconds a manifest stays valid after it is issued: a revocation reaches every member, even
one that never hears from the owner again, within this bound."""
CLOCK_SKEW = 300
"""Seconds a manifest may claim to be issued in the future (clocks differ)."""

_HEAD = struct.Struct(
    ">8s16s32sQQQBB"
)  # magic, ring id, owner, version, issued, valid, flags, name
_MEMBER = struct.Struct(">32sQ")  # key, expires_at (0: for good)
_COUNT = struct.Struct(">H")
_SIGNATURE = 64
_MEMBERS_SERVE = 0x01
MAX_MANIFEST_BYTES = (
    _HEAD.size + RING_NAME_MAX + _COUNT.size + MAX_MEMBERS * _MEMBER.size + _SIGNATURE
)


@dataclass(frozen=True, slots=True)
class ManifestMember:
    """A member of a ring: its key, and when its membership ends (None: for good)."""

    peer_id: PeerId
    expires_at: int | None = None

    def admits(self, now: float) -> bool:
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True, slots=True)
class Manifest:
    """One signed version of a ring. `raw` is the exact signed bytes, signature included: what
    is stored and passed on, so that every holder can check it."""

    ring_id: bytes
    owner: PeerId
    version: int
    issued_at: int
    valid_until: int
    members_serve: bool
    name: str
    members: tuple[ManifestMember, ...]
    raw: bytes

    def is_valid(self, now: float) -> bool:
        """Whether a holder may gate by it at `now`: issued (within the clock skew) and not
        past `valid_until`."""
        return self.issued_at <= now + CLOCK_SKEW and now < self.valid_until

    def member(self, peer: PeerId) -> ManifestMember | None:
        for member in self.members:
            if member.peer_id == peer:
                return member
        return None

    def admits(self, peer: PeerId, now: float) -> bool:
        """Whether this manifest lets `peer` read what was shared under the ring at `now`."""
        member = self.member(peer)
        return self.is_valid(now) and member is not None and member.admits(now)

    def supersedes(self, other: Manifest) -> bool:
        """Whether this one replaces `other`: the same ring and owner, a higher version."""
        return (
            self.ring_id == other.ring_id
            and self.owner == other.owner
            and self.version > other.version
        )


def sign_manifest(
    identity: Identity,
    *,
    ring_id: bytes,
    version: int,
    name: str,
    members: Iterable[ManifestMember],
    members_serve: bool,
    issued_at: int,
    valid_until: int,
) -> Manifest:
    """The manifest of these facts, signed by `identity` as the ring's owner. Members are
    written in the order of their keys, so one ring state has one encoding."""
    ordered = tuple(sorted(members, key=lambda m: m.peer_id.raw))
    body = _body(
        ring_id, identity.peer_id, version, issued_at, valid_until, members_serve, name, ordered
    )
    raw = body + identity.sign(SIGNATURE_CONTEXT + body)
    return parse_manifest(raw)


def _body(
    ring_id: bytes,
    owner: PeerId,
    version: int,
    issued_at: int,
    valid_until: int,
    members_serve: bool,
    name: str,
    members: tuple[ManifestMember, ...],
) -> bytes:
    if len(ring_id) != RING_ID_BYTES:
        raise ValueError(f"a ring id is {RING_ID_BYTES} bytes")
    if len(members) > MAX_MEMBERS:
        raise InvalidManifestError(f"a ring has at most {MAX_MEMBERS} members")
    for value in (version, issued_at, valid_until):
        if not 0 <= value < 1 << 64:
            raise ValueError(f"{value} does not fit in 64 bits")
    encoded = check_ring_name(name).encode()
    out = bytearray(
        _HEAD.pack(
            MAGIC,
            ring_id,
            owner.raw,
            version,
            issued_at,
            valid_until,
            _MEMBERS_SERVE if members_serve else 0,
            len(encoded),
        )
    )
    out += encoded
    out += _COUNT.pack(len(members))
    for member in members:
        expires = member.expires_at or 0
        if not 0 <= expires < 1 << 64:
            raise ValueError(f"{expires} does not fit in 64 bits")
        out += _MEMBER.pack(member.peer_id.raw, expires)
    return bytes(out)


def parse_manifest(raw: bytes) -> Manifest:
    """The manifest in `raw`, once its layout, limits and owner's signature check out;
    InvalidManifestError saying what is wrong otherwise."""
    if len(raw) > MAX_MANIFEST_BYTES:
        raise InvalidManifestError(
            f"A ring manifest is at most {MAX_MANIFEST_BYTES} bytes, and this one is {len(raw)}."
        )
    _need(len(raw) >= _HEAD.size + _COUNT.size + _SIGNATURE, "it is cut short")
    magic, ring_id, owner_raw, version, issued, valid, flags, name_length = _HEAD.unpack_from(raw)
    _need(magic == MAGIC, "it does not start with the manifest magic of version 1")
    _need(flags & ~_MEMBERS_SERVE == 0, f"it has unknown flags {flags:#04x}")
    _need(issued < valid, "it is valid until before it was issued")
    at = _HEAD.size
    _need(at + name_length + _COUNT.size <= len(raw), "it is cut short")
    try:
        name = check_ring_name(raw[at : at + name_length].decode("ascii"))
    except (UnicodeDecodeError, InvalidNameError):
        raise InvalidManifestError("The ring manifest's name breaks the naming rules.") from None
    at += name_length
    (count,) = _COUNT.unpack_from(raw, at)
    at += _COUNT.size
    _need(count <= MAX_MEMBERS, f"it lists {count} members, more than {MAX_MEMBERS}")
    _need(at + count * _MEMBER.size + _SIGNATURE == len(raw), "its length does not match")
    try:
        owner = PeerId(owner_raw)
        members = []
        previous = b""
        for _ in range(count):
            key, expires = _MEMBER.unpack_from(raw, at)
            at += _MEMBER.size
            _need(key > previous, "its members are not in increasing order of their keys")
            previous = key
            members.append(ManifestMember(PeerId(key), expires or None))
    except TicketError:
        raise InvalidManifestError("The ring manifest names a key that is not Ed25519.") from None
    body, signature = raw[:at], raw[at:]
    if not verify(owner, SIGNATURE_CONTEXT + body, signature):
        raise InvalidManifestError(
            f"The ring manifest is not signed by its owner {owner.short()}…: it was forged or "
            "altered."
        )
    return Manifest(
        ring_id,
        owner,
        version,
        issued,
        valid,
        bool(flags & _MEMBERS_SERVE),
        name,
        tuple(members),
        bytes(raw),
    )


def _need(condition: bool, what: str) -> None:
    if not condition:
        raise InvalidManifestError(f"The ring manifest is invalid: {what}.")


def expiry_seconds(expires_at: float | None) -> int | None:
    """A membership's end as the manifest writes it: whole seconds, rounded up."""
    return None if expires_at is None else max(1, math.ceil(expires_at))
