"""Admission to the serving port: which datagrams may cost the server a connection's state.

Anyone can send UDP datagrams to a sharer, with any source address. A QUIC connection is costly
(TLS state, keys, timers: 0.1 to 0.3 ms of CPU to build, and memory until it ends), so a client's
first Initial packet only earns one within these bounds:

- A stateless pre-filter (`parse_initial`) drops whatever cannot be a client's first Initial of
  QUIC v1: wrong bits or version, a datagram under QUIC's 1200 bytes, impossible lengths.
- Connections not yet authenticated ("half-open") are capped in total. Those whose client has
  not proved its address may take at most half of that cap, and are admitted at a bounded rate;
  beyond either, the client must first answer a Retry (RFC 9000 §8.1.2): the server keeps
  nothing and sends a token that is an HMAC over the client's address, its original connection
  id, the Retry's connection id and the time. Only a client that receives datagrams at that
  address can bring it back. A blind flood from forged addresses therefore costs one HMAC and
  one small reply per datagram once that half is taken (Retries are rate-limited too), and the
  other half of the slots stays for clients that prove their address.
- Connections whose client has proved its address are capped per source host, so one host
  cannot take all the half-open slots that honest clients are guaranteed. (Unproved ones are
  not counted per host: their address could be anyone's, and a forger would lock its owner out.)

The server (`_server.py`) holds a `HalfOpen` per admitted connection until the peer proves its
key or the connection ends, and gives up on a handshake after `Limits.handshake_timeout`.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import os
import struct
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ringdrop.transport._backend import quic_varint

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "Admission",
    "AdmissionLimits",
    "Admit",
    "HalfOpen",
    "InitialHeader",
    "PerSource",
    "RetryTokens",
    "TokenBucket",
    "host_key",
    "parse_initial",
    "retry_packet",
]

QUIC_V1 = 1
MIN_INITIAL_DATAGRAM = 1200  # RFC 9000 §14.1: a client pads its Initial datagrams to this
MIN_CLIENT_CID = 8  # RFC 9000 §7.2: a client's first destination id is at least 8 bytes
MAX_CID = 20
RETRY_CID_LENGTH = 8  # the length both libraries give the server's own connection ids

# RFC 9001 §5.8: the fixed key and nonce of a QUIC v1 Retry packet's integrity tag.
_RETRY_KEY = bytes.fromhex("be0c690b9f66575a1d766b54e368c84e")
_RETRY_NONCE = bytes.fromhex("461599d35d632bf2239825bb")

_TOKEN_MAGIC = b"rdT1"  # tells our tokens from other servers' and from NEW_TOKEN ones
_MAC_BYTES = 16
_TOKEN_DOMAIN = b"ringdrop retry token v1\x00"


@dataclass(frozen=True, slots=True)
class InitialHeader:
    """The clear-text fields of a client's Initial packet that admission reads."""

    destination: bytes
    source: bytes
    token: bytes


def parse_initial(data: bytes) -> InitialHeader | None:
    """The header of `data` if it can be a client's first-flight QUIC v1 Initial, else None.

    Reads a few header bytes and no more: this runs for every datagram to an unknown connection.
    """
    if len(data) < MIN_INITIAL_DATAGRAM:
        return None
    # Long header (0x80), fixed bit (0x40), packet type Initial (0x30 clear).
    if data[0] & 0xF0 != 0xC0 or data[1:5] != b"\x00\x00\x00\x01":
        return None
    dcid_length = data[5]
    if not MIN_CLIENT_CID <= dcid_length <= MAX_CID:
        return None
    at = 6 + dcid_length
    destination = data[6:at]
    scid_length = data[at]
    if scid_length > MAX_CID:
        return None
    source = data[at + 1 : at + 1 + scid_length]
    at += 1 + scid_length
    token_length, at = quic_varint(data, at)
    if token_length < 0 or at + token_length > len(data):
        return None
    return InitialHeader(destination, source, data[at : at + token_length])


def retry_packet(header: InitialHeader, retry_cid: bytes, token: bytes) -> bytes:
    """A QUIC v1 Retry packet answering the Initial `header` (RFC 9000 §17.2.5, RFC 9001 §5.8)."""
    # The first byte's low four bits are unused; the client ignores them.
    packet = (
        b"\xf0"
        + struct.pack("!I", QUIC_V1)
        + bytes([len(header.source)])
        + header.source
        + bytes([len(retry_cid)])
        + retry_cid
        + token
    )
    pseudo = bytes([len(header.destination)]) + header.destination + packet
    return packet + _retry_aead().encrypt(_RETRY_NONCE, b"", pseudo)


