"""The data directory's schema: the store's and access's steps form one sequence, and a database
written before access had migrations of its own opens unchanged and gains the new steps."""

from __future__ import annotations

import hashlib
from pathlib import Path

from ringdrop.access import MIGRATIONS, Access
from ringdrop.access.schema import ACCESS_MIGRATIONS
from ringdrop.store import Store
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
    Access(old).create_ring("friends")
    Access(old).attach(root, "friends", name="notes.txt", format="blob", size=5)
    with old.transaction() as conn:  # as the old code wrote a file's tag
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
        assert [(t.root, t.format) for t in store.tags()] == [(root, "blob")]
