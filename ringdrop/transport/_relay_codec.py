"""The iroh relay's frames (iroh 1.x, `iroh-relay/src/protos/*.rs`) as a sans-IO codec: one
WebSocket message's bytes in, a frame out, and frames to bytes, with the protocol's size limits.
`relay.py` carries them; the wire format is described in its module docstring."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import blake3

from ringdrop.errors import ProtocolError
from ringdrop.transport._backend import quic_varint

__all__ = [
    "CHALLENGE_BYTES",
    "KEY_BYTES",
    "MAX_BATCH",
    "MAX_DATAGRAM",
    "MAX_PAYLOAD",
    "V1",
    "V2",
    "Challenge",
    "ConfirmsAuth",
    "Datagrams",
    "DeniesAuth",
    "EndpointGone",
    "Health",
    "Ping",
    "Pong",
    "Restarting",
    "ServerFrame",
    "Status",
    "client_auth",
    "decode",
    "decode_handshake",
    "next_datagrams",
    "ping",
    "pong",
    "postcard_string",
    "signed_message",
]

V1 = "iroh-relay-v1"
V2 = "iroh-relay-v2"

# Frame types (protos/common.rs).
_SERVER_CHALLENGE = 0
_CLIENT_AUTH = 1
_SERVER_CONFIRMS_AUTH = 2
_SERVER_DENIES_AUTH = 3
_CLIENT_DATAGRAM = b"\x04"
_CLIENT_DATAGRAM_BATCH = b"\x05"
_RELAY_DATAGRAM = 6
_RELAY_DATAGRAM_BATCH = 7
_ENDPOINT_GONE = 8
_PING = 9
_PONG = 10
_HEALTH = 11
_RESTARTING = 12
_STATUS = 13

_CHALLENGE_CONTEXT = "iroh-relay handshake v1 challenge signature"
CHALLENGE_BYTES = 16
KEY_BYTES = 32
_PING_BYTES = 8
_MAX_REASON = 200

MAX_PAYLOAD = 64 * 1024
"""The largest frame payload (after the frame type) either side accepts (MAX_PACKET_SIZE)."""
# Senders (iroh's client and its server alike) hold a whole frame, type byte included, to
# MAX_PACKET_SIZE. A server that must forward one byte more fails the *receiver's* connection.
MAX_DATAGRAM = MAX_PAYLOAD - 1 - KEY_BYTES - 1
"""The largest datagram one frame can carry: 64 KiB less the type, the key and the ECN byte."""
MAX_BATCH = MAX_DATAGRAM - 2
"""The most datagram bytes one batch frame carries (less its segment size too)."""
_NOT_ECT = b"\x00"  # we do not mark ECN: the relay's TCP hop would not carry it anyway


@dataclass(frozen=True, slots=True)
class Challenge:
    """ServerChallenge: what the client signs to prove its key."""

    challenge: bytes


@dataclass(frozen=True, slots=True)
class ConfirmsAuth:
    """ServerConfirmsAuth: datagrams may flow."""


@dataclass(frozen=True, slots=True)
class DeniesAuth:
    """ServerDeniesAuth, with the server's reason (bounded, for a person)."""

    reason: str


@dataclass(slots=True)
class Datagrams:
    """RelayDatagram or a batch of them, from the peer whose key is `source` (none if empty)."""

    source: bytes
    datagrams: list[bytes]


@dataclass(frozen=True, slots=True)
class EndpointGone:
    key: bytes


@dataclass(frozen=True, slots=True)
class Ping:
    """Must be answered by a Pong with the same payload, or the server drops the client."""

    payload: bytes


@dataclass(frozen=True, slots=True)
class Pong:
    payload: bytes


@dataclass(frozen=True, slots=True)
class Health:
    """A problem the server reports (v1 only), bounded, for a person."""

    problem: str


@dataclass(frozen=True, slots=True)
class Restarting:
    """The server is restarting: reconnect in `wait` seconds, keep trying for `try_for`."""

    wait: float
    try_for: float


@dataclass(frozen=True, slots=True)
class Status:
    """v2 only: 1 another connection with this key took over, 0 this one is active again."""

    code: int


ServerFrame = Datagrams | EndpointGone | Ping | Pong | Health | Restarting | Status


def decode(message: bytes, protocol: str | None) -> ServerFrame:
    """The frame in one binary message from the server, spoken in `protocol` (`V1` or `V2`).

    Raises ProtocolError, saying what the message was, for one no client should act on: empty
    or truncated, a payload over `MAX_PAYLOAD`, a malformed body, or a type unknown or not of
    this version (the connection loop skips those it may: a newer server's additions are not
    fatal).
    """
    kind, start = quic_varint(message, 0)
    end = len(message)
    if kind < 0:
        raise ProtocolError("an empty or truncated frame")
    if end - start > MAX_PAYLOAD:
        raise ProtocolError(f"a frame of {end - start} bytes")
    if kind == _RELAY_DATAGRAM_BATCH:
        data = start + KEY_BYTES + 3
        if data > end:
            raise ProtocolError("a truncated datagram batch")
        segment = int.from_bytes(message[data - 2 : data], "big")
        if data == end:
            datagrams = []
        elif segment == 0:  # iroh's reading: no segment size, so one datagram
            datagrams = [message[data:]]
        else:
            datagrams = [message[i : i + segment] for i in range(data, end, segment)]
        return Datagrams(message[start : start + KEY_BYTES], datagrams)
    if kind == _RELAY_DATAGRAM:
        data = start + KEY_BYTES + 1
        if data > end:
            raise ProtocolError("a truncated datagram")
        return Datagrams(message[start : start + KEY_BYTES], [message[data:]] if data < end else [])
    return _control(kind, message[start:], protocol)


