"""Several processes on one data directory: writers commit whole transactions, readers never see
half-written state."""

from __future__ import annotations

import time
from pathlib import Path

from ringdrop.errors import NotFoundError
from ringdrop.store import Store

from .helpers import kill, read_all, spawn, wait_for_line

# Enough to fail on a hang, never on a slow machine: the loops end on what they wait for.
FAILSAFE = 300.0


def test_a_reader_sees_only_whole_blobs_while_another_process_imports(tmp_path: Path) -> None:
    (tmp_path / "scratch").mkdir()
    writer = spawn("import", tmp_path / "store", tmp_path / "scratch", 7)
    verified: set[bytes] = set()
    try:
        with Store.open(tmp_path / "store") as store:
            # Read while the writer writes, until ten of its blobs were read back whole.
            deadline = time.monotonic() + FAILSAFE
            while len(verified) < 10:
                assert time.monotonic() < deadline, f"only {len(verified)} blobs read back"
                with store.db.snapshot():
                    tags = store.tags()
                    infos = {t.root: store.blob(t.root) for t in tags}
                assert None not in infos.values(), "a tag points at a missing blob"
                for tag in tags[-3:]:
                    try:
                        data = read_all(store, tag.root)
                    except NotFoundError:
                        assert store.tag(tag.name) is None, "a tagged blob vanished"
                        continue
                    info = infos[tag.root]
                    assert info is not None
                    assert len(data) == info.size
                    verified.add(tag.root)
    finally:
        kill(writer)


def test_two_writers_and_gc_share_a_fresh_store(tmp_path: Path) -> None:
    (tmp_path / "scratch").mkdir()
    workers = [
        spawn("import", tmp_path / "store", tmp_path / "scratch", 1),
        spawn("import", tmp_path / "store", tmp_path / "scratch", 2),
        spawn("gc", tmp_path / "store", 3),
    ]
    # Each worker gets some work done while the others run.
    for worker in workers:
        wait_for_line(worker, ("committed", "gc"), FAILSAFE)
    for worker in workers:
        kill(worker)
    with Store.open(tmp_path / "store") as store:
        assert store.check().ok
        assert all(store.blob(t.root) is not None for t in store.tags())


def test_a_tag_set_in_one_process_is_seen_by_another_at_once(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s") as one, Store.open(tmp_path / "s") as two:
        info, _ = one.import_bytes(b"shared", tag="news")
        assert two.tag("news") is not None
        assert two.read_bytes(info.root) == b"shared"
