"""The ringdrop wire protocol, sans-IO: messages, their bytes, and one state machine per stream.

tickets/PROTOCOL.md specifies it byte by byte. In short: QUIC with ALPN `ringdrop/1`; the first
client stream authenticates the client (HELLO, CHALLENGE, PROOF); every later client stream
carries one REQUEST and its answer: a RESPONSE header, then for an allowed `get` the raw bao
stream of the requested ranges, for an allowed `members` request (many members of one collection
on one stream) one or more PART frames per member, for an allowed `catalog` one CATALOG frame,
for the ring requests (`rings`, `about`, `have`: manifests and providers) one INFO frame, for
an allowed `announce` (a ring owner's news pushed to a member) nothing more, and for an allowed
`since` (a member asking its ring's owner for the news it missed) one NEWS frame.
Each message is a frame: type (1 byte), body length (4 bytes, big-endian), body.

Each side of each stream is a machine (`ClientAuth`, `ServerAuth`, `Requester`, `Responder`,
`PathsChannel`, `MembersReader`) with a read-only `state` and one table, `TRANSITIONS`, mapping
(state, trigger) to the next state; PROTOCOL.md prints the same tables, and a test keeps them
equal. Receiving methods raise `ProtocolError` when the peer breaks the protocol; sending methods
raise `LocalProtocolError` when this side would. Either puts the machine in the terminal ERROR
state, as in h11: from then on it refuses all input and output. Nothing here does I/O or keeps
time.
"""

from __future__ import annotations

import contextlib
import itertools
import struct
import unicodedata
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum, auto
from ipaddress import ip_address
from types import MappingProxyType
from typing import ClassVar, Literal, get_args

from ringdrop.access.announcement import MAX_ANNOUNCEMENT_BYTES
from ringdrop.access.manifest import MAX_MANIFEST_BYTES, RING_ID_BYTES
from ringdrop.bao import ChunkRanges
from ringdrop.errors import (
    AccessDeniedError,
    LocalProtocolError,
    NotServedError,
    ProtocolError,
    TicketError,
    TransferError,
)
from ringdrop.identity import Identity, PeerId, verify
from ringdrop.ticket import Format, encode_varint

__all__ = [
    "ALPN",
    "MAX_CATALOG_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_NAME_BYTES",
    "MAX_PART_BYTES",
    "MAX_REQUEST_BYTES",
    "NONCE_BYTES",
    "VERSION",
    "AboutRequest",
    "AnnounceRequest",
    "Candidates",
    "Catalog",
    "CatalogEntry",
    "CatalogRequest",
    "Challenge",
    "ClientAuth",
    "Data",
    "Event",
    "GetRequest",
    "HaveRequest",
    "Hello",
    "Info",
    "MemberData",
    "MemberPart",
    "MemberSelection",
    "MembersReader",
    "MembersRequest",
    "Message",
    "News",
    "PathsChannel",
    "PeerAuthenticated",
    "Proof",
    "Provider",
    "Request",
    "Requester",
    "Responder",
    "ResponseHeader",
    "RingRequest",
    "RingsRequest",
    "ServerAuth",
    "SinceRequest",
    "State",
    "Status",
    "StreamEnded",
    "Transitions",
    "Trigger",
    "decode",
    "encode",
    "proof_message",
]

VERSION = 1
ALPN = "ringdrop/1"
NONCE_BYTES = 32
MAX_REQUEST_BYTES = 64 * 1024
MAX_HEADER_BYTES = 4 * 1024
MAX_CATALOG_BYTES = 16 * 1024 * 1024
MAX_NAME_BYTES = 4096
MAX_CANDIDATES = 16
MAX_PART_BYTES = 1024 * 1024
"""Bao stream bytes in one PART frame (its body is one flags byte more)."""
MAX_MANIFESTS = 16
"""Ring manifests in one RINGS request or one INFO frame."""
MAX_PROVIDERS = 64
"""Providers in one INFO frame."""
MAX_REACH = 8
"""Addresses a provider names."""
MAX_RECEIVED = 64
"""Providers a HAVE request reports bytes from."""
MAX_RELAY_BYTES = 255
MAX_INFO_BYTES = 1024 * 1024
MAX_ANNOUNCEMENTS = 16
"""Announcements in one announce request or one NEWS frame."""
MAX_NEWS_BYTES = 64 * 1024

Status = Literal["allowed", "denied", "not_found", "busy", "error"]

_STATUSES: tuple[Status, ...] = get_args(Status)
_FORMATS: tuple[Format, ...] = get_args(Format)
_FRAME_HEAD = struct.Struct(">BI")
_PROOF_CONTEXT = b"ringdrop/1 client proof\x00"
_GET, _CATALOG, _MEMBERS, _RINGS, _ABOUT, _HAVE, _ANNOUNCE, _SINCE = range(8)
_NEWS_MORE = 0x01
_PART_LAST, _PART_MISSING = 0x01, 0x02
_ENTRY_HEAD = struct.Struct(">32sBQH")  # hash, format, size, name length


class _Type:
    """Frame type codes."""

    HELLO = 0x01
    CHALLENGE = 0x02
    PROOF = 0x03
    REQUEST = 0x10
    RESPONSE = 0x11
    CATALOG = 0x12
    CANDIDATES = 0x20
    PART = 0x13
    INFO = 0x14
    NEWS = 0x15


_MAX_BODY = {
    _Type.HELLO: 0,
    _Type.CHALLENGE: NONCE_BYTES,
    _Type.PROOF: 32 + 64,
    _Type.REQUEST: MAX_REQUEST_BYTES,
    _Type.RESPONSE: MAX_HEADER_BYTES,
    _Type.CATALOG: MAX_CATALOG_BYTES,
    _Type.CANDIDATES: 1 + MAX_CANDIDATES * 19,
    _Type.PART: 1 + MAX_PART_BYTES,
    _Type.INFO: MAX_INFO_BYTES,
    _Type.NEWS: MAX_NEWS_BYTES,
}


@dataclass(frozen=True, slots=True)
class Hello:
    """The client opens the authentication stream."""


@dataclass(frozen=True, slots=True)
class Challenge:
    """The server's fresh random nonce, which the client's proof must sign."""

    nonce: bytes

    def __post_init__(self) -> None:
        if len(self.nonce) != NONCE_BYTES:
            raise LocalProtocolError(f"A challenge nonce is {NONCE_BYTES} bytes long.")


@dataclass(frozen=True, slots=True)
class Proof:
    """The client's peer id and its signature of `proof_message` for this connection."""

    peer_id: PeerId
    signature: bytes

    def __post_init__(self) -> None:
        if len(self.signature) != 64:
            raise LocalProtocolError("An Ed25519 signature is 64 bytes long.")

    @classmethod
    def sign(cls, identity: Identity, server_id: PeerId, nonce: bytes) -> Proof:
        message = proof_message(server_id, nonce, identity.peer_id)
        return cls(identity.peer_id, identity.sign(message))

    def verify(self, server_id: PeerId, nonce: bytes) -> bool:
        return verify(self.peer_id, proof_message(server_id, nonce, self.peer_id), self.signature)


def proof_message(server_id: PeerId, nonce: bytes, client_id: PeerId) -> bytes:
    """What a client signs: bound to the server it checked in TLS and that server's nonce."""
    return _PROOF_CONTEXT + server_id.raw + nonce + client_id.raw


