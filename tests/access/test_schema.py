"""The data directory's schema: the store's and access's steps form one sequence, and a database
written before access had migrations of its own opens unchanged and gains the new steps."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ringdrop.access import MIGRATIONS, Access
from ringdrop.access.schema import ACCESS_MIGRATIONS
from ringdrop.store import Store
from ringdrop.store.collection import Collection, Entry
from ringdrop.store.db import Database
from ringdrop.store.layout import Layout
from ringdrop.store.schema import MIGRATIONS as STORE_MIGRATIONS

# What `ringdrop.store.schema.MIGRATIONS` was before access had its own package: the store's
# tables as step 1, the access tables as step 2.
OLD_MIGRATIONS = (STORE_MIGRATIONS[0], ACCESS_MIGRATIONS[0])


def test_the_steps_of_both_layers_form_one_numbered_sequence() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert {m.version for m in STORE_MIGRATIONS} | {m.version for m in ACCESS_MIGRATIONS} == {
        m.version for m in MIGRATIONS
    }
    assert [m.version for m in OLD_MIGRATIONS] == [1, 2]


def test_a_database_made_with_the_old_migration_list_opens_and_keeps_its_data(
    tmp_path: Path,
) -> None:
    db_path = Layout(tmp_path / "store").db
    db_path.parent.mkdir()
    old = Database(db_path, OLD_MIGRATIONS)
    root = hashlib.sha256(b"notes").digest()
    with old.transaction() as conn:  # as the old code wrote a ring, its content and its tag
        conn.execute("INSERT INTO rings (name, created_at) VALUES ('friends', 0)")
        conn.execute(
            "INSERT INTO attachments (hash, permission, ring_id, attached_at) "
            "VALUES (?, 'read', 2, 0)",
            (root,),
        )
        conn.execute(
            "INSERT INTO tags (name, root, format, display_name, created_at) "
            "VALUES (?, ?, 'raw', 'notes.txt', 0)",
            (root.hex(), root),
        )
    assert old.version == 2
    old.close()

    with Store(tmp_path / "store", MIGRATIONS) as store:
        assert store.db.version == len(MIGRATIONS)
        access = Access(store.db)
        assert [(r.name, r.content_count) for r in access.rings()] == [
            ("open", 0),
            ("friends", 1),
        ]
        assert [a.ring for a in access.attachments(root)] == ["friends"]
        with store.db.snapshot() as conn:  # an old ring gains a random id; the open ring none
            ids = {n: u for n, u in conn.execute("SELECT name, uid FROM rings")}
        assert ids["open"] is None
        assert isinstance(ids["friends"], bytes)
        assert len(ids["friends"]) == 16
        assert [(t.root, t.format) for t in store.tags()] == [(root, "blob")]


def test_collections_recorded_before_their_order_was_kept_get_it_from_their_blobs(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "album"
    folder.mkdir()
    for name, data in (("b.txt", b"second"), ("a.txt", b"first"), ("c.txt", b"third")):
        (folder / name).write_bytes(data)
    with Store(tmp_path / "store", MIGRATIONS[:3]) as store:
        shared = store.import_directory(folder)
        gone = store.import_bytes(Collection.of([Entry("x.txt", bytes(32), 0)]).encode())[0]
        members = [e.root for e in shared.collection.entries]
        with store.db.transaction() as conn:  # as record_collection wrote them at step 3
            conn.executemany(
                "INSERT INTO collection_members (member, collection) VALUES (?, ?)",
                [(m, shared.info.root) for m in members] + [(bytes(32), gone.root)],
            )
            conn.execute("DELETE FROM blobs WHERE root = ?", (gone.root,))
        assert store.db.version == 3

    with Store(tmp_path / "store", MIGRATIONS) as store:
        access = Access(store.db)
        assert access.recorded_members(shared.info.root, [0, 1, 2]) == (3, members)
        assert access.recorded_members(gone.root, [0]) is None
