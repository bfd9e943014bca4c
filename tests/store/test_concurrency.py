"""Several processes on one data directory: writers commit whole transactions, readers never see
half-written state."""

from __future__ import annotations

import time
from pathlib import Path

from ringdrop.errors import NotFoundError
from ringdrop.store import Store

from .helpers import kill, read_all, spawn


def test_a_reader_sees_only_whole_blobs_while_another_process_imports(tmp_path: Path) -> None:
    (tmp_path / "scratch").mkdir()
    writer = spawn("import", tmp_path / "store", tmp_path / "scratch", 7)
    verified = set()
    try:
        with Store.open(tmp_path / "store") as store:
            deadline = time.monotonic() + 2.0
            while time.monotonic() < deadline:
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
        lines = kill(writer)
    committed = [line for line in lines if line.startswith("committed")]
    assert len(committed) >= 10
    assert len(verified) >= 10


def test_two_writers_and_gc_share_a_fresh_store(tmp_path: Path) -> None:
    (tmp_path / "scratch").mkdir()
    workers = [
        spawn("import", tmp_path / "store", tmp_path / "scratch", 1),
        spawn("import", tmp_path / "store", tmp_path / "scratch", 2),
        spawn("gc", tmp_path / "store", 3),
    ]
    time.sleep(1.5)
    outputs = [kill(w) for w in workers]
    assert all(any(line.startswith(("committed", "gc")) for line in out) for out in outputs)
    with Store.open(tmp_path / "store") as store:
        assert store.check().ok
        assert all(store.blob(t.root) is not None for t in store.tags())


def test_a_tag_set_in_one_process_is_seen_by_another_at_once(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s") as one, Store.open(tmp_path / "s") as two:
        info, _ = one.import_bytes(b"shared", tag="news")
        assert two.tag("news") is not None
        assert two.read_bytes(info.root) == b"shared"
