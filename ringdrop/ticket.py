"""Tickets: what a sharer hands a receiver, as short copy-safe `rdrop:` text.

tickets/SPEC.md specifies the format byte by byte; tickets/vectors.json holds its test vectors.
Writers write version 3 (direct addresses and a home relay URL both optional — a ticket that
names only the key is found by discovery — and, for a single file, its time and executable bit);
readers read versions 1 to 3. Each older version is a newer one with fewer fields allowed, so one
reader serves all three.
"""

from __future__ import annotations

import math
import struct
import unicodedata
import zlib
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Literal, NamedTuple, get_args
from urllib.parse import urlsplit

from ringdrop.errors import InvalidTicketError, TicketError
from ringdrop.identity import PeerId, base32_decode, base32_encode, first_non_base32

__all__ = [
    "MAX_NAME_BYTES",
    "MAX_RELAY_BYTES",
    "PREFIX",
    "VERSION",
    "Address",
    "Format",
    "Ticket",
    "check_relay_url",
    "encode_varint",
]

PREFIX = "rdrop:"
VERSION = 3
MAX_NAME_BYTES = 255
MAX_RELAY_BYTES = 255

Format = Literal["blob", "collection"]
"""How content is read, in every layer: `blob`, the root of the bytes of one file; `collection`,
the root of a collection (a folder: its members' names and roots), whose members come with it.
On the wire it is a code (SPEC.md); the database spells `blob` as 'raw' (`ringdrop.store.tags`).
"""

_FORMATS: tuple[Format, ...] = get_args(Format)
_FORMAT_BITS = 0b0000_0011
_HAS_SIZE = 0b0000_0100
_HAS_NAME = 0b0000_1000
_HAS_RELAY = 0b0001_0000
_HAS_FILE = 0b0010_0000
# The flag bits each version defines; the others are reserved and must be zero.
_KNOWN_FLAGS = {
    1: _FORMAT_BITS | _HAS_SIZE | _HAS_NAME,
    2: _FORMAT_BITS | _HAS_SIZE | _HAS_NAME | _HAS_RELAY,
    3: _FORMAT_BITS | _HAS_SIZE | _HAS_NAME | _HAS_RELAY | _HAS_FILE,
}
# The file metadata field's own flags (version 3).
_EXECUTABLE = 0b01
_HAS_MTIME = 0b10
_MTIME = struct.Struct(">q")
_RELAY_SCHEMES = ("http://", "https://")
_IP_BYTES = {4: 4, 6: 16}  # address family tag (the IP version) -> length of the address
_CHECKSUM_BYTES = 4
# version, flags, peer id, hash, address count (0: the key alone, version 3), checksum
_SHORTEST_BYTES = 1 + 1 + 32 + 32 + 1 + _CHECKSUM_BYTES
_SHORTEST_CHARS = len(PREFIX) + math.ceil(_SHORTEST_BYTES * 8 / 5)
_FAULTY = "it was made by faulty software. Ask the sharer for a new ticket."
_UPGRADE = "it was made by a newer ringdrop. Upgrade ringdrop and try again."


class Address(NamedTuple):
    """An IP address and UDP port at which the sharer listens."""

    ip: IPv4Address | IPv6Address
    port: int

    def __str__(self) -> str:
        return f"[{self.ip}]:{self.port}" if self.ip.version == 6 else f"{self.ip}:{self.port}"


