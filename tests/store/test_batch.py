"""Many blobs at once: the group commit of small verified blobs (all or nothing, even under
SIGKILL), the batch lookup of complete roots, and encoders for many members."""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from ringdrop.bao import ChunkRanges, outboard_from_bytes
from ringdrop.errors import IntegrityError
from ringdrop.store import Store

from .helpers import kill, read_all, spawn
from .worker import small_group


def small(data: bytes) -> tuple[bytes, bytes]:
    return outboard_from_bytes(data)[0], data


def test_a_group_commit_stores_every_member_complete_and_verified(store: Store) -> None:
    items = [small(bytes([i]) * i) for i in range(0, 200)] + [small(b"x" * 16384)]
    store.commit_small(items)
    assert store.complete_roots(root for root, _ in items) == {root for root, _ in items}
    for root, data in items:
        info = store.blob(root)
        assert info is not None
        assert (info.location, info.size) == ("inline", len(data))
        assert read_all(store, root) == data
    assert store.check().ok


def test_one_member_that_does_not_match_its_root_stores_none_of_the_group(store: Store) -> None:
    items = [small(b"first"), small(b"second")]
    items.append((items[0][0], b"not the first"))
    with pytest.raises(IntegrityError):
        store.commit_small(items)
    assert store.complete_roots(root for root, _ in items) == set()


def test_a_member_too_big_to_live_inline_is_refused(store: Store) -> None:
    with pytest.raises(ValueError, match="inline"):
        store.commit_small([small(b"y" * 16385)])


def test_committing_a_member_again_keeps_the_stored_one(store: Store) -> None:
    store.commit_small([small(b"same")])
    store.commit_small([small(b"same"), small(b"new")])
    assert len(store.blobs()) == 2


def test_complete_roots_finds_thousands_in_a_few_queries(store: Store) -> None:
    items = [small(i.to_bytes(4, "big")) for i in range(10_000)]
    store.commit_small(items)
    absent = [bytes([9]) * 32, bytes([8]) * 32]
    wanted = [root for root, _ in items[::2]] + absent
    assert store.complete_roots(wanted) == set(wanted) - set(absent)


def test_encoders_for_many_members_stream_each_and_mark_the_missing(store: Store) -> None:
    present = [small(b"a" * 100), small(b"b" * 5000)]
    store.commit_small(present)
    gone = bytes(32)
    encoders = store.encoders([(present[0][0], ChunkRanges.all()), (gone, ChunkRanges.all())])
    assert encoders[1] is None
    first = encoders[0]
    assert first is not None
    assert first.read(1 << 20) == (100).to_bytes(8, "little") + b"a" * 100


def test_killed_group_commits_leave_whole_groups_or_nothing(tmp_path: Path) -> None:
    """A process commits groups of 300 small blobs until SIGKILLed at a random instant, again
    and again: every group it said was committed is there, and no group is there in part."""
    rng = random.Random(7)
    store_path = tmp_path / "store"
    ever_committed = 0
    for seed in range(6):
        proc = spawn("commit-small", store_path, seed)
        time.sleep(rng.uniform(0.05, 0.6))
        lines = [line.split() for line in kill(proc)]
        started = [int(w[1]) for w in lines if w[0] == "committing"]
        committed = {int(w[1]) for w in lines if w[0] == "committed"}
        ever_committed += len(committed)
        with Store.open(store_path) as store:
            for group in started:
                roots = {root for root, _ in small_group(seed, group)}
                found = store.complete_roots(roots)
                assert found in (set(), roots), f"group {group} is there in part"
                assert group not in committed or found == roots, f"group {group} was lost"
            report = store.check()
            assert report.ok, report.problems
    assert ever_committed, "no group was ever committed: the kills came too early to test anything"


def test_a_folder_exports_in_batches_across_many_folders(tmp_path: Path) -> None:
    source = tmp_path / "tree"
    expected = {}
    for i in range(60):
        name = f"d{i % 20}/sub{i % 3}/f{i}" if i % 4 else f"top{i}"
        data = bytes([i]) * (i * 300 if i != 5 else 70_000)  # one file too big to be inline
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        (source / name).write_bytes(data)
        expected[name] = data
    dest = tmp_path / "out"
    with Store(tmp_path / "store", export_batch=7) as store:  # members read per transaction
        imported = store.import_directory(source)
        store.export_collection(imported.info.root, dest)
    written = {str(p.relative_to(dest)): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert written == expected, "every file, and no temporary file left behind"