@dataclass(frozen=True, slots=True)
class GetRequest:
    """Ask for the bao stream of `ranges` (the chunks the requester still lacks) of a blob."""

    content_hash: bytes
    ranges: ChunkRanges

    def __post_init__(self) -> None:
        if len(self.content_hash) != 32:
            raise LocalProtocolError("A content hash is 32 bytes long.")
        if self.ranges.is_empty():
            raise LocalProtocolError("A get request must ask for at least one chunk.")


@dataclass(frozen=True, slots=True)
class MemberSelection:
    """One member of a collection, by its position in the collection, and the chunks wanted."""

    index: int
    ranges: ChunkRanges

    def __post_init__(self) -> None:
        if not 0 <= self.index < 1 << 32:
            raise LocalProtocolError(f"A member index is below 2**32, and {self.index} is not.")
        if self.ranges.is_empty():
            raise LocalProtocolError("A member selection must ask for at least one chunk.")


@dataclass(frozen=True, slots=True)
class MembersRequest:
    """Ask for several members of the collection `content_hash` on one stream, back to back.

    Access is decided once, for the collection; its members inherit the verdict. `members` are
    in increasing index order, each index at most once.
    """

    content_hash: bytes
    members: tuple[MemberSelection, ...]

    def __post_init__(self) -> None:
        if len(self.content_hash) != 32:
            raise LocalProtocolError("A content hash is 32 bytes long.")
        if not self.members:
            raise LocalProtocolError("A members request must ask for at least one member.")
        indices = [m.index for m in self.members]
        if any(b <= a for a, b in itertools.pairwise(indices)):
            raise LocalProtocolError("A members request lists its indices increasing, once each.")


@dataclass(frozen=True, slots=True)
class CatalogRequest:
    """Ask for the list of content this peer may download."""


@dataclass(frozen=True, slots=True)
class RingsRequest:
    """Exchange ring manifests: the client sends those it holds (signed bytes, see
    `access.manifest`); the server keeps the newer ones of rings it holds and answers with the
    newer manifests it holds of those rings, and every manifest that admits the client."""

    manifests: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        _check_manifests(self.manifests)


@dataclass(frozen=True, slots=True)
class AboutRequest:
    """Ask about `content_hash`: the manifests of the rings through which the client may read
    it, and the members known to hold it."""

    content_hash: bytes

    def __post_init__(self) -> None:
        if len(self.content_hash) != 32:
            raise LocalProtocolError("A content hash is 32 bytes long.")


@dataclass(frozen=True, slots=True)
class HaveRequest:
    """The client holds `content_hash` whole and may be asked for it there: through `relay` and
    at `addresses`. `received` says how many content bytes it got from which providers (for the
    sharer's upload log)."""

    content_hash: bytes
    relay: str | None = None
    addresses: tuple[tuple[str, int], ...] = ()
    received: tuple[tuple[PeerId, int], ...] = ()

    def __post_init__(self) -> None:
        if len(self.content_hash) != 32:
            raise LocalProtocolError("A content hash is 32 bytes long.")
        _check_reach(self.relay, self.addresses)
        if len(self.received) > MAX_RECEIVED:
            raise LocalProtocolError(f"A have request names at most {MAX_RECEIVED} providers.")
        for _, count in self.received:
            if not 0 <= count < 1 << 64:
                raise LocalProtocolError(f"A byte count fits in 64 bits, and {count} does not.")


@dataclass(frozen=True, slots=True)
class Provider:
    """A member that holds content, and how it said it is reached."""

    peer_id: PeerId
    relay: str | None = None
    addresses: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        _check_reach(self.relay, self.addresses)


@dataclass(frozen=True, slots=True)
class Info:
    """The answer body of an allowed rings, about or have request."""

    manifests: tuple[bytes, ...] = ()
    providers: tuple[Provider, ...] = ()

    def __post_init__(self) -> None:
        _check_manifests(self.manifests)
        if len(self.providers) > MAX_PROVIDERS:
            raise LocalProtocolError(f"An info frame names at most {MAX_PROVIDERS} providers.")


@dataclass(frozen=True, slots=True)
class News:
    """A ring's news: its owner's current manifest of the ring, and signed announcements of
    that ring in sequence order (see `access.announcement`; kept as bytes here, checked by the
    node that receives them). The body of an announce request, and of the NEWS frame that
    answers a since request, where `more` says that the owner holds newer ones still."""

    manifest: bytes
    announcements: tuple[bytes, ...] = ()
    more: bool = False

    def __post_init__(self) -> None:
        _check_manifests((self.manifest,))
        if len(self.announcements) > MAX_ANNOUNCEMENTS:
            raise LocalProtocolError(f"At most {MAX_ANNOUNCEMENTS} announcements go in one frame.")
        if any(not 0 < len(a) <= MAX_ANNOUNCEMENT_BYTES for a in self.announcements):
            raise LocalProtocolError(
                f"An announcement is 1 to {MAX_ANNOUNCEMENT_BYTES} bytes long."
            )


@dataclass(frozen=True, slots=True)
class AnnounceRequest:
    """A ring's owner tells a member of its news: what was shared to the ring or withdrawn."""

    news: News

    def __post_init__(self) -> None:
        if not self.news.announcements or self.news.more:
            raise LocalProtocolError("An announce request carries announcements, and no more.")


@dataclass(frozen=True, slots=True)
class SinceRequest:
    """A member asks the owner of the ring `ring_id` for its announcements after `sequence`,
    saying how it is reached: through `relay` and at `addresses`."""

    ring_id: bytes
    sequence: int
    relay: str | None = None
    addresses: tuple[tuple[str, int], ...] = ()

    def __post_init__(self) -> None:
        if len(self.ring_id) != RING_ID_BYTES:
            raise LocalProtocolError(f"A ring id is {RING_ID_BYTES} bytes long.")
        if not 0 <= self.sequence < 1 << 64:
            raise LocalProtocolError(f"A sequence number fits in 64 bits; {self.sequence} not.")
        _check_reach(self.relay, self.addresses)


def _check_manifests(manifests: tuple[bytes, ...]) -> None:
    if len(manifests) > MAX_MANIFESTS:
        raise LocalProtocolError(f"At most {MAX_MANIFESTS} manifests go in one frame.")
    if any(not 0 < len(m) <= MAX_MANIFEST_BYTES for m in manifests):
        raise LocalProtocolError(f"A manifest is 1 to {MAX_MANIFEST_BYTES} bytes long.")


def _check_reach(relay: str | None, addresses: tuple[tuple[str, int], ...]) -> None:
    if relay is not None:
        _check_text(relay, MAX_RELAY_BYTES, "A relay URL")
        if not relay:
            raise LocalProtocolError("A relay URL is not empty.")
    if len(addresses) > MAX_REACH:
        raise LocalProtocolError(f"At most {MAX_REACH} addresses are named.")
    Candidates(addresses)


Request = (
    GetRequest
    | MembersRequest
    | CatalogRequest
    | RingsRequest
    | AboutRequest
    | HaveRequest
    | AnnounceRequest
    | SinceRequest
)
RingRequest = RingsRequest | AboutRequest | HaveRequest


