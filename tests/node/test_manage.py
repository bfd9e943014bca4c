"""The management use cases as the CLI and the TUI call them: through `Node` alone."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringdrop.access import CatalogRow
from ringdrop.errors import NotFoundError, OpenRingError
from ringdrop.node import Node


def test_attaching_a_share_lists_it_under_its_name_format_and_size(
    sharer: Node, receiver: Node, tmp_path: Path
) -> None:
    (tmp_path / "notes.txt").write_bytes(b"twelve bytes")
    share = sharer.share(tmp_path / "notes.txt")
    sharer.create_ring("friends")
    sharer.add_member("friends", receiver.peer_id)
    sharer.grant(str(receiver.peer_id))
    sharer.attach(share, "friends")
    assert sharer._access.catalog(receiver.peer_id) == [
        CatalogRow(share.root, "notes.txt", share.format, 12)
    ]
    assert sharer.find_share("notes.txt").rings == ("friends",)
    sharer.detach(share, "friends")
    assert sharer.find_share("notes.txt").rings == ()


def test_peers_named_by_nickname_are_returned_by_id(sharer: Node, receiver: Node) -> None:
    sharer.add_peer(str(receiver.peer_id), "bob")
    sharer.create_ring("friends")
    assert sharer.add_member("friends", "bob") == receiver.peer_id
    assert sharer.nicknames() == {receiver.peer_id: "bob"}
    assert sharer.remove_member("friends", "bob") == receiver.peer_id
    assert sharer.remove_peer("bob") == receiver.peer_id
    assert sharer.peers() == []
    with pytest.raises(NotFoundError):
        sharer.resolve_peer("bob")


def test_the_open_ring_cannot_be_deleted_and_unknown_rings_are_not_found(sharer: Node) -> None:
    with pytest.raises(OpenRingError):
        sharer.delete_ring("open")
    with pytest.raises(NotFoundError, match="no ring named 'family'"):
        sharer.members("family")
    assert [r.name for r in sharer.rings()] == ["open"]


def test_the_store_is_checked_and_collected_through_the_node(sharer: Node, tmp_path: Path) -> None:
    (tmp_path / "a.bin").write_bytes(b"a" * 100_000)
    share = sharer.share(tmp_path / "a.bin")
    assert sharer.check_store().ok
    sharer.unshare(share.root)
    assert sharer.gc().blobs_deleted == 1