@functools.cache
def _retry_aead() -> AESGCM:
    # Loaded when a server first sends a Retry: with qh3, a client (`ringdrop get`) needs
    # nothing else from cryptography, which takes some 5 ms to load.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(_RETRY_KEY)


class RetryTokens:
    """Tokens a client brings back to prove it receives datagrams at its source address.

    A token holds the time it was issued and the client's original destination connection id
    (the server's half of the handshake must echo that id), and an HMAC over those, the
    address and the Retry's connection id, which the client must now send to. The secret lives
    only in this process: tokens die with it, so a client caught between Retry and handshake by
    a restart gets no answer until its connection attempt times out and it starts over.
    """

    def __init__(self, lifetime: float, secret: bytes | None = None) -> None:
        self.lifetime = lifetime
        self._secret = secret if secret is not None else os.urandom(32)

    def issue(self, address: object, original_cid: bytes, retry_cid: bytes, now: float) -> bytes:
        issued = struct.pack("!d", now)
        body = _TOKEN_MAGIC + issued + bytes([len(original_cid)]) + original_cid
        return body + self._mac(address, body, retry_cid)

    def check(self, address: object, token: bytes, destination: bytes, now: float) -> bytes | None:
        """The original connection id a valid token carries; None for any other token."""
        if len(token) < len(_TOKEN_MAGIC) + 9 + _MAC_BYTES or not token.startswith(_TOKEN_MAGIC):
            return None
        body, mac = token[:-_MAC_BYTES], token[-_MAC_BYTES:]
        if not hmac.compare_digest(mac, self._mac(address, body, destination)):
            return None
        (issued,) = struct.unpack_from("!d", body, len(_TOKEN_MAGIC))
        if not now - self.lifetime <= issued <= now:
            return None
        original_length = body[len(_TOKEN_MAGIC) + 8]
        original = body[len(_TOKEN_MAGIC) + 9 :]
        return original if len(original) == original_length else None

    def _mac(self, address: object, body: bytes, retry_cid: bytes) -> bytes:
        message = b"\x00".join(
            (_TOKEN_DOMAIN, _address_bytes(address), body, bytes([len(retry_cid)]) + retry_cid)
        )
        return hmac.digest(self._secret, message, hashlib.sha256)[:_MAC_BYTES]


def _address_bytes(address: object) -> bytes:
    """A source address as the token binds it: host and port (the rest of an IPv6 socket
    address, flow info and scope, is not the client's to choose consistently)."""
    if isinstance(address, tuple) and len(address) >= 2:
        return f"{address[0]}|{address[1]}".encode()
    return repr(address).encode()


class TokenBucket:
    """At most `rate` events a second on average, `burst` at once."""

    def __init__(self, rate: float, burst: float) -> None:
        self._rate = rate
        self._burst = burst
        self._level = burst
        self._at: float | None = None

    @classmethod
    def per_second(cls, rate: float) -> TokenBucket:
        """A second's worth of burst; a rate of 0 allows nothing."""
        return cls(rate, max(1.0, rate) if rate > 0 else 0.0)

    def take(self, now: float) -> bool:
        if self._at is not None:
            self._level = min(self._burst, self._level + (now - self._at) * self._rate)
        self._at = now
        if self._level < 1:
            return False
        self._level -= 1
        return True


def host_key(host: str) -> str:
    """What counts as one host when limits are per host: an IPv4 address, or an IPv6 address's
    /64 (one subscriber usually has a whole /64 and can send from any address in it)."""
    try:
        ip = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class PerSource:
    """A `TokenBucket` per host (see `host_key`), for at most `sources` hosts at once: a flood
    from many forged sources costs a bounded table, the least recently seen hosts forgotten
    first (a forgotten host starts again with a full bucket, which the bound on the table's
    size keeps harmless)."""

    def __init__(self, rate: float, burst: float, sources: int = 1024) -> None:
        self._rate = rate
        self._burst = burst
        self._sources = sources
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, host: str, now: float) -> bool:
        key = host_key(host)
        bucket = self._buckets.pop(key, None)
        if bucket is None:
            bucket = TokenBucket(self._rate, self._burst)
            if len(self._buckets) >= self._sources:
                self._buckets.popitem(last=False)
        self._buckets[key] = bucket
        return bucket.take(now)


