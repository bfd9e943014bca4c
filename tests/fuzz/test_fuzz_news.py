"""Fuzzing a ring's news: signed announcements (ringdrop/access/announcement.py), the announce
and since requests and the NEWS frame, the request machines that read their answers, and a
member's node taking hostile news (ringdrop/node/news.py) into its real database. Nothing but
the parsers' own errors may come out, memory stays a bounded multiple of the input, and news a
member may not keep leaves nothing in its inbox."""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import nacl.signing
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringdrop.access import LogWriter
from ringdrop.access.announcement import Announcement, parse_announcement, sign_announcement
from ringdrop.access.manifest import ManifestMember, sign_manifest
from ringdrop.errors import InvalidAnnouncementError, ProtocolError
from ringdrop.identity import Identity
from ringdrop.node import Node
from ringdrop.node.news import NewsService, check_news
from ringdrop.protocol import (
    AnnounceRequest,
    Message,
    News,
    Requester,
    ResponseHeader,
    SinceRequest,
    State,
    decode,
    encode,
)
from tests.fuzz.common import fuzz, peak_memory, within
from tests.fuzz.test_fuzz_protocol import mangled, pieces

OWNER = Identity(nacl.signing.SigningKey(b"O" * 32))
STRANGER = Identity(nacl.signing.SigningKey(b"S" * 32))
RING = b"R" * 16


def _announcement(by: Identity, sequence: int, name: str = "photo.jpg") -> Announcement:
    return sign_announcement(
        by,
        ring_id=RING,
        ring_name="family",
        sequence=sequence,
        at=1_800_000_000,
        kind="share",
        root=bytes([sequence % 256]) * 32,
        format="blob",
        size=4096,
        name=name,
        relay="https://relay.example/",
    )


VALID = _announcement(OWNER, 7).raw


@fuzz
@given(st.binary(max_size=2048))
def test_any_bytes_are_an_announcement_or_refused(data: bytes) -> None:
    result, peak = peak_memory(lambda: parse_announcement(data))
    assert isinstance(result, InvalidAnnouncementError | Announcement)
    assert within(peak, len(data))


@fuzz
@given(mangled(VALID))
def test_a_mangled_announcement_is_refused_unless_it_is_the_original(data: bytes) -> None:
    result, peak = peak_memory(lambda: parse_announcement(data))
    assert within(peak, len(data))
    if isinstance(result, Announcement):
        assert data == VALID  # every other byte string fails the owner's signature
    else:
        assert isinstance(result, InvalidAnnouncementError)


blobs = st.binary(min_size=1, max_size=96)
news_messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(News, blobs, st.lists(blobs, max_size=16).map(tuple), st.booleans()),
    st.builds(News, blobs, st.lists(blobs, min_size=1, max_size=16).map(tuple)).map(
        AnnounceRequest
    ),
    st.builds(
        SinceRequest,
        st.binary(min_size=16, max_size=16),
        st.integers(0, (1 << 64) - 1),
        st.none() | st.just("https://relay.example/"),
    ),
)


@fuzz
@given(news_messages.flatmap(lambda m: mangled(encode(m))))
def test_a_mangled_news_frame_or_request_is_a_message_or_a_protocol_error(frame: bytes) -> None:
    result, peak = peak_memory(lambda: decode(frame))
    assert isinstance(result, ProtocolError | Message)
    assert within(peak, len(frame))


def _waiting(request: AnnounceRequest | SinceRequest) -> Requester:
    machine = Requester()
    machine.send_request(request)
    return machine


@fuzz
@given(
    st.booleans(),
    st.lists(
        st.one_of(
            st.binary(max_size=256),
            news_messages.map(encode),
            st.just(encode(ResponseHeader("allowed"))),
        ),
        max_size=5,
    ),
    st.lists(st.integers(0, 2048), max_size=6),
)
def test_a_news_requester_takes_any_answer_or_errs_for_good(
    since: bool, frames: list[bytes], cuts: list[int]
) -> None:
    request: AnnounceRequest | SinceRequest = (
        SinceRequest(RING, 0) if since else AnnounceRequest(News(b"m", (b"a",)))
    )
    machine = _waiting(request)
    body = b"".join(frames)
    fed = 0
    for piece in pieces(body, cuts):
        fed += len(piece)
        result, peak = peak_memory(partial(machine.receive_data, piece, False))
        assert within(peak, fed)
        if isinstance(result, ProtocolError):
            assert machine.state is State.ERROR
            return
        assert isinstance(result, list)


# -- a member's node taking hostile news ----------------------------------------------------------


@pytest.fixture(scope="module")
def member() -> Iterator[tuple[Node, NewsService]]:
    with tempfile.TemporaryDirectory() as folder:
        node = Node(Path(folder), relays=["disabled"], stun=["disabled"], discovery=["disabled"])
        node.add_peer(OWNER.peer_id, "owner")
        logs = LogWriter(node._store.db.path)
        try:
            yield node, NewsService(node, logs)
        finally:
            logs.close()
            node.close()


def _news(by: Identity, member: Node, count: int) -> News:
    now = int(time.time())
    manifest = sign_manifest(
        by,
        ring_id=RING if by == OWNER else b"X" * 16,
        version=1,
        name="family",
        members=[ManifestMember(member.peer_id)],
        members_serve=True,
        issued_at=now,
        valid_until=now + 3600,
    )
    return News(manifest.raw, tuple(_announcement(by, n + 1).raw for n in range(count)))


@fuzz
@given(st.integers(1, 4), st.data())
def test_a_strangers_news_however_mangled_leaves_the_inbox_as_it_was(
    member: tuple[Node, NewsService], count: int, data: st.DataObject
) -> None:
    node, service = member
    honest = _news(STRANGER, node, count)
    manifest = data.draw(st.one_of(st.just(honest.manifest), mangled(honest.manifest)))
    raws = tuple(data.draw(st.one_of(st.just(a), mangled(a))) for a in honest.announcements)
    news = News(manifest or b"m", tuple(r or b"a" for r in raws))
    before = node.inbox()
    header, changed = service.announce(STRANGER.peer_id, AnnounceRequest(news))
    assert header.status == "denied"
    assert changed == []
    assert node.inbox() == before
    assert node._access.manifest(b"X" * 16) is None
    if isinstance(check_news(STRANGER.peer_id, news), tuple):
        assert header.reason == "this node does not know the ring's owner"


@fuzz
@given(st.integers(1, 4), st.data())
def test_a_known_owners_mangled_news_is_kept_only_as_the_owner_signed_it(
    member: tuple[Node, NewsService], count: int, data: st.DataObject
) -> None:
    node, service = member
    honest = _news(OWNER, node, count)
    raws = tuple(data.draw(st.one_of(st.just(a), mangled(a))) for a in honest.announcements)
    news = News(honest.manifest, tuple(r or b"a" for r in raws))
    header, changed = service.announce(OWNER.peer_id, AnnounceRequest(news))
    if raws != honest.announcements:
        assert header.status == "denied"  # one forged announcement refuses the whole request
    assert len(changed) <= count
    for entry in changed:
        assert parse_announcement(entry.raw).owner == OWNER.peer_id
