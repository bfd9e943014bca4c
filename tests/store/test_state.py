"""A blob's state: one module writes it (checked by reading the source), and the transitions it
performs on a real store."""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

import ringdrop
from ringdrop.store import Store, state
from tests.files import random_file

PACKAGE = Path(ringdrop.__file__).parent
SIZE = 100_000

# SQL that changes a row of the tables holding a blob's state.
WRITES = re.compile(
    r"\b(?:(?:INSERT|REPLACE)(?:\s+OR\s+\w+)?\s+INTO|UPDATE(?:\s+OR\s+\w+)?|DELETE\s+FROM)"
    r"\s+(?:blobs|partials)\b"
)


def state_writers(package: Path) -> dict[str, list[str]]:
    """Each module of `package` whose string literals hold SQL writing `blobs` or `partials`,
    with the lines they are on."""
    found: dict[str, list[str]] = {}
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                for match in WRITES.finditer(node.value):
                    module = path.relative_to(package).as_posix()
                    found.setdefault(module, []).append(f"line {node.lineno}: {match.group()}")
    return found


def test_only_the_state_module_writes_a_blobs_state() -> None:
    writers = state_writers(PACKAGE)
    others = {m: lines for m, lines in writers.items() if m != "store/state.py"}
    assert not others, "a blob's state changes only through ringdrop.store.state"
    assert "store/state.py" in writers, "the scan finds the state module's own writes"


def pending(store: Store) -> set[Path]:
    with store.db.snapshot() as conn:
        rows = conn.execute("SELECT path FROM pending_deletes").fetchall()
    return {store.layout.absolute(str(rel)) for (rel,) in rows}


def load(store: Store, root: bytes) -> state.Complete | None:
    with store.db.snapshot() as conn:
        return state.load(conn, root)


def test_each_kind_of_blob_loads_as_its_state(store: Store, tmp_path: Path) -> None:
    small, _ = store.import_bytes(b"small")
    data = random_file(tmp_path / "a.bin", SIZE)
    owned, _ = store.import_file(tmp_path / "a.bin")
    random_file(tmp_path / "b.bin", SIZE + 1)
    ref, _ = store.import_file(tmp_path / "b.bin", mode="reference")
    assert load(store, small.root) == state.Inline(b"small")
    assert load(store, owned.root) == state.Owned(len(data))
    mtime = (tmp_path / "b.bin").stat().st_mtime_ns
    assert load(store, ref.root) == state.Reference(SIZE + 1, tmp_path / "b.bin", mtime)
    assert load(store, bytes(32)) is None


def test_a_copy_replaces_a_reference_and_a_reference_never_replaces_a_copy(
    store: Store, tmp_path: Path
) -> None:
    random_file(tmp_path / "a.bin", SIZE)
    info, _ = store.import_file(tmp_path / "a.bin", mode="reference")
    assert isinstance(load(store, info.root), state.Reference)
    store.import_file(tmp_path / "a.bin")
    assert load(store, info.root) == state.Owned(SIZE)
    store.import_file(tmp_path / "a.bin", mode="reference")
    assert load(store, info.root) == state.Owned(SIZE)
    assert store.read_bytes(info.root) == (tmp_path / "a.bin").read_bytes()


def test_a_newer_reference_replaces_an_older_one(store: Store, tmp_path: Path) -> None:
    data = random_file(tmp_path / "a.bin", SIZE)
    (tmp_path / "b.bin").write_bytes(data)
    info, _ = store.import_file(tmp_path / "a.bin", mode="reference")
    store.import_file(tmp_path / "b.bin", mode="reference")
    now = load(store, info.root)
    assert isinstance(now, state.Reference)
    assert now.source == tmp_path / "b.bin"


def test_hand_over_turns_an_owned_blob_into_a_reference_and_pends_its_data_file(
    store: Store, tmp_path: Path
) -> None:
    data = random_file(tmp_path / "a.bin", SIZE)
    info, _ = store.import_file(tmp_path / "a.bin")
    out = tmp_path / "out.bin"
    out.write_bytes(data)
    mtime = out.stat().st_mtime_ns
    with store.db.transaction() as conn:
        released = state.hand_over(conn, store.layout, info.root, out, mtime)
    assert released == store.layout.blob_data(info.root)
    assert released in pending(store)
    assert load(store, info.root) == state.Reference(SIZE, out, mtime)


def test_hand_over_updates_only_a_reference_to_the_same_file(store: Store, tmp_path: Path) -> None:
    random_file(tmp_path / "a.bin", SIZE)
    info, _ = store.import_file(tmp_path / "a.bin", mode="reference")
    before = load(store, info.root)
    with store.db.transaction() as conn:
        assert state.hand_over(conn, store.layout, info.root, tmp_path / "other", 7) is None
    assert load(store, info.root) == before
    with store.db.transaction() as conn:
        assert state.hand_over(conn, store.layout, info.root, tmp_path / "a.bin", 7) is None
    assert load(store, info.root) == state.Reference(SIZE, tmp_path / "a.bin", 7)


def test_delete_pends_the_stores_own_files_and_never_the_users(
    store: Store, tmp_path: Path
) -> None:
    random_file(tmp_path / "a.bin", SIZE)
    owned, _ = store.import_file(tmp_path / "a.bin")
    random_file(tmp_path / "b.bin", SIZE + 1)
    ref, _ = store.import_file(tmp_path / "b.bin", mode="reference")
    with store.db.transaction() as conn:
        assert state.delete(conn, store.layout, owned.root)
        assert state.delete(conn, store.layout, ref.root)
        assert not state.delete(conn, store.layout, ref.root)
    layout = store.layout
    assert pending(store) == {
        layout.blob_data(owned.root),
        layout.blob_outboard(owned.root),
        layout.blob_outboard(ref.root),
    }
    assert load(store, owned.root) is None
    assert load(store, ref.root) is None
    store.gc()
    assert (tmp_path / "b.bin").exists()
    assert not layout.blob_data(owned.root).exists()


def test_a_partial_is_recorded_updated_and_dropped(store: Store) -> None:
    root = os.urandom(32)
    with store.db.transaction() as conn:
        assert state.open_partial(conn, store.layout, root) is None
        assert state.open_partial(conn, store.layout, root) == state.Partial(None, proven=False)
        state.record_partial(conn, root, state.Partial(5000, proven=True))
        assert state.open_partial(conn, store.layout, root) == state.Partial(5000, proven=True)
        state.drop_partial(conn, root)
        assert state.open_partial(conn, store.layout, root) is None