@dataclass(frozen=True, slots=True)
class AdmissionLimits:
    """The bounds of `Admission`; the server derives them from its `Limits`."""

    max_half_open: int
    max_half_open_per_host: int
    accepts_per_second: float
    retries_per_second: float
    token_lifetime: float


@dataclass(frozen=True, slots=True)
class Admit:
    """Build a connection: `original_cid` is the client's first destination id, `retry_cid`
    the Retry's id it now uses (None when there was no Retry); `slot` counts it as half-open."""

    original_cid: bytes
    retry_cid: bytes | None
    slot: HalfOpen


class HalfOpen:
    """One admitted connection that has not yet proved its peer's key, as `Admission` counts it.

    `validate` when the handshake proves the address; `release` when the peer proves its key or
    the connection ends (repeating it is harmless).
    """

    def __init__(self, admission: Admission, host: str, validated: bool) -> None:
        self._admission = admission
        self.host = host
        self.validated = validated
        self.released = False

    def validate(self) -> None:
        if not self.validated and not self.released:
            self.validated = True
            self._admission._moved_to_validated(self.host)

    def release(self) -> None:
        if not self.released:
            self.released = True
            self._admission._released(self)


Answer = Admit | bytes | None
"""What to do with a candidate Initial: admit it, send these bytes (a Retry), or drop it."""


class Admission:
    """Decides, statelessly where it can, whether a new Initial may cost a connection."""

    def __init__(
        self, limits: AdmissionLimits, clock: Callable[[], float], secret: bytes | None = None
    ) -> None:
        self.limits = limits
        self._clock = clock
        self._tokens = RetryTokens(limits.token_lifetime, secret)
        self._accepts = TokenBucket.per_second(limits.accepts_per_second)
        self._retries = TokenBucket.per_second(limits.retries_per_second)
        self.half_open = 0
        self.unvalidated = 0
        self._validated_by_host: dict[str, int] = {}
        self.admitted = 0
        self.retries_sent = 0
        self.dropped = 0

    def consider(self, header: InitialHeader, address: tuple[str | int, ...]) -> Answer:
        """What to do with a client's Initial for a connection id no connection has."""
        now = self._clock()
        host = str(address[0])
        limits = self.limits
        if header.token:
            original = self._tokens.check(address, header.token, header.destination, now)
            if original is None:
                # Forged, expired, from another address or another server process: RFC 9000
                # allows dropping it; the client starts over with a fresh Initial in time.
                return self._drop()
            if (
                self.half_open >= limits.max_half_open
                or self._validated_by_host.get(host, 0) >= limits.max_half_open_per_host
            ):
                return self._drop()
            self.half_open += 1
            self.admitted += 1
            self._validated_by_host[host] = self._validated_by_host.get(host, 0) + 1
            return Admit(original, header.destination, HalfOpen(self, host, validated=True))
        if (
            self.unvalidated < limits.max_half_open // 2
            and self.half_open < limits.max_half_open
            and self._accepts.take(now)
        ):
            self.half_open += 1
            self.admitted += 1
            self.unvalidated += 1
            return Admit(header.destination, None, HalfOpen(self, host, validated=False))
        if not self._retries.take(now):
            return self._drop()
        retry_cid = os.urandom(RETRY_CID_LENGTH)
        token = self._tokens.issue(address, header.destination, retry_cid, now)
        self.retries_sent += 1
        return retry_packet(header, retry_cid, token)

    def _drop(self) -> Answer:
        self.dropped += 1
        return None

    def _moved_to_validated(self, host: str) -> None:
        self.unvalidated -= 1
        self._validated_by_host[host] = self._validated_by_host.get(host, 0) + 1

    def _released(self, slot: HalfOpen) -> None:
        self.half_open -= 1
        if not slot.validated:
            self.unvalidated -= 1
            return
        left = self._validated_by_host[slot.host] - 1
        if left:
            self._validated_by_host[slot.host] = left
        else:
            del self._validated_by_host[slot.host]  # so the table never outgrows the slots
