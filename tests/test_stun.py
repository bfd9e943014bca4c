"""The STUN binding codec: RFC 5769's sample responses, a round trip with a real coturn on
loopback, and a parser that returns None (never raises) for anything it is handed."""

from __future__ import annotations

import binascii
import hmac
import os
import shutil
import socket
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ringdrop.transport.stun import (
    MAGIC_COOKIE,
    binding_request,
    is_stun,
    parse_binding_response,
)
from tests.ci import skip_unless_ci
from tests.netlab import stun_server_command, wait_for_stun

# RFC 5769 §2.2 and §2.3: binding success responses carrying SOFTWARE, XOR-MAPPED-ADDRESS,
# MESSAGE-INTEGRITY (short-term password below) and FINGERPRINT.
RFC5769_TRANSACTION = bytes.fromhex("b7e7a701bc34d686fa87dfae")
RFC5769_PASSWORD = b"VOkJxbRl1RmTxUk/WvJxBt"
RFC5769_IPV4 = bytes.fromhex(
    "0101003c2112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000080001a147e112a643"
    "000800142b91f599fd9e90c38c7489f92af9ba53f06be7d7"
    "80280004c07d4c96"
)
RFC5769_IPV6 = bytes.fromhex(
    "010100482112a442b7e7a701bc34d686fa87dfae"
    "8022000b7465737420766563746f7220"
    "002000140002a1470113a9faa5d3f179bc25f4b5bed2b9d9"
    "00080014a382954e4be67bf11784c97c8292c275bfe3ed41"
    "80280004c8fb0b4c"
)


def _check_fingerprint_and_integrity(message: bytes) -> None:
    """Proves a vector was copied exactly: its CRC-32 fingerprint and HMAC-SHA1 integrity
    (each computed with the header's length covering up to the end of that attribute)."""
    fingerprint_at, integrity_at = len(message) - 8, len(message) - 8 - 24

    def with_length(prefix: bytes, length: int) -> bytes:
        return prefix[:2] + struct.pack("!H", length) + prefix[4:]

    crc = binascii.crc32(with_length(message[:fingerprint_at], len(message) - 20)) ^ 0x5354554E
    assert message[fingerprint_at + 4 :] == struct.pack("!I", crc)
    signed = with_length(message[:integrity_at], integrity_at + 24 - 20)
    digest = hmac.new(RFC5769_PASSWORD, signed, "sha1").digest()
    assert message[integrity_at + 4 : fingerprint_at] == digest


@pytest.mark.parametrize(
    ("message", "expected"),
    [
        (RFC5769_IPV4, ("192.0.2.1", 32853)),
        (RFC5769_IPV6, ("2001:db8:1234:5678:11:2233:4455:6677", 32853)),
    ],
    ids=["ipv4", "ipv6"],
)
def test_rfc5769_sample_responses(message: bytes, expected: tuple[str, int]) -> None:
    _check_fingerprint_and_integrity(message)
    assert is_stun(message)
    assert parse_binding_response(message, RFC5769_TRANSACTION) == expected


def test_a_response_to_another_transaction_is_ignored() -> None:
    other = bytes(12)
    assert parse_binding_response(RFC5769_IPV4, other) is None


@pytest.mark.parametrize("cut", [1, 4, 8, 20])
def test_a_truncated_response_is_refused(cut: int) -> None:
    assert parse_binding_response(RFC5769_IPV4[:-cut], RFC5769_TRANSACTION) is None


def test_a_length_field_that_disagrees_with_the_datagram_is_refused() -> None:
    longer = RFC5769_IPV4[:2] + struct.pack("!H", 0x40) + RFC5769_IPV4[4:]
    assert parse_binding_response(longer, RFC5769_TRANSACTION) is None
    assert parse_binding_response(RFC5769_IPV4 + bytes(4), RFC5769_TRANSACTION) is None


def test_an_attribute_running_past_the_end_is_refused() -> None:
    header = struct.pack("!HHI12s", 0x0101, 8, MAGIC_COOKIE, RFC5769_TRANSACTION)
    attribute = struct.pack("!HH", 0x0020, 8) + bytes(4)  # says 8 bytes, has 4
    assert parse_binding_response(header + attribute, RFC5769_TRANSACTION) is None