@dataclass(frozen=True, slots=True)
class ResponseHeader:
    """The answer to a request, sent before any content byte; `reason` is for a person."""

    status: Status
    reason: str = ""

    def __post_init__(self) -> None:
        if self.status not in _STATUSES:
            raise LocalProtocolError(f"{self.status!r} is not a response status.")
        _check_text(self.reason, MAX_HEADER_BYTES - 1, "A response's reason")

    def raise_for_status(self) -> None:
        """Raise the ringdrop error that this status means, unless it is `allowed`."""
        reason = f": {self.reason}" if self.reason else "."
        if self.status == "denied":
            raise AccessDeniedError(f"The sharer does not let this peer read the content{reason}")
        if self.status == "not_found":
            raise NotServedError(f"The sharer does not have the content{reason}")
        if self.status == "busy":
            raise TransferError(f"The sharer is busy; try again later{reason}")
        if self.status == "error":
            raise TransferError(f"The sharer could not serve the request{reason}")


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """One piece of content a peer may download: its name, root hash, format and size."""

    name: str
    content_hash: bytes
    format: Format
    size: int

    def __post_init__(self) -> None:
        _check_text(self.name, MAX_NAME_BYTES, "A catalog name")
        if not self.name:
            raise LocalProtocolError("A catalog name is not empty.")
        if len(self.content_hash) != 32:
            raise LocalProtocolError("A content hash is 32 bytes long.")
        if self.format not in _FORMATS:
            raise LocalProtocolError(f"{self.format!r} is not a content format.")
        if not 0 <= self.size < 1 << 64:
            raise LocalProtocolError(f"A size fits in 64 bits, and {self.size} does not.")


@dataclass(frozen=True, slots=True)
class Catalog:
    """The answer body of an allowed catalog request."""

    entries: tuple[CatalogEntry, ...]


@dataclass(frozen=True, slots=True)
class MemberPart:
    """A PART frame of an allowed members response: bao stream bytes of the current member.

    `last` ends the member; `missing` (always last, never with bytes) says the sharer cannot
    serve this member although it may serve the collection.
    """

    data: bytes = b""
    last: bool = False
    missing: bool = False

    def __post_init__(self) -> None:
        if len(self.data) > MAX_PART_BYTES:
            raise LocalProtocolError(f"A part holds at most {MAX_PART_BYTES} bytes.")
        if self.missing and (self.data or not self.last):
            raise LocalProtocolError("A missing member's part is its last and holds no bytes.")


@dataclass(frozen=True, slots=True)
class MemberData:
    """What a members response carried for the member at `position` in the request.

    `data` is the next piece of its bao stream; `last` ends it; `missing` says the sharer
    could not serve it.
    """

    position: int
    data: bytes
    last: bool
    missing: bool = False


@dataclass(frozen=True, slots=True)
class Data:
    """Bytes of the bao stream that follows an allowed get's header."""

    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The peer finished its side of the stream."""


@dataclass(frozen=True, slots=True)
class PeerAuthenticated:
    """The client proved it holds the key of `peer_id` on this connection."""

    peer_id: PeerId


@dataclass(frozen=True, slots=True)
class Candidates:
    """UDP addresses at which the sender may be reachable directly: its interfaces' and the
    public one STUN reported. The path layer probes them (transport/_paths.py)."""

    addresses: tuple[tuple[str, int], ...]

    def __post_init__(self) -> None:
        if len(self.addresses) > MAX_CANDIDATES:
            raise LocalProtocolError(f"At most {MAX_CANDIDATES} candidates fit in one frame.")
        for host, port in self.addresses:
            try:
                ip_address(host)
            except ValueError:
                raise LocalProtocolError(f"{host!r} is not an IP address.") from None
            if not 0 < port < 65536:
                raise LocalProtocolError(f"{port} is not a UDP port.")


Message = (
    Hello
    | Challenge
    | Proof
    | GetRequest
    | MembersRequest
    | CatalogRequest
    | ResponseHeader
    | Catalog
    | MemberPart
    | Candidates
    | RingsRequest
    | AboutRequest
    | HaveRequest
    | Info
    | AnnounceRequest
    | SinceRequest
    | News
)
Event = Message | Data | StreamEnded | PeerAuthenticated


def encode(message: Message) -> bytes:
    """The frame of one message."""
    kind, body = _encode_body(message)
    if len(body) > _MAX_BODY[kind]:
        raise LocalProtocolError(
            f"The {type(message).__name__} is {len(body)} bytes long, and the protocol allows "
            f"at most {_MAX_BODY[kind]}."
        )
    return _FRAME_HEAD.pack(kind, len(body)) + body


def decode(frame: bytes) -> Message:
    """The message of exactly one whole frame."""
    reader = _FrameReader()
    reader.feed(frame)
    found = reader.next_frame(set(_MAX_BODY))
    if found is None or reader.pending:
        raise ProtocolError("The bytes are not exactly one frame.")
    return _decode_body(*found)


def _encode_body(message: Message) -> tuple[int, bytes]:
    match message:
        case Hello():
            return _Type.HELLO, b""
        case Challenge(nonce):
            return _Type.CHALLENGE, nonce
        case Proof(peer_id, signature):
            return _Type.PROOF, peer_id.raw + signature
        case GetRequest(content_hash, ranges):
            return _Type.REQUEST, bytes([VERSION, _GET]) + content_hash + ranges.to_bytes()
        case MembersRequest(content_hash, members):
            head = bytes([VERSION, _MEMBERS]) + content_hash
            return _Type.REQUEST, head + _members_bytes(members)
        case CatalogRequest():
            return _Type.REQUEST, bytes([VERSION, _CATALOG])
        case MemberPart(data, last, missing):
            flags = (_PART_LAST if last else 0) | (_PART_MISSING if missing else 0)
            return _Type.PART, bytes([flags]) + data
        case ResponseHeader(status, reason):
            return _Type.RESPONSE, bytes([_STATUSES.index(status)]) + reason.encode()
        case Catalog(entries):
            return _Type.CATALOG, _catalog_bytes(entries)
        case Candidates(addresses):
            return _Type.CANDIDATES, _addresses_bytes(addresses)
        case RingsRequest(manifests):
            return _Type.REQUEST, bytes([VERSION, _RINGS]) + _manifests_bytes(manifests)
        case AboutRequest(content_hash):
            return _Type.REQUEST, bytes([VERSION, _ABOUT]) + content_hash
        case HaveRequest(content_hash, relay, addresses, received):
            out = bytearray([VERSION, _HAVE]) + content_hash + _reach_bytes(relay, addresses)
            out.append(len(received))
            for peer, count in received:
                out += peer.raw + count.to_bytes(8, "big")
            return _Type.REQUEST, bytes(out)
        case Info(manifests, providers):
            out = bytearray(_manifests_bytes(manifests))
            out.append(len(providers))
            for provider in providers:
                out += provider.peer_id.raw + _reach_bytes(provider.relay, provider.addresses)
            return _Type.INFO, bytes(out)
        case AnnounceRequest(news):
            return _Type.REQUEST, bytes([VERSION, _ANNOUNCE]) + _news_bytes(news)
        case SinceRequest(ring_id, sequence, relay, addresses):
            out = bytearray([VERSION, _SINCE]) + ring_id + sequence.to_bytes(8, "big")
            return _Type.REQUEST, bytes(out + _reach_bytes(relay, addresses))
        case News():
            return _Type.NEWS, _news_bytes(message)


def _members_bytes(members: Sequence[MemberSelection]) -> bytes:
    """Each member's index (as the gap from the one before) and its ranges."""
    out = bytearray()
    previous = -1
    for member in members:
        selected = member.ranges.to_bytes()
        out += encode_varint(member.index - previous - 1)
        out += encode_varint(len(selected))
        out += selected
        previous = member.index
    return bytes(out)


