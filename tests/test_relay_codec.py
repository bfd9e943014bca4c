"""The iroh relay frame codec (`ringdrop.transport._relay_codec`) fed bytes directly: frames
decoded and encoded as iroh-relay 1.x writes them, and truncated, oversized and unknown frames
refused with what they were."""

from __future__ import annotations

import os
from collections import deque

import blake3
import pytest

from ringdrop.errors import ProtocolError
from ringdrop.transport import _relay_codec as codec
from ringdrop.transport._relay_codec import MAX_BATCH, MAX_DATAGRAM, MAX_PAYLOAD, V1, V2

KEY = bytes(range(32))
OTHER = bytes(range(1, 33))


def test_a_single_datagram_is_decoded_with_its_source() -> None:
    frame = codec.decode(b"\x06" + KEY + b"\x00" + b"hello", V2)
    assert frame == codec.Datagrams(KEY, [b"hello"])


def test_a_batch_is_split_at_its_segment_size_the_last_may_be_shorter() -> None:
    frame = codec.decode(b"\x07" + KEY + b"\x00" + (3).to_bytes(2, "big") + b"aaabbbcc", V2)
    assert frame == codec.Datagrams(KEY, [b"aaa", b"bbb", b"cc"])


def test_a_batch_without_a_segment_size_is_one_datagram_as_iroh_reads_it() -> None:
    frame = codec.decode(b"\x07" + KEY + b"\x00\x00\x00" + b"whole", V2)
    assert frame == codec.Datagrams(KEY, [b"whole"])


def test_a_datagram_frame_without_a_datagram_carries_none() -> None:
    assert codec.decode(b"\x06" + KEY + b"\x00", V2) == codec.Datagrams(KEY, [])
    assert codec.decode(b"\x07" + KEY + b"\x00\x05\xdc", V2) == codec.Datagrams(KEY, [])


@pytest.mark.parametrize(
    ("message", "what"),
    [
        (b"", "an empty or truncated frame"),
        (b"\x40", "an empty or truncated frame"),  # a two-byte varint cut off
        (b"\x06" + KEY[:31], "a truncated datagram"),
        (b"\x06" + KEY, "a truncated datagram"),  # no ECN byte
        (b"\x07" + KEY + b"\x00\x05", "a truncated datagram batch"),
        (b"\x09" + b"1234567", "a ping of 7 bytes"),
        (b"\x08" + KEY[:31], "a malformed endpoint-gone frame"),
        (b"\x0c" + bytes(7), "a malformed restarting frame"),
        (b"\x0d\x00\x00", "a malformed status frame"),
    ],
)
def test_truncated_or_malformed_frames_are_refused_with_what_they_were(
    message: bytes, what: str
) -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode(message, V2)
    assert str(info.value) == what


def test_a_payload_over_64_kib_is_refused_and_one_of_64_kib_is_not() -> None:
    largest = b"\x06" + KEY + b"\x00" + bytes(MAX_PAYLOAD - 33)
    assert codec.decode(largest, V2) == codec.Datagrams(KEY, [bytes(MAX_PAYLOAD - 33)])
    with pytest.raises(ProtocolError, match=f"a frame of {MAX_PAYLOAD + 1} bytes"):
        codec.decode(largest + b"\x00", V2)


@pytest.mark.parametrize(
    ("message", "protocol"),
    [
        (b"\x3f", V2),  # no such type
        (b"\x01" + KEY, V2),  # ClientAuth: the server never sends one
        (b"\x0b" + b"sick", V2),  # Health is v1 only
        (b"\x0d\x01", V1),  # Status is v2 only
        (b"\x40\x0e" + bytes(4), V2),  # type 14, as a two-byte varint
    ],
)
def test_unknown_types_and_types_of_the_other_version_are_refused(
    message: bytes, protocol: str
) -> None:
    with pytest.raises(ProtocolError, match="frame type"):
        codec.decode(message, protocol)


def test_control_frames_are_decoded() -> None:
    assert codec.decode(b"\x09" + b"12345678", V2) == codec.Ping(b"12345678")
    assert codec.decode(b"\x0a" + b"12345678", V2) == codec.Pong(b"12345678")
    assert codec.decode(b"\x08" + KEY, V2) == codec.EndpointGone(KEY)
    restarting = (1500).to_bytes(4, "big") + (20000).to_bytes(4, "big")
    assert codec.decode(b"\x0c" + restarting, V2) == codec.Restarting(1.5, 20.0)
    assert codec.decode(b"\x0d\x01", V2) == codec.Status(1)
    assert codec.decode(b"\x0b" + b"disk full", V1) == codec.Health("disk full")
    assert codec.decode(b"\x0b" + b"x" * 1000, V1) == codec.Health("x" * 200)


