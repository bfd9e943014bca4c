"""Per-request work does not grow with the data directory: with 10,000 tags and 2,000 peers the
gate's decision and its name lookups are index searches, never scans (checked by SQLite's query
plans, not by a clock)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import nacl.signing
import pytest

from ringdrop.access import MIGRATIONS, OPEN_RING_ID, LogWriter
from ringdrop.access.access import NICKNAME
from ringdrop.access.decision import DECIDE
from ringdrop.bao import ChunkRanges
from ringdrop.identity import PeerId
from ringdrop.node import Node
from ringdrop.node.server import Gate, ServeEvent
from ringdrop.protocol import GetRequest
from ringdrop.store.reader import ServingReads
from ringdrop.store.tags import DISPLAY_NAME, TAGGED_BLOBS

TAGS = 10_000
PEERS = 2_000
RINGS = 50


def _root(n: int) -> bytes:
    return n.to_bytes(4, "big") * 8


def _peer(n: int) -> PeerId:
    return PeerId(nacl.signing.SigningKey(n.to_bytes(4, "big") * 8).verify_key.encode())


@pytest.fixture
def crowded(sharer: Node, tmp_path: Path) -> tuple[Node, bytes, PeerId]:
    """The sharer with 10,000 tagged roots in 50 rings and 2,000 peers, plus one real share
    (returned with a member peer) among them."""
    film = tmp_path / "film.bin"
    film.write_bytes(b"x" * 100_000)
    sharer.create_ring("friends")
    member = _peer(PEERS - 1)
    sharer.add_member("friends", member)
    sharer.set_nickname(member, "bob")
    share = sharer.share(film, rings=["friends"])
    now = time.time()
    peers = [_peer(n).raw for n in range(PEERS - 1)]
    with sharer._store.db.transaction() as conn:
        conn.executemany(
            "INSERT INTO rings (id, name, created_at) VALUES (?, ?, ?)",
            [(100 + r, f"ring{r}", now) for r in range(RINGS)],
        )
        conn.executemany(
            "INSERT INTO peers (peer_id, nickname, added_at) VALUES (?, ?, ?)",
            [(raw, f"peer{n}", now) for n, raw in enumerate(peers)],
        )
        conn.executemany(
            "INSERT INTO ring_members (ring_id, peer_id, added_at) VALUES (?, ?, ?)",
            [(100 + n % RINGS, raw, now) for n, raw in enumerate(peers)],
        )
        conn.executemany(
            "INSERT INTO tags (name, root, format, display_name, created_at) "
            "VALUES (?, ?, 'raw', ?, ?)",
            [(_root(n).hex(), _root(n), f"file{n}", now) for n in range(TAGS)],
        )
        conn.executemany(
            "INSERT INTO attachments (hash, permission, ring_id, attached_at) "
            "VALUES (?, 'read', ?, ?)",
            [(_root(n), 100 + n % RINGS, now) for n in range(TAGS)],
        )
    return sharer, share.root, member


def _plan(node: Node, sql: str, bindings: Any) -> list[str]:
    with node._store.db.snapshot() as conn:
        return [str(row[3]) for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", bindings)]


def _scans(plan: list[str]) -> list[str]:
    return [step for step in plan if step.startswith("SCAN") and step != "SCAN CONSTANT ROW"]


def test_the_decision_and_the_name_lookups_search_indexes_at_scale(
    crowded: tuple[Node, bytes, PeerId],
) -> None:
    node, root, member = crowded
    bindings = {"open": OPEN_RING_ID, "peer": member.raw, "root": root, "operation": "read"}
    decide = _plan(node, DECIDE, bindings | {"now": time.time()})
    nickname = _plan(node, NICKNAME, (member.raw,))
    name = _plan(node, DISPLAY_NAME, (root,))
    assert _scans(decide) == []
    assert _scans(nickname) == []
    assert _scans(name) == []
    assert any("USING PRIMARY KEY" in step for step in nickname)
    assert any("USING INDEX tags_by_root" in step for step in name)


def test_listing_shares_joins_each_tag_to_its_blob_by_index(
    crowded: tuple[Node, bytes, PeerId],
) -> None:
    node, _, _ = crowded
    plan = _plan(node, TAGGED_BLOBS, ())
    # Listing reads every tag, by nature; each tag's blob must be found, not scanned for.
    assert [step for step in _scans(plan) if " b" in step] == []


def test_the_gate_answers_correctly_among_thousands(
    crowded: tuple[Node, bytes, PeerId], capsys: pytest.CaptureFixture[str]
) -> None:
    node, root, member = crowded
    events: list[ServeEvent] = []
    logs = LogWriter(node._store.db.path)
    reads = ServingReads(node._store.layout, MIGRATIONS)
    try:
        gate = Gate(reads, logs, events.append)
        request = GetRequest(root, ChunkRanges.all())
        gate.answer(member, request)  # the first use compiles the statements
        started = time.perf_counter()
        answer = gate.answer(member, request)
        took = time.perf_counter() - started
        assert answer.header.status == "allowed"
        assert (answer.nickname, answer.name) == ("bob", "film.bin")
        gate.finished(member, request, answer, 0, "interrupted")
        assert answer.encoder is not None
        assert len(node.shares()) == 1  # tags without a blob are not shares
    finally:
        reads.close()
        logs.close()
    assert [(e.nickname, e.name, e.outcome) for e in events] == [("bob", "film.bin", "interrupted")]
    with capsys.disabled():
        print(
            f"\n{TAGS} tags, {PEERS} peers: one decision with its lookups took {took * 1e3:.2f} ms"
        )