def _catalog_bytes(entries: Sequence[CatalogEntry]) -> bytes:
    out = bytearray(len(entries).to_bytes(4, "big"))
    for entry in entries:
        name = entry.name.encode()
        format_code = _FORMATS.index(entry.format)
        out += _ENTRY_HEAD.pack(entry.content_hash, format_code, entry.size, len(name))
        out += name
    return bytes(out)


def _news_bytes(news: News) -> bytes:
    out = bytearray([_NEWS_MORE if news.more else 0])
    out += len(news.manifest).to_bytes(2, "big") + news.manifest
    out.append(len(news.announcements))
    for announcement in news.announcements:
        out += len(announcement).to_bytes(2, "big") + announcement
    return bytes(out)


def _addresses_bytes(addresses: tuple[tuple[str, int], ...]) -> bytes:
    out = bytearray([len(addresses)])
    for host, port in addresses:
        ip = ip_address(host)
        out += bytes([ip.version]) + ip.packed + port.to_bytes(2, "big")
    return bytes(out)


def _manifests_bytes(manifests: tuple[bytes, ...]) -> bytes:
    out = bytearray([len(manifests)])
    for manifest in manifests:
        out += len(manifest).to_bytes(2, "big") + manifest
    return bytes(out)


def _reach_bytes(relay: str | None, addresses: tuple[tuple[str, int], ...]) -> bytes:
    url = (relay or "").encode()
    return bytes([len(url)]) + url + _addresses_bytes(addresses)


def _decode_body(kind: int, body: bytes) -> Message:
    """Parse a frame body; every fault is the peer's."""
    try:
        return _parse_body(kind, body)
    except LocalProtocolError as error:
        raise ProtocolError(f"The peer sent an invalid message: {error}") from None


def _parse_body(kind: int, body: bytes) -> Message:
    if kind == _Type.HELLO:
        return Hello()
    if kind == _Type.CHALLENGE:
        _need(len(body) == NONCE_BYTES, "a challenge of the wrong length")
        return Challenge(body)
    if kind == _Type.PROOF:
        _need(len(body) == 96, "a proof of the wrong length")
        try:
            peer_id = PeerId(body[:32])
        except TicketError:
            raise ProtocolError("The client's proof names a key that is not Ed25519.") from None
        return Proof(peer_id, body[32:])
    if kind == _Type.REQUEST:
        return _parse_request(body)
    if kind == _Type.RESPONSE:
        _need(len(body) >= 1 and body[0] < len(_STATUSES), "a response with an unknown status")
        return ResponseHeader(_STATUSES[body[0]], _utf8(body[1:], "a response's reason"))
    if kind == _Type.CANDIDATES:
        return _parse_candidates(body)
    if kind == _Type.PART:
        return _parse_part(body)
    if kind == _Type.INFO:
        return _parse_info(body)
    if kind == _Type.NEWS:
        news = _read_news(_Cursor(body), "a news frame")
        return news
    return _parse_catalog(body)


class _Cursor:
    """Reads a body front to back; every shortfall is the peer's fault."""

    def __init__(self, body: bytes, at: int = 0) -> None:
        self.body, self.at = body, at

    def take(self, n: int, what: str) -> bytes:
        _need(self.at + n <= len(self.body), f"{what} cut short")
        piece = self.body[self.at : self.at + n]
        self.at += n
        return piece

    def byte(self, what: str) -> int:
        return self.take(1, what)[0]

    def end(self, what: str) -> None:
        _need(self.at == len(self.body), f"{what} with trailing bytes")


def _read_manifests(cursor: _Cursor, what: str) -> tuple[bytes, ...]:
    count = cursor.byte(what)
    _need(count <= MAX_MANIFESTS, f"{what} with more than {MAX_MANIFESTS} manifests")
    found = []
    for _ in range(count):
        length = int.from_bytes(cursor.take(2, what), "big")
        _need(0 < length <= MAX_MANIFEST_BYTES, f"{what} with a manifest of a bad length")
        found.append(cursor.take(length, what))
    return tuple(found)


def _read_reach(cursor: _Cursor, what: str) -> tuple[str | None, tuple[tuple[str, int], ...]]:
    relay = _utf8(cursor.take(cursor.byte(what), what), f"{what}'s relay") or None
    count = cursor.byte(what)
    _need(count <= MAX_REACH, f"{what} with more than {MAX_REACH} addresses")
    start = cursor.at - 1
    for _ in range(count):
        family = cursor.byte(what)
        _need(family in (4, 6), f"{what} with an address of an unknown family")
        cursor.take((4 if family == 4 else 16) + 2, what)
    return relay, _parse_candidates(cursor.body[start : cursor.at]).addresses


def _read_peer(cursor: _Cursor, what: str) -> PeerId:
    try:
        return PeerId(cursor.take(32, what))
    except TicketError:
        raise ProtocolError(f"The peer sent {what} naming a key that is not Ed25519.") from None


def _parse_info(body: bytes) -> Info:
    cursor = _Cursor(body)
    manifests = _read_manifests(cursor, "an info frame")
    count = cursor.byte("an info frame")
    _need(count <= MAX_PROVIDERS, f"an info frame with more than {MAX_PROVIDERS} providers")
    providers = []
    for _ in range(count):
        peer = _read_peer(cursor, "an info frame")
        relay, addresses = _read_reach(cursor, "an info frame")
        providers.append(Provider(peer, relay, addresses))
    cursor.end("an info frame")
    return Info(manifests, tuple(providers))


def _read_news(cursor: _Cursor, what: str) -> News:
    flags = cursor.byte(what)
    _need(flags & ~_NEWS_MORE == 0, f"{what} with unknown flags {flags:#04x}")
    length = int.from_bytes(cursor.take(2, what), "big")
    _need(0 < length <= MAX_MANIFEST_BYTES, f"{what} with a manifest of a bad length")
    manifest = cursor.take(length, what)
    count = cursor.byte(what)
    _need(count <= MAX_ANNOUNCEMENTS, f"{what} with more than {MAX_ANNOUNCEMENTS} announcements")
    found = []
    for _ in range(count):
        length = int.from_bytes(cursor.take(2, what), "big")
        _need(0 < length <= MAX_ANNOUNCEMENT_BYTES, f"{what} with an announcement too long")
        found.append(cursor.take(length, what))
    cursor.end(what)
    return News(manifest, tuple(found), bool(flags & _NEWS_MORE))


def _parse_news_request(operation: int, body: bytes) -> Request:
    cursor = _Cursor(body, 2)
    if operation == _ANNOUNCE:
        news = _read_news(cursor, "an announce request")
        _need(bool(news.announcements), "an announce request without announcements")
        _need(not news.more, "an announce request with the flag more")
        return AnnounceRequest(news)
    ring_id = cursor.take(RING_ID_BYTES, "a since request")
    sequence = int.from_bytes(cursor.take(8, "a since request"), "big")
    relay, addresses = _read_reach(cursor, "a since request")
    cursor.end("a since request")
    return SinceRequest(ring_id, sequence, relay, addresses)


