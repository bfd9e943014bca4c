"""The room an export needs: what it must write, not what it hands over."""

from __future__ import annotations

from pathlib import Path

from ringdrop.store import Store
from ringdrop.store.space import export_needs
from tests.files import random_file, write


def test_an_export_needs_room_for_what_it_writes_and_not_for_what_it_hands_over(
    store: Store, tmp_path: Path
) -> None:
    big = random_file(tmp_path / "src" / "a.bin", 100_000)
    write(tmp_path / "src" / "again.bin", big)  # the same root twice: handed over once
    write(tmp_path / "src" / "small.txt", b"x" * 100)  # inline: always written
    imported = store.import_directory(tmp_path / "src")
    infos = [store.blob(e.root) for e in imported.collection.entries]
    assert all(infos)
    found = [i for i in infos if i is not None]
    here = tmp_path / "out"
    here.mkdir()
    assert export_needs(store.layout.blobs, found, here, keep=False) == 100_000 + 100
    assert export_needs(store.layout.blobs, found, here, keep=True) == 200_000 + 100
