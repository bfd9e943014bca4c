"""The Rings tab (rings and their members) and the Peers tab (the peer book and grants)."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.widgets import DataTable, Static

from ringdrop.display import when
from ringdrop.tui.dialogs import Prompt
from ringdrop.tui.pane import Pane, Table, shown


def _key(table: DataTable[Text | str]) -> str | None:
    """The key of the table's highlighted row, if it has rows."""
    if not table.row_count:
        return None
    return table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value


def _fill(table: DataTable[Text | str], rows: list[tuple[str, tuple[Text | str, ...]]]) -> None:
    """Replaces the table's rows, keeping the cursor where it was as far as it can."""
    row = table.cursor_row
    table.clear()
    for key, cells in rows:
        table.add_row(*cells, key=key)
    if table.row_count:
        table.move_cursor(row=min(row, table.row_count - 1))


class RingsPane(Pane):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "new", "New"),
        Binding("e", "rename", "Rename"),
        Binding("delete", "delete", "Delete"),
        Binding("m", "add_member", "Add member"),
        Binding("u", "remove_member", "Remove member"),
    ]

    def compose(self) -> ComposeResult:
        with Horizontal():
            rings = Table(id="ring-table")
            rings.add_columns("ring", "members", "content")
            yield rings
            members = Table(id="member-table")
            members.add_columns("member", "nickname", "until")
            yield members
        yield Static(
            "n: new ring; m adds a member (peer id or nickname) to the selected ring",
            classes="message",
            markup=False,
        )

    def on_mount(self) -> None:
        self.reload()

    @property
    def ring(self) -> str | None:
        return _key(self.query_one("#ring-table", DataTable))

    def reload(self) -> None:
        _fill(
            self.query_one("#ring-table", DataTable),
            [
                (r.name, (Text(r.name), "anyone" if r.is_open else str(r.member_count),
                          str(r.content_count)))
                for r in self.node.rings()
            ],
        )  # fmt: skip
        self._members()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "ring-table":
            self._members()

    def _members(self) -> None:
        ring = self.ring
        members = self.node.members(ring) if ring else []
        _fill(
            self.query_one("#member-table", DataTable),
            [
                (str(m.peer_id), (m.peer_id.short(), shown(m.nickname) if m.nickname else "",
                                  when(m.expires_at) if m.expires_at else "always"))
                for m in members
            ],
        )  # fmt: skip

    def action_new(self) -> None:
        def create(name: str | None) -> None:
            if name:
                self.attempt(lambda: self.node.create_ring(name.strip()), f"created {name}")

        self.app.push_screen(Prompt("Name of the new ring:"), create)

    def action_rename(self) -> None:
        ring = self.ring
        if ring is None:
            return

        def rename(new: str | None) -> None:
            if new:
                self.attempt(lambda: self.node.rename_ring(ring, new.strip()), "renamed")

        self.app.push_screen(Prompt(f"New name for {ring}:", value=ring), rename)

    def action_delete(self) -> None:
        ring = self.ring
        if ring is not None:
            self.attempt(lambda: self.node.delete_ring(ring), f"deleted {ring}")

    def action_add_member(self) -> None:
        ring = self.ring
        if ring is None:
            return

        def add(peer: str | None) -> None:
            if peer:
                self.attempt(lambda: self.node.add_member(ring, peer.strip()), f"added to {ring}")

        self.app.push_screen(Prompt(f"Peer id or nickname to add to {ring}:"), add)

    def action_remove_member(self) -> None:
        ring, member = self.ring, _key(self.query_one("#member-table", DataTable))
        if ring is not None and member is not None:
            self.attempt(lambda: self.node.remove_member(ring, member), f"removed from {ring}")


class PeersPane(Pane):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("n", "add", "Add"),
        Binding("e", "nickname", "Nickname"),
        Binding("g", "grant", "Catalog grant"),
        Binding("delete", "remove", "Remove"),
    ]

    def compose(self) -> ComposeResult:
        table = Table(id="peer-table")
        table.add_columns("peer id", "nickname", "grants")
        yield table
        yield Static(
            "n: add a peer by id, with a nickname to name it by elsewhere",
            classes="message",
            markup=False,
        )

    def on_mount(self) -> None:
        self.reload()

    @property
    def peer(self) -> str | None:
        return _key(self.query_one(DataTable))

    def reload(self) -> None:
        node = self.node
        _fill(
            self.query_one(DataTable),
            [
                (str(p.peer_id), (str(p.peer_id), shown(p.nickname) if p.nickname else "",
                                  ", ".join(node.grants(p.peer_id)) or "-"))
                for p in node.peers()
            ],
        )  # fmt: skip

    def action_add(self) -> None:
        def add(text: str | None) -> None:
            words = (text or "").split()
            if words:
                nickname = words[1] if len(words) > 1 else None
                self.attempt(lambda: self.node.add_peer(words[0], nickname), "added")

        self.app.push_screen(Prompt("Peer id, then optionally a nickname:"), add)

    def action_nickname(self) -> None:
        peer = self.peer
        if peer is None:
            return

        def rename(nickname: str | None) -> None:
            if nickname is not None:
                self.attempt(
                    lambda: self.node.set_nickname(peer, nickname.strip() or None),
                    "nickname set",
                )

        self.app.push_screen(Prompt("Nickname (empty to clear):"), rename)

    def action_grant(self) -> None:
        peer = self.peer
        if peer is None:
            return
        if "catalog" in self.node.grants(peer):
            self.attempt(lambda: self.node.revoke(peer), "may no longer list your content")
        else:
            self.attempt(lambda: self.node.grant(peer), "may now list what it may read")

    def action_remove(self) -> None:
        peer = self.peer
        if peer is not None:
            self.attempt(lambda: self.node.remove_peer(peer), "removed")