def _parse_ring_request(operation: int, body: bytes) -> Request:
    cursor = _Cursor(body, 2)
    if operation == _RINGS:
        manifests = _read_manifests(cursor, "a rings request")
        cursor.end("a rings request")
        return RingsRequest(manifests)
    content_hash = cursor.take(32, "a ring request")
    if operation == _ABOUT:
        cursor.end("an about request")
        return AboutRequest(content_hash)
    relay, addresses = _read_reach(cursor, "a have request")
    count = cursor.byte("a have request")
    _need(count <= MAX_RECEIVED, f"a have request with more than {MAX_RECEIVED} providers")
    received = []
    for _ in range(count):
        peer = _read_peer(cursor, "a have request")
        received.append((peer, int.from_bytes(cursor.take(8, "a have request"), "big")))
    cursor.end("a have request")
    return HaveRequest(content_hash, relay, addresses, tuple(received))


def _parse_part(body: bytes | memoryview) -> MemberPart:
    _need(len(body) >= 1, "a part without flags")
    flags = body[0]
    _need(flags & ~(_PART_LAST | _PART_MISSING) == 0, f"a part with unknown flags {flags:#04x}")
    return MemberPart(bytes(body[1:]), bool(flags & _PART_LAST), bool(flags & _PART_MISSING))


def _parse_request(body: bytes) -> Request:
    _need(len(body) >= 2, "a request without a version and operation")
    if body[0] != VERSION:
        raise ProtocolError(
            f"The peer's request is in protocol version {body[0]}, and this ringdrop speaks "
            f"version {VERSION}."
        )
    if body[1] == _CATALOG:
        _need(len(body) == 2, "a catalog request with trailing bytes")
        return CatalogRequest()
    if body[1] == _MEMBERS:
        return _parse_members(body)
    if body[1] in (_RINGS, _ABOUT, _HAVE):
        return _parse_ring_request(body[1], body)
    if body[1] in (_ANNOUNCE, _SINCE):
        return _parse_news_request(body[1], body)
    _need(body[1] == _GET, f"a request with the unknown operation {body[1]}")
    _need(len(body) > 34, "a get request without a hash and ranges")
    return GetRequest(body[2:34], ChunkRanges.from_bytes(body[34:]))


def _parse_members(body: bytes) -> MembersRequest:
    _need(len(body) > 34, "a members request without a hash and members")
    members = []
    at, previous = 34, -1
    while at < len(body):
        gap, at = _read_leb128(body, at)
        length, at = _read_leb128(body, at)
        _need(at + length <= len(body), "a members request cut short")
        index = previous + 1 + gap
        _need(index < 1 << 32, "a member index of 2**32 or more")
        try:
            ranges = ChunkRanges.from_bytes(body[at : at + length])
        except ValueError as error:
            raise ProtocolError(f"The peer sent member ranges that do not parse: {error}") from None
        members.append(MemberSelection(index, ranges))
        at += length
        previous = index
    return MembersRequest(body[2:34], tuple(members))


def _read_leb128(body: bytes, at: int) -> tuple[int, int]:
    """An unsigned LEB128 integer in its shortest form (at most 5 bytes) at `at`; its end."""
    value = shift = 0
    for offset in range(5):
        _need(at + offset < len(body), "a members request cut short")
        byte = body[at + offset]
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            _need(byte != 0 or offset == 0, "an integer not in its shortest form")
            return value, at + offset + 1
        shift += 7
    raise ProtocolError("The peer sent an integer longer than 5 bytes.")


