"""A node's signed address record in iroh's pkarr format, without I/O: encoding, signing,
verifying and reading. The layout follows iroh-dns (`iroh-dns/src/pkarr.rs`, `attrs.rs`,
`endpoint_info.rs`, n0-computer/iroh at v1.0.3, the same in the iroh-dns 1.4.1 crate):

    signed packet = public key (32) | signature (64) | timestamp (8, big-endian µs) | DNS packet
    signature     = Ed25519 over b"3:seqi<timestamp>e1:v<len(DNS packet)>:" + DNS packet (BEP 44)
    DNS packet    = a response (id 0, flags QR only, no question), at most 1000 bytes, names
                    compressed, whose answers are TXT records `_iroh.<z-base-32 key>`, one
                    `key=value` string each: `relay=<URL>`, then `addr=<ip:port>` per address.

A pkarr relay stores and serves the packet without its key (the URL names it): the *payload*.
iroh refuses a whole `_iroh` record if one of its keys is unknown, so this module reads it the
same way, and anything ringdrop might add later goes under another name.
"""

from __future__ import annotations

import base64
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from ringdrop.errors import InvalidRecordError, TicketError
from ringdrop.identity import Identity, PeerId, verify
from ringdrop.ticket import Address, check_relay_url

__all__ = [
    "MAX_DNS_PACKET",
    "MAX_PAYLOAD",
    "RECORD_NAME",
    "Record",
    "dns_name",
    "parse_txt",
    "sign",
    "verify_payload",
    "z32_decode",
    "z32_encode",
]

RECORD_NAME = "_iroh"
MAX_DNS_PACKET = 1000
_KEY, _SIGNATURE, _TIMESTAMP = 32, 64, 8
_HEADER = _KEY + _SIGNATURE + _TIMESTAMP
MAX_PAYLOAD = _SIGNATURE + _TIMESTAMP + MAX_DNS_PACKET
"""The largest body a pkarr relay may answer with (the packet without its key)."""
MAX_ADDRESSES = 16
"""Addresses read from one record; more are ignored (a record's size allows about 40)."""
DEFAULT_TTL = 30  # iroh's DEFAULT_PKARR_TTL, seconds

# z-base-32 (Zooko's human-oriented base32) is RFC 4648 base32 with another alphabet; pkarr
# and iroh write keys with it (52 characters for 32 bytes, no padding).
_RFC4648 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_Z32 = "ybndrfg8ejkmcpqxot1uwisza345h769"
_TO_Z32 = str.maketrans(_RFC4648, _Z32)
_FROM_Z32 = str.maketrans(_Z32, _RFC4648)
_ATTRIBUTES = ("relay", "addr", "user-data")  # iroh's IrohAttr; user-data is read and unused


def z32_encode(data: bytes) -> str:
    return base64.b32encode(data).decode("ascii").rstrip("=").translate(_TO_Z32)


def z32_decode(text: str) -> bytes:
    """Inverts `z32_encode`; ValueError for a character outside the alphabet."""
    if not set(text) <= set(_Z32):
        raise ValueError(f"{text!r} is not z-base-32")
    upper = text.translate(_FROM_Z32)
    return base64.b32decode(upper + "=" * (-len(upper) % 8))


def dns_name(peer_id: PeerId, origin: str | None = None) -> str:
    """`_iroh.<z32 key>`, under `origin` (a DNS server's zone) if given."""
    name = f"{RECORD_NAME}.{z32_encode(peer_id.raw)}"
    return f"{name}.{origin.strip('.')}" if origin else name


@dataclass(frozen=True)
class Record:
    """What a node says about how to reach it: its home relay and, if it chose to publish them,
    its addresses. `timestamp` (µs since the epoch) orders records; `ttl` is how long (s) a
    reader may keep it."""

    peer_id: PeerId
    relay: str | None
    addresses: tuple[Address, ...] = ()
    timestamp: int = 0
    ttl: int = DEFAULT_TTL

    @property
    def empty(self) -> bool:
        return self.relay is None and not self.addresses

    def strings(self) -> list[str]:
        """The TXT strings, in iroh's order (its attributes sorted: relay before addr)."""
        relay = [f"relay={self.relay}"] if self.relay is not None else []
        return relay + [f"addr={address}" for address in self.addresses]

    def describe(self) -> str:
        parts = ([f"relay {self.relay}"] if self.relay else []) + [str(a) for a in self.addresses]
        return ", ".join(parts) or "nothing"