def _control(kind: int, payload: bytes, protocol: str | None) -> ServerFrame:
    if kind == _PING:
        if len(payload) != _PING_BYTES:
            raise ProtocolError(f"a ping of {len(payload)} bytes")
        return Ping(payload)
    if kind == _PONG:
        return Pong(payload)
    if kind == _ENDPOINT_GONE:
        if len(payload) != KEY_BYTES:
            raise ProtocolError("a malformed endpoint-gone frame")
        return EndpointGone(payload)
    if kind == _RESTARTING:
        if len(payload) != 8:
            raise ProtocolError("a malformed restarting frame")
        wait = int.from_bytes(payload[:4], "big") / 1000
        return Restarting(wait, int.from_bytes(payload[4:], "big") / 1000)
    if kind == _STATUS and protocol == V2:
        if len(payload) != 1:
            raise ProtocolError("a malformed status frame")
        return Status(payload[0])
    if kind == _HEALTH and protocol == V1:
        return Health(payload[:_MAX_REASON].decode("utf-8", "replace"))
    raise ProtocolError(f"frame type {kind}")


def decode_handshake(message: bytes) -> Challenge | ConfirmsAuth | DeniesAuth:
    """A frame of the handshake; ProtocolError, saying what came instead, for anything else."""
    kind, start = quic_varint(message, 0)
    if kind < 0:
        raise ProtocolError("an empty or truncated frame")
    payload = message[start:]
    if kind == _SERVER_CHALLENGE:
        if len(payload) < CHALLENGE_BYTES:
            raise ProtocolError(f"a challenge shorter than {CHALLENGE_BYTES} bytes")
        return Challenge(payload[:CHALLENGE_BYTES])
    if kind == _SERVER_CONFIRMS_AUTH:
        return ConfirmsAuth()
    if kind == _SERVER_DENIES_AUTH:
        return DeniesAuth(postcard_string(payload))
    raise ProtocolError(f"frame type {kind} instead of a challenge or a verdict")


def signed_message(challenge: Challenge) -> bytes:
    """What the client signs: derived from the challenge, so that a malicious relay cannot
    obtain our signature over a message of its choosing."""
    return blake3.blake3(challenge.challenge, derive_key_context=_CHALLENGE_CONTEXT).digest()


def client_auth(public_key: bytes, signature: bytes) -> bytes:
    """ClientAuth (postcard: the key as a fixed array, the signature as bytes, length 0x40)."""
    if len(public_key) != KEY_BYTES or len(signature) != 64:
        raise ValueError("a relay proof is a 32-byte key and a 64-byte signature")
    return bytes([_CLIENT_AUTH]) + public_key + b"\x40" + signature


def ping(payload: bytes) -> bytes:
    if len(payload) != _PING_BYTES:
        raise ValueError(f"a relay ping carries {_PING_BYTES} bytes")
    return bytes([_PING]) + payload


def pong(ping: Ping) -> bytes:
    return bytes([_PONG]) + ping.payload


def next_datagrams(queue: deque[tuple[bytes, bytes]]) -> tuple[bytes, int]:
    """Take the next run of datagrams to one peer off `queue` (key, datagram), equal in size but
    for a shorter last one, as one frame of at most 64 KiB; the frame and the datagram bytes it
    took. The datagrams are at most `MAX_DATAGRAM` bytes (the caller's check)."""
    key, first = queue.popleft()
    size = total = len(first)
    parts = [first]
    while queue:
        next_key, datagram = queue[0]
        length = len(datagram)
        if length > size or total + length > MAX_BATCH or next_key != key:
            break
        queue.popleft()
        parts.append(datagram)
        total += length
        if length < size:
            break
    if len(parts) == 1:
        return b"".join((_CLIENT_DATAGRAM, key, _NOT_ECT, first)), total
    frame = b"".join((_CLIENT_DATAGRAM_BATCH, key, _NOT_ECT, size.to_bytes(2, "big"), *parts))
    return frame, total


def postcard_string(payload: bytes) -> str:
    """A postcard string (LEB128 length, UTF-8), bounded and never raising: for a message."""
    length = position = 0
    while True:
        if position == min(len(payload), 5):
            return "no reason given"
        byte = payload[position]
        length |= (byte & 0x7F) << (7 * position)
        position += 1
        if byte < 0x80:
            break
    text = payload[position : position + min(length, _MAX_REASON)].decode("utf-8", "replace")
    return text or "no reason given"
