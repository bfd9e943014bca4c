"""Fuzzing what arrives beneath QUIC from anyone: relay frames (a hostile relay server), STUN
answers and path probes (any datagram on the serving socket). Each parser is total: it skips or
refuses junk, never raises, and what it keeps is bounded by what it was given."""

from __future__ import annotations

import logging
import os
import struct
from functools import partial
from ipaddress import ip_address

import nacl.signing
from hypothesis import given
from hypothesis import strategies as st

from ringdrop.identity import Identity
from ringdrop.transport._backend import quic_varint
from ringdrop.transport._paths import MAGIC, _Codec
from ringdrop.transport._relay_codec import postcard_string as _postcard_string
from ringdrop.transport.relay import MAX_PAYLOAD, RelayClient
from ringdrop.transport.stun import MAGIC_COOKIE, is_stun, parse_binding_response
from tests.fuzz.common import fuzz, peak_memory, within

ME = Identity(nacl.signing.SigningKey(b"m" * 32))
PEER = Identity(nacl.signing.SigningKey(b"p" * 32))


@st.composite
def mangled(draw: st.DrawFn, wire: bytes) -> bytes:
    data = bytearray(wire)
    for _ in range(draw(st.integers(0, 4))):
        if data:
            data[draw(st.integers(0, len(data) - 1))] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))]) + draw(st.binary(max_size=16))


# Relay frames: a QUIC varint type, then a payload (iroh-relay's protocol).

relay_frames = st.one_of(
    st.binary(max_size=256),
    st.tuples(st.integers(0, 15), st.binary(max_size=512)).map(lambda t: bytes([t[0]]) + t[1]),
    st.tuples(st.integers(1, 64), st.binary(max_size=2048)).map(
        # a batch: key, ECN, segment size, datagrams
        lambda t: b"\x07" + os.urandom(33) + t[0].to_bytes(2, "big") + t[1]
    ),
    st.binary(min_size=MAX_PAYLOAD - 8, max_size=MAX_PAYLOAD + 8).map(lambda b: b"\x06" + b),
)


class Received:
    def __init__(self) -> None:
        self.datagrams: list[tuple[bytes, list[bytes]]] = []

    def __call__(self, key: bytes, datagrams: list[bytes]) -> None:
        self.datagrams.append((key, datagrams))


@fuzz
@given(st.lists(st.one_of(relay_frames, relay_frames.flatmap(mangled)), max_size=8))
def test_a_hostile_relays_frames_are_delivered_or_skipped_never_raised(
    frames: list[bytes],
) -> None:
    received = Received()
    client = RelayClient("http://127.0.0.1:1/", ME, received)
    # Junk is logged: what the test's log capture keeps of thousands of examples is not the
    # parser's memory.
    logger = logging.getLogger("ringdrop.transport")
    logger.disabled = True
    try:
        for frame in frames:
            result, peak = peak_memory(partial(client._on_frame, frame))
            assert result is None
            # A batch of one-byte datagrams is a list of that many small objects: bounded by
            # the frame's size, which the WebSocket layer caps (128 KiB).
            assert within(peak, len(frame), factor=200)
    finally:
        logger.disabled = False
    for key, datagrams in received.datagrams:
        assert len(key) == 32
        assert all(datagrams)
    delivered = sum(len(d) for _, ds in received.datagrams for d in ds)
    assert delivered <= sum(len(f) for f in frames)
    assert len(client._control) <= len(frames)  # at most one pong a ping


@fuzz
@given(st.binary(max_size=64))
def test_a_relays_refusal_reason_is_read_bounded_and_never_raises(payload: bytes) -> None:
    reason = _postcard_string(payload)
    assert isinstance(reason, str)
    assert 0 < len(reason) <= 200


@fuzz
@given(st.binary(max_size=16), st.integers(0, 16))
def test_a_quic_varint_is_read_or_found_cut_off(data: bytes, at: int) -> None:
    value, end = quic_varint(data, at)
    assert (value, end) == (-1, at) or (0 <= value < 1 << 62 and at < end <= len(data))


# STUN answers: anyone may send one to the serving socket.


def binding_success(txid: bytes, attributes: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(
        struct.pack("!HH", kind, len(value)) + value + bytes(-len(value) % 4)
        for kind, value in attributes
    )
    return struct.pack("!HHI12s", 0x0101, len(body), MAGIC_COOKIE, txid) + body


TXID = bytes(range(12))
stun_attributes = st.lists(
    st.tuples(st.sampled_from([0x0001, 0x0020, 0x8022, 0x0009]), st.binary(max_size=24)),
    max_size=4,
)
stun_datagrams = st.one_of(
    st.binary(max_size=128),
    stun_attributes.map(lambda a: binding_success(TXID, a)),
    stun_attributes.flatmap(lambda a: mangled(binding_success(TXID, a))),
)


@fuzz
@given(stun_datagrams)
def test_a_stun_answer_is_an_address_or_nothing(data: bytes) -> None:
    result, peak = peak_memory(lambda: parse_binding_response(data, TXID))
    assert within(peak, len(data))
    assert result is None or (
        isinstance(result, tuple)
        and ip_address(result[0]) is not None
        and 0 <= result[1] < 65536
        and is_stun(data)
    )


# Path probes: sealed between two keys; anything else must open to nothing.


def probe(kind: int, size: int) -> bytes:
    sealer = _Codec(PEER)
    sealer.know(ME.peer_id.raw)
    observed = ("192.0.2.7", 4242) if kind == 2 else None
    return sealer.seal(ME.peer_id.raw, kind, bytes(12), observed, size)


probes = st.one_of(
    st.binary(max_size=256),
    st.binary(max_size=256).map(lambda b: MAGIC + b),
    st.tuples(st.sampled_from([1, 2]), st.integers(0, 1500)).map(lambda t: probe(*t)),
    st.tuples(st.sampled_from([1, 2]), st.integers(0, 300)).flatmap(lambda t: mangled(probe(*t))),
)


@fuzz
@given(probes)
def test_a_datagram_opens_as_a_genuine_probe_or_as_nothing(data: bytes) -> None:
    codec = _Codec(ME)
    codec.know(PEER.peer_id.raw)  # the peer of a connection here
    result, peak = peak_memory(lambda: codec.open(data))
    assert within(peak, len(data))
    if result is not None:
        assert not isinstance(result, BaseException)
        sender, kind, txid, observed = result
        assert sender == PEER.peer_id.raw  # only a probe sealed by the peer opens
        assert kind in (1, 2)
        assert len(txid) == 12
        assert observed is None or 0 <= observed[1] < 65536


def test_probes_from_many_strangers_leave_no_state() -> None:
    codec = _Codec(ME)
    codec.know(PEER.peer_id.raw)
    for _ in range(5000):
        stranger = nacl.signing.SigningKey.generate().verify_key.encode()
        assert codec.open(MAGIC + stranger + os.urandom(80)) is None
    # Boxes are made only for the keys of connections here, never for a probe's sender.
    assert list(codec._boxes) == [PEER.peer_id.raw]