@dataclass(frozen=True, slots=True)
class Ticket:
    """Who shares what, and where to reach them: direct addresses, a home relay, both, or
    neither (then the sharer is found by its key alone, through discovery).

    A blob's ticket may carry the file's modification time and executable bit; a collection
    carries its files' own, so its ticket carries none."""

    peer_id: PeerId
    addresses: tuple[Address, ...]
    content_hash: bytes
    format: Format = "blob"
    name: str | None = None
    size: int | None = None
    relay: str | None = None
    mtime_ns: int | None = None
    """The file's modification time, nanoseconds since the Unix epoch (blob tickets only)."""
    executable: bool = False
    """Whether the file is executable (blob tickets only)."""

    def __post_init__(self) -> None:
        if len(self.content_hash) != 32:
            raise InvalidTicketError("hash", "A content hash is 32 bytes long.")
        if len(self.addresses) > 255:
            raise InvalidTicketError("address", "A ticket holds at most 255 addresses.")
        for address in self.addresses:
            _check_address(address)
        if self.relay is not None:
            check_relay_url(self.relay)
        if self.name is not None:
            _check_name(self.name)
        if self.size is not None and not 0 <= self.size < 1 << 64:
            raise InvalidTicketError(
                "size", f"A size must fit in 64 bits, and {self.size} does not."
            )
        if self.mtime_ns is not None and not -(1 << 63) <= self.mtime_ns < 1 << 63:
            raise InvalidTicketError(
                "file", f"A modification time must fit in 64 bits, and {self.mtime_ns} does not."
            )
        if self.format != "blob" and self.has_file_metadata:
            raise InvalidTicketError(
                "file",
                "Only a single file's ticket carries a time and an executable bit; a folder's "
                "files carry their own.",
            )

    @property
    def has_file_metadata(self) -> bool:
        return self.executable or self.mtime_ns is not None

    @property
    def key_only(self) -> bool:
        """Whether the ticket names no way to reach the sharer but its key (discovery)."""
        return not self.addresses and self.relay is None

    def encode(self) -> str:
        """The ticket's text: `rdrop:` and lowercase base32, the one text of this ticket."""
        flags = _FORMATS.index(self.format)
        flags |= _HAS_SIZE if self.size is not None else 0
        flags |= _HAS_NAME if self.name is not None else 0
        flags |= _HAS_RELAY if self.relay is not None else 0
        flags |= _HAS_FILE if self.has_file_metadata else 0
        out = bytearray([VERSION, flags])
        out += self.peer_id.raw + self.content_hash
        if self.size is not None:
            out += encode_varint(self.size)
        out.append(len(self.addresses))
        for ip, port in self.addresses:
            out.append(ip.version)
            out += ip.packed + port.to_bytes(2, "big")
        if self.relay is not None:
            relay = self.relay.encode("ascii")
            out.append(len(relay))
            out += relay
        if self.name is not None:
            name = self.name.encode()
            out.append(len(name))
            out += name
        if self.has_file_metadata:
            file_flags = (_EXECUTABLE if self.executable else 0) | (
                _HAS_MTIME if self.mtime_ns is not None else 0
            )
            out.append(file_flags)
            if self.mtime_ns is not None:
                out += _MTIME.pack(self.mtime_ns)
        out += _checksum(out)
        return PREFIX + base32_encode(bytes(out))

    @classmethod
    def decode(cls, text: str) -> Ticket:
        """Read a ticket as a person pastes it; any other text raises `InvalidTicketError`.

        Surrounding whitespace and upper case are accepted.
        """
        payload = _payload(text.strip())
        reader = _Reader(payload)
        version = reader.byte("header")
        if version > VERSION:
            raise InvalidTicketError(
                "version",
                f"This is a version {version} ticket, and this ringdrop reads only "
                f"versions 1 to {VERSION}: {_UPGRADE}",
            )
        if version not in _KNOWN_FLAGS:
            raise InvalidTicketError(
                "version",
                f"The ticket claims version {version}, which no ringdrop writes: {_FAULTY}",
            )
        flags = reader.byte("header")
        if flags & ~_KNOWN_FLAGS[version]:
            raise InvalidTicketError(
                "flags", f"The ticket uses features this ringdrop does not know: {_UPGRADE}"
            )
        if (flags & _FORMAT_BITS) >= len(_FORMATS):
            raise InvalidTicketError(
                "format",
                f"The ticket is for a kind of content this ringdrop does not know: {_UPGRADE}",
            )
        raw_peer_id = reader.take(32, "peer id")
        try:
            peer_id = PeerId(raw_peer_id)
        except TicketError:
            raise InvalidTicketError(
                "peer_id", f"The sharer's peer id in the ticket is not an Ed25519 key: {_FAULTY}"
            ) from None
        content_hash = reader.take(32, "content hash")
        size = reader.size() if flags & _HAS_SIZE else None
        addresses = tuple(reader.address() for _ in range(reader.byte("address list")))
        relay = reader.relay() if flags & _HAS_RELAY else None
        name = reader.name() if flags & _HAS_NAME else None
        format = _FORMATS[flags & _FORMAT_BITS]
        executable, mtime_ns = reader.file(format) if flags & _HAS_FILE else (False, None)
        reader.finish()
        if version < 3 and not addresses and relay is None:
            raise InvalidTicketError(
                "no_addresses",
                "The ticket names neither an address nor a relay through which to reach the "
                f"sharer: {_FAULTY}",
            )
        return cls(
            peer_id, addresses, content_hash, format, name, size, relay, mtime_ns, executable
        )