def sign(identity: Identity, record: Record) -> bytes:
    """The signed packet of `record` (which must be `identity`'s), its key first."""
    # dnspython is imported where it is used: it takes long to load, and most commands never
    # sign or read a record.
    import dns.flags
    import dns.message
    import dns.name
    import dns.rdataclass
    import dns.rdatatype
    import dns.rdtypes.ANY.TXT

    if record.peer_id != identity.peer_id:
        raise ValueError("a node signs only its own record")
    message = dns.message.Message(id=0)
    message.flags = dns.flags.QR
    name = dns.name.from_text(dns_name(record.peer_id))
    rrset = message.find_rrset(
        message.answer, name, dns.rdataclass.IN, dns.rdatatype.TXT, create=True
    )
    for text in record.strings():
        txt = dns.rdtypes.ANY.TXT.TXT(dns.rdataclass.IN, dns.rdatatype.TXT, [text.encode()])
        rrset.add(txt, record.ttl)
    packet = message.to_wire(want_shuffle=False)  # dnspython shuffles by default
    if len(packet) > MAX_DNS_PACKET:
        raise InvalidRecordError(
            f"The address record would be {len(packet)} bytes, and a record holds at most "
            f"{MAX_DNS_PACKET}: publish fewer addresses."
        )
    signature = identity.sign(_signable(record.timestamp, packet))
    return record.peer_id.raw + signature + record.timestamp.to_bytes(_TIMESTAMP, "big") + packet


def verify_payload(peer_id: PeerId, payload: bytes) -> Record:
    """The record in a pkarr relay's answer for `peer_id` (signature, timestamp, DNS packet),
    or `InvalidRecordError` saying why it cannot be used."""
    import dns.exception
    import dns.message
    import dns.name
    import dns.rdatatype

    if len(payload) > MAX_PAYLOAD:
        raise InvalidRecordError(
            f"the record is {len(payload)} bytes, more than the {MAX_PAYLOAD} a record may have"
        )
    if len(payload) < _HEADER - _KEY:
        raise InvalidRecordError(f"the record is cut short ({len(payload)} bytes)")
    signature, stamp, packet = payload[:64], payload[64:72], payload[72:]
    timestamp = int.from_bytes(stamp, "big")
    if not verify(peer_id, _signable(timestamp, packet), signature):
        raise InvalidRecordError(
            f"the record is not signed by {peer_id.short()}… (forged, or another key's)"
        )
    try:
        message = dns.message.from_wire(packet)
    except (dns.exception.DNSException, ValueError) as error:
        raise InvalidRecordError(f"the record's DNS packet cannot be read ({error})") from None
    name = dns.name.from_text(dns_name(peer_id))
    strings = [
        b"".join(txt.strings)
        for rrset in message.answer
        if rrset.name == name and rrset.rdtype == dns.rdatatype.TXT
        for txt in rrset
    ]
    ttls = [rrset.ttl for rrset in message.answer if rrset.name == name]
    relay, addresses = parse_txt(strings)
    return Record(peer_id, relay, addresses, timestamp, min(ttls, default=DEFAULT_TTL))


def parse_txt(strings: Iterable[bytes]) -> tuple[str | None, tuple[Address, ...]]:
    """The relay and addresses in an `_iroh` record's TXT strings (from a signed packet or a
    DNS answer), read as iroh reads them: `key=value`, the value ending at a second `=`, any
    unknown key refusing the whole record; an unreadable relay or address is skipped."""
    relays: list[str] = []
    addresses: list[Address] = []
    for raw in strings:
        try:
            text = raw.decode()
        except UnicodeDecodeError:
            raise InvalidRecordError("the record holds text that is not UTF-8") from None
        key, equals, rest = text.partition("=")
        if not equals:
            raise InvalidRecordError(f"the record holds {text[:40]!r}, not key=value")
        if key not in _ATTRIBUTES:
            raise InvalidRecordError(f"the record holds an unknown attribute {key[:40]!r}")
        value = rest.partition("=")[0]
        if key == "relay":
            relays.append(value)
        elif key == "addr" and len(addresses) < MAX_ADDRESSES:
            address = _address(value)
            if address is not None and address not in addresses:
                addresses.append(address)
    relay = next((url for url in relays if _relay_ok(url)), None)
    return relay, tuple(addresses)


def _signable(timestamp: int, packet: bytes) -> bytes:
    return b"3:seqi%de1:v%d:" % (timestamp, len(packet)) + packet


def _relay_ok(url: str) -> bool:
    try:
        check_relay_url(url)
    except TicketError:
        return False
    return True


def _address(text: str) -> Address | None:
    """`ip:port` or `[ipv6]:port` as Rust's SocketAddr writes them; None if it is not one."""
    host, colon, port = text.rpartition(":")
    if not colon or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id is not None:
        return None
    return Address(ip, int(port))
