"""Crash tests: a real subprocess downloading, importing or collecting garbage is SIGKILLed at a
random instant, again and again; after each kill the store must reopen consistent.

Invariants checked after every kill: every chunk group a partial marks valid holds the sender's
bytes; progress the worker reported flushed is still there; every blob the worker reported
committed (and did not untag) is complete and verifies; the whole store checks clean.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from ringdrop.bao import ChunkRanges, create_outboard
from ringdrop.store import Store
from tests.files import files_under, random_file

from .helpers import kill, read_all, spawn, wait_for_line

FAST = 8
SLOW = 60


def kill_after(proc_args: tuple[object, ...], rng: random.Random, most: float) -> list[str]:
    proc = spawn(*proc_args)
    time.sleep(rng.uniform(0, most))
    return kill(proc)


def assert_valid_groups_hold_the_senders_bytes(store: Store, root: bytes, source: bytes) -> None:
    with store.partial(root) as partial:
        on_disk = partial.paths.data.read_bytes()
        for start, end in partial.valid():
            first = start * 1024
            last = len(source) if end is None else min(end * 1024, len(source))
            assert on_disk[first:last] == source[first:last], f"chunks {start}..{end} are wrong"


def run_downloads(tmp_path: Path, iterations: int, seed: int) -> None:
    """Downloads three blobs in turn, each resumed after kills until it is promoted."""
    rng = random.Random(seed)
    senders = []
    for i in range(3):
        data = random_file(tmp_path / "sender" / f"{i}.data", rng.randint(200_000, 1_500_000))
        root, _ = create_outboard(tmp_path / "sender" / f"{i}.data", tmp_path / f"{i}.obao")
        senders.append((tmp_path / "sender" / f"{i}.data", tmp_path / f"{i}.obao", root, data))
    store_path = tmp_path / "store"
    for _ in range(iterations):
        with Store.open(store_path) as store:
            pending = [s for s in senders if store.blob(s[2]) is None]
        if not pending:
            return
        path, outboard, root, data = pending[0]
        args = ("download", store_path, path, outboard, root.hex(), len(data), 0.002)
        lines = [line.split() for line in kill_after(args, rng, 0.25)]
        flushed = [ChunkRanges.from_bytes(bytes.fromhex(w[1])) for w in lines if w[0] == "flushed"]
        with Store.open(store_path) as store:
            if store.blob(root) is not None:
                assert read_all(store, root) == data
                continue
            assert ["promoted"] not in lines, "a promoted blob was lost"
            assert_valid_groups_hold_the_senders_bytes(store, root, data)
            if flushed:
                with store.partial(root) as partial:
                    assert flushed[-1] - partial.valid() == ChunkRanges(), "flushed progress lost"
    with Store.open(store_path) as store:
        assert store.check().ok


def test_killed_downloads_never_mark_bad_data_and_keep_flushed_progress(tmp_path: Path) -> None:
    run_downloads(tmp_path, FAST, seed=1)


@pytest.mark.slow
def test_killed_downloads_many_times(tmp_path: Path) -> None:
    for seed in range(SLOW // 10):
        run_downloads(tmp_path / str(seed), 10, seed)


def run_imports(tmp_path: Path, iterations: int, seed: int) -> None:
    rng = random.Random(seed)
    store_path = tmp_path / "store"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    kept: set[str] = set()
    for i in range(iterations):
        lines = kill_after(("import", store_path, scratch, seed * 1000 + i), rng, 0.6)
        for words in map(str.split, lines):
            if words[0] == "committed":
                kept.add(words[1])
            elif words[0] == "untagging":
                kept.discard(words[1])
        with Store.open(store_path) as store:
            report = store.check()
            assert report.ok, report.problems
            for hex_root in kept:
                assert store.blob(bytes.fromhex(hex_root)) is not None, "committed blob lost"
            assert all(store.blob(t.root) is not None for t in store.tags())
    with Store.open(store_path) as store:
        store.gc()
        assert files_under(store_path / "tmp") == []
        assert store.check().ok


def test_killed_imports_leave_a_consistent_store(tmp_path: Path) -> None:
    run_imports(tmp_path, FAST, seed=2)


@pytest.mark.slow
def test_killed_imports_many_times(tmp_path: Path) -> None:
    run_imports(tmp_path, SLOW, seed=3)


def run_gcs(tmp_path: Path, iterations: int, seed: int) -> None:
    rng = random.Random(seed)
    store_path = tmp_path / "store"
    for i in range(40):
        random_file(tmp_path / "tree" / f"d{i % 4}" / f"f{i}", rng.choice([5, 30_000, 70_000]))
    random_file(tmp_path / "referenced", 90_000)
    with Store.open(store_path) as store:
        tree = store.import_directory(tmp_path / "tree")
        single, _ = store.import_bytes(rng.randbytes(300_000), tag="single")
        ref, _ = store.import_file(tmp_path / "referenced", mode="reference")
    keep = [tree.info.root, single.root, ref.root, *(e.root for e in tree.collection.entries)]
    for i in range(iterations):
        kill_after(("gc", store_path, i), rng, 0.5)
        with Store.open(store_path) as store:
            report = store.check()
            assert report.ok, report.problems
            for root in keep:
                assert store.blob(root) is not None, "tagged content was collected"
    with Store.open(store_path) as store:
        store.gc()
        tagged = {t.root for t in store.tags()} | {e.root for e in tree.collection.entries}
        assert {b.root for b in store.blobs()} == tagged
        expected = {
            p
            for b in store.blobs()
            if b.location == "file"
            for p in (store.layout.blob_data(b.root), store.layout.blob_outboard(b.root))
        }
        expected.add(store.layout.blob_outboard(ref.root))
        assert set(files_under(store_path / "blobs")) == expected


def test_killed_garbage_collections_keep_tagged_content(tmp_path: Path) -> None:
    run_gcs(tmp_path, FAST, seed=4)


@pytest.mark.slow
def test_killed_garbage_collections_many_times(tmp_path: Path) -> None:
    run_gcs(tmp_path, SLOW, seed=5)


@pytest.mark.parametrize("moves", [1, 2])
def test_a_promotion_killed_before_its_commit_keeps_the_whole_download(
    tmp_path: Path, moves: int
) -> None:
    """Killed after moving the data (1) or both files (2) into blobs/, before the commit that
    records the blob: the reopened download is still whole and promotes without a byte fetched."""
    data = random_file(tmp_path / "sender.data", 700_000)
    root, _ = create_outboard(tmp_path / "sender.data", tmp_path / "sender.obao")
    store_path = tmp_path / "store"
    args = (tmp_path / "sender.data", tmp_path / "sender.obao", root.hex(), len(data), 0)
    proc = spawn("download", store_path, *args, moves)
    wait_for_line(proc, ("at move",), failsafe=60)
    kill(proc)
    with Store.open(store_path) as store:
        assert store.blob(root) is None
        with store.partial(root) as partial:
            assert partial.complete, f"{partial.valid_bytes} of {len(data)} bytes left"
            partial.promote(tag="resumed")
        assert read_all(store, root) == data
        assert store.check().ok