def _payload(text: str) -> bytes:
    """The checked bytes of a stripped ticket text, without their checksum."""
    if text[: len(PREFIX) + 2].lower() == PREFIX + "//":
        raise InvalidTicketError(
            "prefix",
            "This is a ticket of the older ringdrop written in Rust, which this ringdrop cannot "
            "read. Ask the sharer for a ticket from this ringdrop.",
        )
    if text[: len(PREFIX)].lower() != PREFIX:
        raise InvalidTicketError(
            "prefix",
            f"A ticket starts with {PREFIX!r}, and this text does not. "
            "Copy the whole ticket again.",
        )
    body = text[len(PREFIX) :]
    bad = first_non_base32(body)
    if bad is not None:
        raise InvalidTicketError(
            "character",
            f"Character {len(PREFIX) + bad + 1} of the ticket is {body[bad]!a}, "
            "which no ticket contains (tickets use only the letters a-z and the digits 2-7). "
            "Copy the ticket again.",
        )
    if len(body) % 8 in (1, 3, 6):
        raise InvalidTicketError(
            "length",
            f"No ticket has {len(text)} characters: it was cut short, or a character was lost or "
            "added in copy-paste. Copy the whole ticket again.",
        )
    body = body.lower()
    data = base32_decode(body)
    payload, checksum = data[:-_CHECKSUM_BYTES], data[-_CHECKSUM_BYTES:]
    if len(data) <= _CHECKSUM_BYTES or _checksum(payload) != checksum:
        if len(data) < _SHORTEST_BYTES:
            raise InvalidTicketError(
                "truncated",
                f"The ticket is cut short: it has {len(text)} characters, and the shortest ticket "
                f"has {_SHORTEST_CHARS}. Copy the whole ticket again.",
            )
        raise InvalidTicketError(
            "mangled",
            "The ticket was changed or cut short in copy-paste: its checksum does not match. "
            "Copy the whole ticket again.",
        )
    if base32_encode(data) != body:
        raise InvalidTicketError(
            "mangled",
            "The ticket was changed in copy-paste: its last character is wrong. "
            "Copy the whole ticket again.",
        )
    return payload


