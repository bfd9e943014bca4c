"""The bar that always shows who this node is, where it listens and whether it serves."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static

from ringdrop.errors import RingdropError
from ringdrop.node import Node


class NodeStatus(Static):
    """Peer id, the addresses tickets name, and the server's state."""

    server: reactive[str] = reactive("starting…")

    def __init__(self, node: Node) -> None:
        super().__init__(markup=False, id="status")
        self.node = node

    def render(self) -> str:
        try:
            addresses = ", ".join(str(a) for a in self.node.addresses())
        except RingdropError as error:
            addresses = str(error)
        return (
            f"peer id {self.node.peer_id}  (i: QR, copy)\n"
            f"server  {self.server}\n"
            f"reach   {addresses}"
        )