def test_a_ping_is_answered_by_a_pong_with_the_same_bytes() -> None:
    assert codec.ping(b"abcdefgh") == b"\x09abcdefgh"
    assert codec.pong(codec.Ping(b"abcdefgh")) == b"\x0aabcdefgh"
    with pytest.raises(ValueError, match="8 bytes"):
        codec.ping(b"short")


# -- the handshake ----------------------------------------------------------------------------


def test_the_handshake_frames_are_decoded() -> None:
    challenge = os.urandom(16)
    assert codec.decode_handshake(b"\x00" + challenge) == codec.Challenge(challenge)
    assert codec.decode_handshake(b"\x02") == codec.ConfirmsAuth()
    assert codec.decode_handshake(b"\x03\x0enot authorized") == codec.DeniesAuth("not authorized")
    assert codec.decode_handshake(b"\x03") == codec.DeniesAuth("no reason given")


@pytest.mark.parametrize(
    ("message", "what"),
    [
        (b"", "an empty or truncated frame"),
        (b"\x00short", "a challenge shorter than 16 bytes"),
        (b"\x06" + KEY + b"\x00", "frame type 6 instead of a challenge or a verdict"),
    ],
)
def test_a_garbled_handshake_is_refused_with_what_it_was(message: bytes, what: str) -> None:
    with pytest.raises(ProtocolError) as info:
        codec.decode_handshake(message)
    assert str(info.value) == what


def test_the_proof_signs_a_key_derived_from_the_challenge_not_the_challenge() -> None:
    challenge = codec.Challenge(bytes(16))
    expected = blake3.blake3(
        bytes(16), derive_key_context="iroh-relay handshake v1 challenge signature"
    ).digest()
    assert codec.signed_message(challenge) == expected
    signature = bytes(range(64))
    assert codec.client_auth(KEY, signature) == b"\x01" + KEY + b"\x40" + signature
    with pytest.raises(ValueError, match="32-byte key"):
        codec.client_auth(KEY[:31], signature)


def test_a_refusal_reason_is_bounded() -> None:
    long = b"\x03" + b"\xe8\x07" + b"r" * 1000  # length 1000 as LEB128
    denial = codec.decode_handshake(long)
    assert denial == codec.DeniesAuth("r" * 200)
    assert codec.postcard_string(b"\xff\xff\xff\xff\xff\xff") == "no reason given"


# -- packing datagrams ------------------------------------------------------------------------


def test_one_datagram_goes_alone_in_a_single_frame() -> None:
    queue = deque([(KEY, b"one")])
    assert codec.next_datagrams(queue) == (b"\x04" + KEY + b"\x00" + b"one", 3)
    assert not queue


def test_a_run_of_equal_datagrams_to_one_peer_is_one_batch_ending_at_a_shorter_one() -> None:
    queue = deque([(KEY, b"aaa"), (KEY, b"bbb"), (KEY, b"cc"), (KEY, b"ddd")])
    frame, taken = codec.next_datagrams(queue)
    assert frame == b"\x05" + KEY + b"\x00" + (3).to_bytes(2, "big") + b"aaabbbcc"
    assert taken == 8
    assert list(queue) == [(KEY, b"ddd")]
    # What was packed is what the server's forwarded batch is read as.
    relayed = b"\x07" + frame[1:]
    assert codec.decode(relayed, V2) == codec.Datagrams(KEY, [b"aaa", b"bbb", b"cc"])


def test_a_batch_stops_at_another_peer_or_a_longer_datagram() -> None:
    queue = deque([(KEY, b"aa"), (OTHER, b"bb"), (OTHER, b"ccc")])
    assert codec.next_datagrams(queue)[1] == 2
    assert codec.next_datagrams(queue)[1] == 2
    assert codec.next_datagrams(queue)[1] == 3
    assert not queue


def test_a_batch_frame_never_exceeds_64_kib() -> None:
    size = 1452
    queue = deque([(KEY, bytes(size))] * 100)
    frame, taken = codec.next_datagrams(queue)
    assert taken == (MAX_BATCH // size) * size
    assert len(frame) <= MAX_PAYLOAD
    assert len(queue) == 100 - MAX_BATCH // size
    largest = deque([(KEY, bytes(MAX_DATAGRAM))])
    assert len(codec.next_datagrams(largest)[0]) == MAX_PAYLOAD
