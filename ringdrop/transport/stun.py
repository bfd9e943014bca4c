"""A sans-IO STUN binding codec (RFC 8489, formerly 5389): the request that asks a STUN server
for this node's server-reflexive address, and the parser of its answer. No socket, no clock.

Written here rather than taken from `aioice.stun` (aiortc's ICE library, by aioquic's author),
after reading its `parse_message`: it brings dnspython and ifaddr for a codec we need about a
hundred lines of; it does not check the magic cookie; and it raises on junk with several
exception types (`ValueError`, `UnicodeDecodeError` from a bad SOFTWARE attribute,
`struct.error` from a short numeric one) while silently accepting an attribute cut short by the
end of the datagram. A STUN parser on a socket that also carries QUIC and probes from anyone
must be total: `parse_binding_response` returns None for anything but a well-formed binding
success answering our transaction, and never raises.
"""

from __future__ import annotations

import ipaddress
import os
import struct

__all__ = ["MAGIC_COOKIE", "binding_request", "is_stun", "parse_binding_response"]

MAGIC_COOKIE = 0x2112A442
_COOKIE_BYTES = MAGIC_COOKIE.to_bytes(4, "big")
_HEADER = struct.Struct("!HHI12s")
_HEADER_SIZE = _HEADER.size  # 20
_BINDING_REQUEST = 0x0001
_BINDING_SUCCESS = 0x0101
_MAPPED_ADDRESS = 0x0001
_XOR_MAPPED_ADDRESS = 0x0020
_FAMILY_SIZES = {0x01: 4, 0x02: 16}


def binding_request() -> tuple[bytes, bytes]:
    """A fresh binding request with no attributes: (transaction id, datagram to send)."""
    transaction_id = os.urandom(12)
    return transaction_id, _HEADER.pack(_BINDING_REQUEST, 0, MAGIC_COOKIE, transaction_id)


def is_stun(data: bytes) -> bool:
    """Whether a datagram looks like STUN (RFC 8489 §6): the two top bits of the first byte are
    zero and bytes 4 to 7 are the magic cookie. A QUIC packet never matches: its first bit is 1
    (long header) or its second is 1 (short header's fixed bit)."""
    return len(data) >= _HEADER_SIZE and data[0] & 0xC0 == 0 and data[4:8] == _COOKIE_BYTES


def parse_binding_response(data: bytes, transaction_id: bytes) -> tuple[str, int] | None:
    """The mapped address (host, port) of a binding success response to `transaction_id`:
    XOR-MAPPED-ADDRESS if present, else MAPPED-ADDRESS (servers of RFC 3489's time). None for
    anything else: another message type or transaction, a length that disagrees with the
    datagram, an attribute running past the end, an unknown family or a wrong address size."""
    if not is_stun(data):
        return None
    message_type, length, _, received_id = _HEADER.unpack_from(data)
    if message_type != _BINDING_SUCCESS or received_id != transaction_id:
        return None
    if length % 4 or _HEADER_SIZE + length != len(data):
        return None
    xor_mapped: bytes | None = None
    mapped: bytes | None = None
    offset = _HEADER_SIZE
    while offset < len(data):  # a multiple of 4 below a multiple of 4: an attribute header fits
        kind, size = struct.unpack_from("!HH", data, offset)
        end = offset + 4 + size
        if end > len(data):
            return None
        value = data[offset + 4 : end]
        if kind == _XOR_MAPPED_ADDRESS and xor_mapped is None:
            xor_mapped = value
        elif kind == _MAPPED_ADDRESS and mapped is None:
            mapped = value
        offset = end + (-size % 4)
    if xor_mapped is not None:
        return _address(xor_mapped, _COOKIE_BYTES + transaction_id)
    if mapped is not None:
        return _address(mapped, b"")
    return None


def _address(value: bytes, mask: bytes) -> tuple[str, int] | None:
    """Decodes a (XOR-)MAPPED-ADDRESS value; `mask` is the cookie and transaction id for the
    XOR form (the port uses its first two bytes, IPv4 its first four, IPv6 all 16), empty for
    the plain one."""
    if len(value) < 4:
        return None
    family = value[1]
    size = _FAMILY_SIZES.get(family)
    if size is None or len(value) != 4 + size:
        return None
    raw = value[2:]
    if mask:
        raw = bytes(byte ^ key for byte, key in zip(raw, mask[:2] + mask[:size], strict=True))
    port = int.from_bytes(raw[:2], "big")
    host = ipaddress.IPv4Address(raw[2:]) if size == 4 else ipaddress.IPv6Address(raw[2:])
    return str(host), port