class _Reader:
    """Reads the fields of a payload whose checksum is good, so every fault is the writer's."""

    def __init__(self, payload: bytes) -> None:
        self._payload = payload
        self._at = 0

    def take(self, count: int, field: str) -> bytes:
        if self._at + count > len(self._payload):
            raise InvalidTicketError("truncated", f"The ticket ends inside its {field}: {_FAULTY}")
        self._at += count
        return self._payload[self._at - count : self._at]

    def byte(self, field: str) -> int:
        return self.take(1, field)[0]

    def size(self) -> int:
        """An unsigned LEB128 integer below 2**64 in its shortest form."""
        value = 0
        for index in range(10):
            byte = self.byte("size")
            value |= (byte & 0x7F) << (7 * index)
            if byte < 0x80:
                if (byte == 0 and index > 0) or value >= 1 << 64:
                    break
                return value
        raise InvalidTicketError(
            "size", f"The ticket's size is not written as it must be: {_FAULTY}"
        )

    def address(self) -> Address:
        family = self.byte("address list")
        if family not in _IP_BYTES:
            raise InvalidTicketError(
                "address",
                f"The ticket holds an address of a kind this ringdrop does not know "
                f"(family {family}): {_UPGRADE}",
            )
        ip = ip_address(self.take(_IP_BYTES[family], "address list"))
        return Address(ip, int.from_bytes(self.take(2, "address list"), "big"))

    def relay(self) -> str:
        raw = self.take(self.byte("relay URL"), "relay URL")
        try:
            url = raw.decode("ascii")
        except UnicodeDecodeError:
            raise InvalidTicketError(
                "relay", f"The ticket's relay URL is not ASCII: {_FAULTY}"
            ) from None
        problem = _relay_problem(url)
        if problem is not None:
            raise InvalidTicketError(
                "relay", f"The ticket's relay URL {url!r} {problem}: {_FAULTY}"
            )
        return url

    def name(self) -> str:
        raw = self.take(self.byte("name"), "name")
        try:
            return raw.decode()
        except UnicodeDecodeError:
            raise InvalidTicketError("name", f"The ticket's name is not UTF-8: {_FAULTY}") from None

    def file(self, format: Format) -> tuple[bool, int | None]:
        """A single file's metadata: (executable, modification time in ns or None)."""
        if format != "blob":
            raise InvalidTicketError(
                "file", f"A folder's ticket carries a single file's time and mode: {_FAULTY}"
            )
        flags = self.byte("file metadata")
        if flags & ~(_EXECUTABLE | _HAS_MTIME):
            raise InvalidTicketError(
                "flags",
                f"The ticket's file metadata uses features this ringdrop does not know: {_UPGRADE}",
            )
        if not flags:
            raise InvalidTicketError(
                "file", f"The ticket's file metadata field is present but empty: {_FAULTY}"
            )
        mtime_ns = None
        if flags & _HAS_MTIME:
            (mtime_ns,) = _MTIME.unpack(self.take(_MTIME.size, "file metadata"))
        return bool(flags & _EXECUTABLE), mtime_ns

    def finish(self) -> None:
        if self._at != len(self._payload):
            raise InvalidTicketError(
                "trailing_bytes", f"The ticket goes on after its last field: {_FAULTY}"
            )


def _checksum(payload: bytes | bytearray) -> bytes:
    return zlib.crc32(payload).to_bytes(_CHECKSUM_BYTES, "big")


def encode_varint(value: int) -> bytes:
    """`value` as unsigned LEB128, shortest form (the ticket's size, the protocol's members)."""
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _check_address(address: Address) -> None:
    if not 1 <= address.port <= 65535:
        raise InvalidTicketError(
            "address", f"The sharer's address {address} has no usable port: {_FAULTY}"
        )
    if isinstance(address.ip, IPv6Address) and address.ip.scope_id is not None:
        raise InvalidTicketError(
            "address",
            f"The address {address} only means something on the sharer's own network "
            "link, so a ticket cannot carry it.",
        )


def _check_name(name: str) -> None:
    try:
        size = len(name.encode())
    except UnicodeEncodeError:
        raise InvalidTicketError("name", f"The name {name!r} cannot be written as UTF-8.") from None
    if not 1 <= size <= MAX_NAME_BYTES:
        raise InvalidTicketError(
            "name",
            f"A ticket's name is 1 to {MAX_NAME_BYTES} bytes of UTF-8, and {name!r} has {size}.",
        )
    if any(unicodedata.category(char) == "Cc" for char in name):
        raise InvalidTicketError(
            "name", f"The name {name!r} holds control characters, which a ticket may not carry."
        )


def check_relay_url(url: str) -> str:
    """`url` if a ticket may carry it as its relay, else `InvalidTicketError` of kind `relay`.

    That is: 1 to 255 printable ASCII characters (no white space), `http://` or `https://` in
    lower case, a host, no user name or password, and a port from 1 to 65535 if one is given.
    """
    problem = _relay_problem(url)
    if problem is not None:
        raise InvalidTicketError("relay", f"The relay URL {url!r} {problem}.")
    return url


def _relay_problem(url: str) -> str | None:
    """What is wrong with `url` as a relay URL, as the end of a sentence, or None."""
    if not all(" " < char < "\x7f" for char in url):
        return "holds white space, control characters or non-ASCII characters"
    if not 1 <= len(url) <= MAX_RELAY_BYTES:
        return f"is not 1 to {MAX_RELAY_BYTES} characters long"
    if not url.startswith(_RELAY_SCHEMES):
        return "does not start with http:// or https://"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        return f"cannot be read ({error})"
    if "@" in parts.netloc:
        return "names a user or password, which a relay URL may not carry"
    if not parts.hostname:
        return "names no host"
    if port == 0:
        return "names port 0"
    return None
