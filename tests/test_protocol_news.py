"""The news requests of the wire protocol (announce, since) and the NEWS frame: encodings,
limits, and the request machines' paths through them."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringdrop.access.announcement import MAX_ANNOUNCEMENT_BYTES
from ringdrop.access.manifest import MAX_MANIFEST_BYTES
from ringdrop.errors import LocalProtocolError, ProtocolError
from ringdrop.protocol import (
    MAX_ANNOUNCEMENTS,
    MAX_NEWS_BYTES,
    MAX_REQUEST_BYTES,
    AnnounceRequest,
    News,
    Requester,
    Responder,
    ResponseHeader,
    SinceRequest,
    State,
    StreamEnded,
    decode,
    encode,
)

blobs = st.binary(min_size=1, max_size=64)
news_bodies = st.builds(
    News,
    blobs,
    st.lists(blobs, max_size=MAX_ANNOUNCEMENTS).map(tuple),
    st.booleans(),
)
addresses = (
    st.ip_addresses(v=4)
    .map(str)
    .flatmap(lambda host: st.tuples(st.just(host), st.integers(1, 65535)))
)
since_requests = st.builds(
    SinceRequest,
    st.binary(min_size=16, max_size=16),
    st.integers(0, (1 << 64) - 1),
    st.none() | st.just("https://relay.example/"),
    st.lists(addresses, max_size=8).map(tuple),
)


@given(news_bodies)
def test_news_and_announce_requests_round_trip(news: News) -> None:
    assert decode(encode(news)) == news
    if news.announcements and not news.more:
        assert decode(encode(AnnounceRequest(news))) == AnnounceRequest(news)


@given(since_requests)
def test_since_requests_round_trip(request: SinceRequest) -> None:
    assert decode(encode(request)) == request


def test_the_largest_news_fits_one_request_and_one_frame() -> None:
    largest = News(
        b"m" * MAX_MANIFEST_BYTES, tuple(b"a" * MAX_ANNOUNCEMENT_BYTES for _ in range(16))
    )
    assert len(encode(AnnounceRequest(largest))) - 5 <= MAX_REQUEST_BYTES
    assert len(encode(largest)) - 5 <= MAX_NEWS_BYTES


@pytest.mark.parametrize(
    "make",
    [
        lambda: News(b"m", tuple(b"a" for _ in range(MAX_ANNOUNCEMENTS + 1))),
        lambda: News(b"m", (b"a" * (MAX_ANNOUNCEMENT_BYTES + 1),)),
        lambda: News(b"", (b"a",)),
        lambda: AnnounceRequest(News(b"m")),
        lambda: AnnounceRequest(News(b"m", (b"a",), more=True)),
        lambda: SinceRequest(b"r" * 15, 0),
        lambda: SinceRequest(b"r" * 16, 1 << 64),
        lambda: SinceRequest(b"r" * 16, 0, None, tuple(("192.0.2.1", 1) for _ in range(9))),
    ],
)
def test_invalid_news_messages_cannot_be_made(make: Callable[[], object]) -> None:
    with pytest.raises(LocalProtocolError):
        make()


def _request(operation: int, body: bytes) -> bytes:
    payload = bytes([1, operation]) + body
    return bytes([0x10]) + len(payload).to_bytes(4, "big") + payload


@pytest.mark.parametrize(
    ("frame", "problem"),
    [
        (_request(6, b"\x00\x00\x01m\x00"), "without announcements"),
        (_request(6, b"\x01\x00\x01m\x01\x00\x01a"), "flag more"),
        (_request(6, b"\x02\x00\x01m\x01\x00\x01a"), "unknown flags"),
        (_request(6, b"\x00\x00\x01m\x11" + b"\x00\x01a" * 17), "more than 16"),
        (_request(6, b"\x00\x00\x01m\x01\x00\x01a\x00"), "trailing"),
        (_request(7, b"r" * 16 + bytes(8)), "cut short"),
        (_request(7, b"r" * 16 + bytes(8) + b"\x00\x00\x00"), "trailing"),
    ],
)
def test_a_broken_news_request_is_refused_naming_what_is_wrong(frame: bytes, problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        decode(frame)


def _exchange(request: AnnounceRequest | SinceRequest) -> tuple[Requester, Responder]:
    requester, responder = Requester(), Responder()
    responder.receive_data(requester.send_request(request), True)
    return requester, responder


def test_an_allowed_announce_is_the_header_alone() -> None:
    requester, responder = _exchange(AnnounceRequest(News(b"m", (b"a",))))
    wire = responder.send_header(ResponseHeader("allowed"))
    assert responder.state is State.DONE
    assert requester.receive_data(wire, True) == [ResponseHeader("allowed"), StreamEnded()]
    with pytest.raises(LocalProtocolError):
        responder.send_news(News(b"m"))


def test_news_after_an_allowed_announce_breaks_the_protocol() -> None:
    requester, _ = _exchange(AnnounceRequest(News(b"m", (b"a",))))
    with pytest.raises(ProtocolError):
        requester.receive_data(encode(ResponseHeader("allowed")) + encode(News(b"m")), True)
    assert requester.state is State.ERROR


def test_an_allowed_since_is_answered_by_one_news_frame() -> None:
    requester, responder = _exchange(SinceRequest(b"r" * 16, 3))
    news = News(b"m", (b"a", b"b"), more=True)
    wire = responder.send_header(ResponseHeader("allowed")) + responder.send_news(news)
    assert responder.state is State.DONE
    assert requester.receive_data(wire, True) == [ResponseHeader("allowed"), news, StreamEnded()]


def test_a_since_answer_ending_before_its_news_breaks_the_protocol() -> None:
    requester, _ = _exchange(SinceRequest(b"r" * 16, 3))
    with pytest.raises(ProtocolError, match="middle"):
        requester.receive_data(encode(ResponseHeader("allowed")), True)