def test_an_address_of_the_wrong_size_for_its_family_is_refused() -> None:
    value = struct.pack("!BBH", 0, 2, 0x1234) + bytes(4)  # IPv6 family, IPv4-sized address
    assert parse_binding_response(_response(0x0020, value), RFC5769_TRANSACTION) is None


def _response(kind: int, value: bytes, *more: tuple[int, bytes]) -> bytes:
    body = b""
    for attribute, content in ((kind, value), *more):
        body += struct.pack("!HH", attribute, len(content)) + content + bytes(-len(content) % 4)
    return struct.pack("!HHI12s", 0x0101, len(body), MAGIC_COOKIE, RFC5769_TRANSACTION) + body


def test_mapped_address_is_the_fallback_and_xor_mapped_address_wins() -> None:
    plain = struct.pack("!BBH", 0, 1, 4242) + bytes([198, 51, 100, 7])
    assert parse_binding_response(_response(0x0001, plain), RFC5769_TRANSACTION) == (
        "198.51.100.7",
        4242,
    )
    xor_ipv4 = RFC5769_IPV4[40:48]  # the XOR-MAPPED-ADDRESS value of RFC 5769 §2.2
    both = _response(0x0001, plain, (0x0020, xor_ipv4))
    assert parse_binding_response(both, RFC5769_TRANSACTION) == ("192.0.2.1", 32853)


def test_a_binding_request_is_a_bare_header_with_a_fresh_transaction() -> None:
    first_id, first = binding_request()
    second_id, _ = binding_request()
    assert first == struct.pack("!HHI12s", 0x0001, 0, MAGIC_COOKIE, first_id)
    assert first_id != second_id
    assert is_stun(first)


def test_quic_packets_are_not_stun() -> None:
    long_header = bytes([0xC0]) + bytes(3) + struct.pack("!I", MAGIC_COOKIE) + bytes(30)
    short_header = bytes([0x40]) + bytes(3) + struct.pack("!I", MAGIC_COOKIE) + bytes(30)
    assert not is_stun(long_header)
    assert not is_stun(short_header)
    assert not is_stun(RFC5769_IPV4[:19])


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=200))
def test_the_parser_never_raises_on_arbitrary_bytes(data: bytes) -> None:
    assert parse_binding_response(data, RFC5769_TRANSACTION) is None or data[:2] == b"\x01\x01"
    is_stun(data)


ATTRIBUTE_TYPES = st.sampled_from([0x0001, 0x0020, 0x8022, 0x8028, 0x0008, 0xFFFF])


@settings(max_examples=1000, deadline=None)
@given(
    st.lists(st.tuples(ATTRIBUTE_TYPES, st.integers(0, 40), st.binary(max_size=40)), max_size=5),
    st.integers(-8, 8),
)
def test_the_parser_never_raises_on_mangled_responses(
    attributes: list[tuple[int, int, bytes]], length_error: int
) -> None:
    """Well-framed headers with attributes whose declared and real sizes disagree, which
    reaches far deeper into the parser than random bytes."""
    body = b"".join(struct.pack("!HH", kind, size) + value for kind, size, value in attributes)
    length = max(0, min(0xFFFF, len(body) + length_error))
    header = struct.pack("!HHI12s", 0x0101, length, MAGIC_COOKIE, RFC5769_TRANSACTION)
    result = parse_binding_response(header + body, RFC5769_TRANSACTION)
    if result is not None:
        host, port = result
        assert 0 <= port <= 0xFFFF
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)


# -- against coturn -------------------------------------------------------------------------------


@pytest.fixture
def coturn(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """coturn as a STUN-only server on a free UDP port of 127.0.0.1."""
    if shutil.which("turnserver") is None:
        skip_unless_ci("coturn (turnserver) is not installed")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port = int(probe.getsockname()[1])
    server = subprocess.Popen(
        stun_server_command("127.0.0.1", port, tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_stun("127.0.0.1", port)
        yield "127.0.0.1", port
    finally:
        server.kill()
        server.wait()


def test_coturn_reports_the_address_it_saw(coturn: tuple[str, int]) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(5)
        transaction, request = binding_request()
        sock.sendto(request, coturn)
        answer, source = sock.recvfrom(2048)
        assert source == coturn
        assert is_stun(answer)
        assert parse_binding_response(answer, transaction) == sock.getsockname()
        assert parse_binding_response(answer, os.urandom(12)) is None