def _parse_catalog(body: bytes) -> Catalog:
    _need(len(body) >= 4, "a catalog without an entry count")
    count = int.from_bytes(body[:4], "big")
    _need(count <= len(body) // _ENTRY_HEAD.size, "a catalog with more entries than bytes")
    entries = []
    at = 4
    for _ in range(count):
        _need(at + _ENTRY_HEAD.size <= len(body), "a catalog cut short")
        content_hash, format_code, size, name_length = _ENTRY_HEAD.unpack_from(body, at)
        at += _ENTRY_HEAD.size
        _need(format_code < len(_FORMATS), f"a catalog entry of unknown format {format_code}")
        _need(at + name_length <= len(body), "a catalog cut short")
        name = _utf8(body[at : at + name_length], "a catalog name")
        at += name_length
        entries.append(CatalogEntry(name, content_hash, _FORMATS[format_code], size))
    _need(at == len(body), "a catalog with trailing bytes")
    return Catalog(tuple(entries))


def _parse_candidates(body: bytes) -> Candidates:
    _need(len(body) >= 1 and body[0] <= MAX_CANDIDATES, "a candidate list of a bad length")
    addresses = []
    at = 1
    for _ in range(body[0]):
        _need(at < len(body) and body[at] in (4, 6), "a candidate of an unknown family")
        size = 4 if body[at] == 4 else 16
        _need(at + 1 + size + 2 <= len(body), "a candidate list cut short")
        host = str(ip_address(body[at + 1 : at + 1 + size]))
        port = int.from_bytes(body[at + 1 + size : at + 3 + size], "big")
        _need(port != 0, "a candidate with port 0")
        addresses.append((host, port))
        at += 3 + size
    _need(at == len(body), "a candidate list with trailing bytes")
    return Candidates(tuple(addresses))


def _need(condition: bool, what: str) -> None:
    if not condition:
        raise ProtocolError(f"The peer sent {what}.")


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode()
    except UnicodeDecodeError:
        raise ProtocolError(f"The peer sent {what} that is not UTF-8.") from None


def _check_text(text: str, max_bytes: int, what: str) -> None:
    if len(text.encode(errors="replace")) > max_bytes:
        raise LocalProtocolError(f"{what} is at most {max_bytes} bytes of UTF-8.")
    if any(unicodedata.category(char) in ("Cc", "Cs") for char in text):
        raise LocalProtocolError(f"{what} may not hold control characters or lone surrogates.")


class _FrameReader:
    """Buffers stream bytes and cuts whole frames out of them, checking limits early."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self, allowed: set[int]) -> tuple[int, bytes] | None:
        """The next whole frame if one is buffered; a ProtocolError as soon as its head is bad."""
        if len(self._buffer) < _FRAME_HEAD.size:
            return None
        kind, length = _FRAME_HEAD.unpack_from(self._buffer)
        if kind not in allowed:
            raise ProtocolError(f"The peer sent a frame of type {kind:#04x} where it may not.")
        if length > _MAX_BODY[kind]:
            raise ProtocolError(
                f"The peer sent a frame of {length} bytes where at most {_MAX_BODY[kind]} "
                "are allowed."
            )
        end = _FRAME_HEAD.size + length
        if len(self._buffer) < end:
            return None
        body = bytes(self._buffer[_FRAME_HEAD.size : end])
        del self._buffer[:end]
        return kind, body

    def take_rest(self) -> bytes:
        rest = bytes(self._buffer)
        self._buffer.clear()
        return rest


class State(Enum):
    """Where one side of one stream stands. ERROR, entered on any violation, is never left."""

    START = auto()
    WAIT_CHALLENGE = auto()
    CHALLENGED = auto()
    WAIT_PROOF = auto()
    WAIT_HEADER = auto()
    WAIT_CATALOG = auto()
    WAIT_INFO = auto()
    WAIT_NEWS = auto()
    RECEIVE_BODY = auto()
    SEND_HEADER = auto()
    SEND_CATALOG = auto()
    SEND_INFO = auto()
    SEND_NEWS = auto()
    SEND_BODY = auto()
    OPEN = auto()
    DONE = auto()
    ERROR = auto()


class Trigger(Enum):
    """What moves a machine: a frame, content bytes or the end of the stream, sent or received.

    A RESPONSE is told apart by its status and by the request it answers; a refusal is any
    status but `allowed`. Each value is the trigger as tickets/PROTOCOL.md writes it.
    """

    SEND_HELLO = "send HELLO"
    RECEIVE_HELLO = "receive HELLO"
    SEND_CHALLENGE = "send CHALLENGE"
    RECEIVE_CHALLENGE = "receive CHALLENGE"
    SEND_PROOF = "send PROOF"
    RECEIVE_PROOF = "receive PROOF"
    SEND_REQUEST = "send REQUEST"
    RECEIVE_REQUEST = "receive REQUEST"
    SEND_ALLOWED_CONTENT = "send RESPONSE allowed (get, members)"
    RECEIVE_ALLOWED_CONTENT = "receive RESPONSE allowed (get, members)"
    SEND_ALLOWED_CATALOG = "send RESPONSE allowed (catalog)"
    RECEIVE_ALLOWED_CATALOG = "receive RESPONSE allowed (catalog)"
    SEND_ALLOWED_INFO = "send RESPONSE allowed (rings, about, have)"
    RECEIVE_ALLOWED_INFO = "receive RESPONSE allowed (rings, about, have)"
    SEND_ALLOWED_ANNOUNCE = "send RESPONSE allowed (announce)"
    RECEIVE_ALLOWED_ANNOUNCE = "receive RESPONSE allowed (announce)"
    SEND_ALLOWED_SINCE = "send RESPONSE allowed (since)"
    RECEIVE_ALLOWED_SINCE = "receive RESPONSE allowed (since)"
    SEND_REFUSAL = "send RESPONSE refusal"
    RECEIVE_REFUSAL = "receive RESPONSE refusal"
    SEND_CATALOG = "send CATALOG"
    RECEIVE_CATALOG = "receive CATALOG"
    SEND_INFO = "send INFO"
    RECEIVE_INFO = "receive INFO"
    SEND_NEWS = "send NEWS"
    RECEIVE_NEWS = "receive NEWS"
    SEND_CONTENT = "send content"
    RECEIVE_CONTENT = "receive content"
    RECEIVE_PART = "receive PART"
    RECEIVE_LAST_PART = "receive PART ending the last member"
    SEND_CANDIDATES = "send CANDIDATES"
    RECEIVE_CANDIDATES = "receive CANDIDATES"
    RECEIVE_END = "receive end of stream"


Transitions = Mapping[tuple[State, Trigger], State]
"""One role's table: (state, trigger) to the next state. What it lacks is a violation."""

_FRAME_OF = {
    Trigger.RECEIVE_HELLO: _Type.HELLO,
    Trigger.RECEIVE_CHALLENGE: _Type.CHALLENGE,
    Trigger.RECEIVE_PROOF: _Type.PROOF,
    Trigger.RECEIVE_REQUEST: _Type.REQUEST,
    Trigger.RECEIVE_ALLOWED_CONTENT: _Type.RESPONSE,
    Trigger.RECEIVE_ALLOWED_CATALOG: _Type.RESPONSE,
    Trigger.RECEIVE_REFUSAL: _Type.RESPONSE,
    Trigger.RECEIVE_CATALOG: _Type.CATALOG,
    Trigger.RECEIVE_ALLOWED_INFO: _Type.RESPONSE,
    Trigger.RECEIVE_INFO: _Type.INFO,
    Trigger.RECEIVE_ALLOWED_ANNOUNCE: _Type.RESPONSE,
    Trigger.RECEIVE_ALLOWED_SINCE: _Type.RESPONSE,
    Trigger.RECEIVE_NEWS: _Type.NEWS,
    Trigger.RECEIVE_PART: _Type.PART,
    Trigger.RECEIVE_LAST_PART: _Type.PART,
    Trigger.RECEIVE_CANDIDATES: _Type.CANDIDATES,
}


def _table(rows: dict[tuple[State, Trigger], State]) -> Transitions:
    return MappingProxyType(rows)


class _Machine:
    """A state, the one table that moves it, and ERROR after any violation (as in h11).

    A ProtocolError from an input or a LocalProtocolError from an output puts the machine in
    ERROR; from then on every input raises ProtocolError and every output LocalProtocolError,
    both naming the first violation.
    """

    TRANSITIONS: ClassVar[Transitions]
    _INITIAL: ClassVar[State] = State.START

    def __init__(self) -> None:
        self._state = self._INITIAL
        self._violation: ProtocolError | LocalProtocolError | None = None

    @property
    def state(self) -> State:
        """Where the machine stands: a state of its table, or ERROR after a violation."""
        return self._state

    def _next(self, trigger: Trigger) -> State | None:
        return self.TRANSITIONS.get((self._state, trigger))

    def _step(self, trigger: Trigger, message: Message | bytes) -> bytes:
        """The bytes of an output, once the table allows it in this state."""
        if self._violation is not None:
            raise LocalProtocolError(f"Cannot {trigger.value}: {self._in_error()}")
        try:
            following = self._next(trigger)
            if following is None:
                raise LocalProtocolError(f"Cannot {trigger.value} in state {self._state.name}.")
            wire = message if isinstance(message, bytes) else encode(message)
        except LocalProtocolError as error:
            self._break(error)
            raise
        self._state = following
        return wire

    @contextlib.contextmanager
    def _receiving(self) -> Iterator[None]:
        """Refuses input in ERROR; enters ERROR on the input's ProtocolError."""
        if self._violation is not None:
            raise ProtocolError(f"The stream takes no more input: {self._in_error()}")
        try:
            yield
        except ProtocolError as error:
            self._break(error)
            raise

    def _in_error(self) -> str:
        return f"it is in ERROR after this violation: {self._violation}"

    def _break(self, error: ProtocolError | LocalProtocolError) -> None:
        self._state = State.ERROR
        self._violation = error


class _StreamMachine(_Machine, ABC):
    """One side of one stream: frames in and out as its table allows, and the peer's end.

    In each state the peer may send the frame types of the table's receive triggers there, or
    content bytes where it lists `receive content`, or nothing; it may end its side only where
    the table lists `receive end of stream`, and after that send nothing at all.
    """

    _EXPECT: ClassVar[dict[State, set[int]]]

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._EXPECT = {}
        for state, trigger in cls.TRANSITIONS:
            if trigger in _FRAME_OF:
                cls._EXPECT.setdefault(state, set()).add(_FRAME_OF[trigger])

    def __init__(self) -> None:
        super().__init__()
        self._reader = _FrameReader()
        self._ended = False

    def receive_data(self, data: bytes, end_stream: bool = False) -> list[Event]:
        """The events in the peer's next bytes on this stream."""
        with self._receiving():
            return self._receive(data, end_stream)

    def _receive(self, data: bytes, end_stream: bool) -> list[Event]:
        if self._ended:
            raise ProtocolError("The peer sent data after ending the stream.")
        events: list[Event] = []
        if self._in_body():
            if data:
                events.append(Data(data))
        else:
            self._reader.feed(data)
            while (kinds := self._EXPECT.get(self._state)) is not None:
                found = self._reader.next_frame(kinds)
                if found is None:
                    break
                trigger, event = self._take(_decode_body(*found))
                self._state = self.TRANSITIONS[self._state, trigger]  # _EXPECT came from it
                events.append(event)
            if self._reader.pending and self._in_body():
                events.append(Data(self._reader.take_rest()))
            elif self._reader.pending and self._state not in self._EXPECT:
                raise ProtocolError("The peer sent bytes on a stream where it must be silent.")
        if end_stream:
            self._ended = True
            following = self._next(Trigger.RECEIVE_END)
            if following is None:
                raise ProtocolError("The peer ended the stream in the middle of the exchange.")
            self._state = following
            events.append(StreamEnded())
        return events

    def _in_body(self) -> bool:
        return (self._state, Trigger.RECEIVE_CONTENT) in self.TRANSITIONS

    @property
    def takes_content(self) -> bool:
        """Whether what the peer sends next is content, which passes through unframed: a
        receiver may then take it as it is instead of through `receive_data`."""
        return not self._ended and self._in_body()

    @abstractmethod
    def _take(self, message: Message) -> tuple[Trigger, Event]:
        """A frame of a type the current state expects: its trigger, and the event it makes."""


class ClientAuth(_StreamMachine):
    """The client side of the authentication stream: HELLO, then PROOF for the CHALLENGE."""

    TRANSITIONS: ClassVar = _table(
        {
            (State.START, Trigger.SEND_HELLO): State.WAIT_CHALLENGE,
            (State.WAIT_CHALLENGE, Trigger.RECEIVE_CHALLENGE): State.CHALLENGED,
            (State.CHALLENGED, Trigger.RECEIVE_END): State.CHALLENGED,
            (State.CHALLENGED, Trigger.SEND_PROOF): State.DONE,
            (State.DONE, Trigger.RECEIVE_END): State.DONE,
        }
    )

    def __init__(self, identity: Identity, server_id: PeerId) -> None:
        super().__init__()
        self._identity = identity
        self._server_id = server_id
        self._nonce = b""

    def hello(self) -> bytes:
        return self._step(Trigger.SEND_HELLO, Hello())

    def _take(self, message: Message) -> tuple[Trigger, Event]:
        assert isinstance(message, Challenge)
        self._nonce = message.nonce
        return Trigger.RECEIVE_CHALLENGE, message

    def prove(self) -> bytes:
        """The PROOF frame answering the challenge; the client then ends the stream."""
        proof = Proof.sign(self._identity, self._server_id, self._nonce)
        return self._step(Trigger.SEND_PROOF, proof)


class ServerAuth(_StreamMachine):
    """The server side of the authentication stream: CHALLENGE on HELLO, then check the PROOF."""

    TRANSITIONS: ClassVar = _table(
        {
            (State.START, Trigger.RECEIVE_HELLO): State.CHALLENGED,
            (State.CHALLENGED, Trigger.SEND_CHALLENGE): State.WAIT_PROOF,
            (State.WAIT_PROOF, Trigger.RECEIVE_PROOF): State.DONE,
            (State.DONE, Trigger.RECEIVE_END): State.DONE,
        }
    )

    def __init__(self, server_id: PeerId, nonce: bytes) -> None:
        super().__init__()
        self._server_id = server_id
        self._challenge = Challenge(nonce)

    def _take(self, message: Message) -> tuple[Trigger, Event]:
        if isinstance(message, Hello):
            return Trigger.RECEIVE_HELLO, message
        assert isinstance(message, Proof)
        if not message.verify(self._server_id, self._challenge.nonce):
            raise ProtocolError(
                f"The proof from {message.peer_id} is not its signature of this connection's "
                "challenge: it was replayed, relayed or forged."
            )
        return Trigger.RECEIVE_PROOF, PeerAuthenticated(message.peer_id)

    def challenge(self) -> bytes:
        """The CHALLENGE frame answering the hello; the server then ends its side."""
        return self._step(Trigger.SEND_CHALLENGE, self._challenge)


class Requester(_StreamMachine):
    """The client side of a request stream: one REQUEST out; RESPONSE and its body in.

    A members body is PART frames, which `MembersReader` cuts: here it is content like a get's.
    """

    TRANSITIONS: ClassVar = _table(
        {
            (State.START, Trigger.SEND_REQUEST): State.WAIT_HEADER,
            (State.WAIT_HEADER, Trigger.RECEIVE_ALLOWED_CONTENT): State.RECEIVE_BODY,
            (State.WAIT_HEADER, Trigger.RECEIVE_ALLOWED_CATALOG): State.WAIT_CATALOG,
            (State.WAIT_HEADER, Trigger.RECEIVE_REFUSAL): State.DONE,
            (State.WAIT_HEADER, Trigger.RECEIVE_ALLOWED_INFO): State.WAIT_INFO,
            (State.WAIT_HEADER, Trigger.RECEIVE_ALLOWED_ANNOUNCE): State.DONE,
            (State.WAIT_HEADER, Trigger.RECEIVE_ALLOWED_SINCE): State.WAIT_NEWS,
            (State.WAIT_CATALOG, Trigger.RECEIVE_CATALOG): State.DONE,
            (State.WAIT_INFO, Trigger.RECEIVE_INFO): State.DONE,
            (State.WAIT_NEWS, Trigger.RECEIVE_NEWS): State.DONE,
            (State.RECEIVE_BODY, Trigger.RECEIVE_CONTENT): State.RECEIVE_BODY,
            (State.RECEIVE_BODY, Trigger.RECEIVE_END): State.DONE,
            (State.DONE, Trigger.RECEIVE_END): State.DONE,
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self._request: Request | None = None

    def send_request(self, request: Request) -> bytes:
        """The REQUEST frame; the client then ends its side of the stream."""
        wire = self._step(Trigger.SEND_REQUEST, request)
        self._request = request
        return wire

    def _take(self, message: Message) -> tuple[Trigger, Event]:
        if isinstance(message, Catalog):
            return Trigger.RECEIVE_CATALOG, message
        if isinstance(message, Info):
            return Trigger.RECEIVE_INFO, message
        if isinstance(message, News):
            return Trigger.RECEIVE_NEWS, message
        assert isinstance(message, ResponseHeader)
        if message.status != "allowed":
            return Trigger.RECEIVE_REFUSAL, message
        if isinstance(self._request, CatalogRequest):
            return Trigger.RECEIVE_ALLOWED_CATALOG, message
        if isinstance(self._request, RingsRequest | AboutRequest | HaveRequest):
            return Trigger.RECEIVE_ALLOWED_INFO, message
        if isinstance(self._request, AnnounceRequest):
            return Trigger.RECEIVE_ALLOWED_ANNOUNCE, message
        if isinstance(self._request, SinceRequest):
            return Trigger.RECEIVE_ALLOWED_SINCE, message
        return Trigger.RECEIVE_ALLOWED_CONTENT, message


class Responder(_StreamMachine):
    """The server side of a request stream: REQUEST in; RESPONSE and its body out."""

    TRANSITIONS: ClassVar = _table(
        {
            (State.START, Trigger.RECEIVE_REQUEST): State.SEND_HEADER,
            (State.START, Trigger.SEND_REFUSAL): State.DONE,
            (State.SEND_HEADER, Trigger.SEND_ALLOWED_CONTENT): State.SEND_BODY,
            (State.SEND_HEADER, Trigger.SEND_ALLOWED_CATALOG): State.SEND_CATALOG,
            (State.SEND_HEADER, Trigger.SEND_ALLOWED_INFO): State.SEND_INFO,
            (State.SEND_HEADER, Trigger.SEND_ALLOWED_ANNOUNCE): State.DONE,
            (State.SEND_HEADER, Trigger.SEND_ALLOWED_SINCE): State.SEND_NEWS,
            (State.SEND_HEADER, Trigger.SEND_REFUSAL): State.DONE,
            (State.SEND_HEADER, Trigger.RECEIVE_END): State.SEND_HEADER,
            (State.SEND_CATALOG, Trigger.SEND_CATALOG): State.DONE,
            (State.SEND_CATALOG, Trigger.RECEIVE_END): State.SEND_CATALOG,
            (State.SEND_INFO, Trigger.SEND_INFO): State.DONE,
            (State.SEND_INFO, Trigger.RECEIVE_END): State.SEND_INFO,
            (State.SEND_NEWS, Trigger.SEND_NEWS): State.DONE,
            (State.SEND_NEWS, Trigger.RECEIVE_END): State.SEND_NEWS,
            (State.SEND_BODY, Trigger.SEND_CONTENT): State.SEND_BODY,
            (State.SEND_BODY, Trigger.RECEIVE_END): State.SEND_BODY,
            (State.DONE, Trigger.RECEIVE_END): State.DONE,
        }
    )

    def __init__(self) -> None:
        super().__init__()
        self._request: Request | None = None

    def _take(self, message: Message) -> tuple[Trigger, Event]:
        assert isinstance(message, Request)
        self._request = message
        return Trigger.RECEIVE_REQUEST, message

    def send_header(self, header: ResponseHeader) -> bytes:
        """The RESPONSE frame; after `allowed`, the body must follow.

        A refusal may also go before the whole request has come (busy, or a broken request).
        """
        if header.status != "allowed":
            trigger = Trigger.SEND_REFUSAL
        elif isinstance(self._request, CatalogRequest):
            trigger = Trigger.SEND_ALLOWED_CATALOG
        elif isinstance(self._request, RingsRequest | AboutRequest | HaveRequest):
            trigger = Trigger.SEND_ALLOWED_INFO
        elif isinstance(self._request, AnnounceRequest):
            trigger = Trigger.SEND_ALLOWED_ANNOUNCE
        elif isinstance(self._request, SinceRequest):
            trigger = Trigger.SEND_ALLOWED_SINCE
        else:
            trigger = Trigger.SEND_ALLOWED_CONTENT
        return self._step(trigger, header)

    def send_catalog(self, catalog: Catalog) -> bytes:
        return self._step(Trigger.SEND_CATALOG, catalog)

    def send_info(self, info: Info) -> bytes:
        return self._step(Trigger.SEND_INFO, info)

    def send_news(self, news: News) -> bytes:
        return self._step(Trigger.SEND_NEWS, news)

    def send_data(self, data: bytes) -> bytes:
        """Bao stream bytes pass through unframed once an allowed get's header is sent (for a
        members request: PART frames, which the caller encoded)."""
        return self._step(Trigger.SEND_CONTENT, data)


class PathsChannel(_Machine):
    """Either side of the paths stream: CANDIDATES frames each way, as many as either sends,
    until the connection ends. The client opens it after authenticating."""

    FIRST_BYTE = _Type.CANDIDATES
    """A client stream whose first byte is this is the paths stream, not a request."""

    TRANSITIONS: ClassVar = _table(
        {
            (State.OPEN, Trigger.RECEIVE_CANDIDATES): State.OPEN,
            (State.OPEN, Trigger.SEND_CANDIDATES): State.OPEN,
        }
    )
    _INITIAL: ClassVar = State.OPEN

    def __init__(self) -> None:
        super().__init__()
        self._reader = _FrameReader()

    def receive_data(self, data: bytes) -> list[Candidates]:
        with self._receiving():
            self._reader.feed(data)
            found: list[Candidates] = []
            while (frame := self._reader.next_frame({_Type.CANDIDATES})) is not None:
                message = _decode_body(*frame)
                assert isinstance(message, Candidates)
                found.append(message)
            return found

    def send(self, candidates: Candidates) -> bytes:
        return self._step(Trigger.SEND_CANDIDATES, candidates)


class MembersReader(_Machine):
    """Cuts the body of an allowed members response into `MemberData`, one member after another.

    The Requester hands a members body on as plain `Data`; this machine takes those bytes and
    knows, from the number of members asked for, when the body must end. Raises ProtocolError
    on a bad frame, on bytes after the last member, and (`finish`) on a body that ended early.
    """

    TRANSITIONS: ClassVar = _table(
        {
            (State.RECEIVE_BODY, Trigger.RECEIVE_PART): State.RECEIVE_BODY,
            (State.RECEIVE_BODY, Trigger.RECEIVE_LAST_PART): State.DONE,
            (State.DONE, Trigger.RECEIVE_END): State.DONE,
        }
    )
    _INITIAL: ClassVar = State.RECEIVE_BODY

    def __init__(self, count: int) -> None:
        if count < 1:
            raise LocalProtocolError("A members request asks for at least one member.")
        super().__init__()
        self._count = count
        self._position = 0
        self._buffer = bytearray()
        self._at = 0

    @property
    def done(self) -> bool:
        """True once every member asked for has ended."""
        return self._state is State.DONE

    def feed(self, data: bytes) -> list[MemberData]:
        """The member bytes in the next piece of the body."""
        with self._receiving():
            return self._feed(data)

    def _feed(self, data: bytes) -> list[MemberData]:
        if self._at:
            del self._buffer[: self._at]
            self._at = 0
        self._buffer += data
        buffer, at, events = self._buffer, 0, []
        head = _FRAME_HEAD.size
        while len(buffer) - at >= head:
            if self._state is not State.RECEIVE_BODY:
                raise ProtocolError("The peer sent more than the members asked for.")
            kind, length = _FRAME_HEAD.unpack_from(buffer, at)
            if kind != _Type.PART:
                raise ProtocolError(f"The peer sent a frame of type {kind:#04x} where it may not.")
            if length > _MAX_BODY[_Type.PART]:
                raise ProtocolError(
                    f"The peer sent a part of {length} bytes, more than {_MAX_BODY[_Type.PART]}."
                )
            end = at + head + length
            if len(buffer) < end:
                break
            try:
                part = _parse_part(memoryview(buffer)[at + head : end])
            except LocalProtocolError as error:
                raise ProtocolError(f"The peer sent an invalid part: {error}") from None
            events.append(MemberData(self._position, part.data, part.last, part.missing))
            if part.last:
                self._position += 1
            ends_all = self._position == self._count
            trigger = Trigger.RECEIVE_LAST_PART if ends_all else Trigger.RECEIVE_PART
            self._state = self.TRANSITIONS[self._state, trigger]
            at = end
        self._at = at
        return events

    def finish(self) -> None:
        """The body ended: raises unless every member did, and nothing is left over."""
        with self._receiving():
            following = self._next(Trigger.RECEIVE_END)
            if following is None or len(self._buffer) > self._at:
                raise ProtocolError(
                    f"The peer ended a members response after {self._position} of "
                    f"{self._count} members."
                )
            self._state = following
