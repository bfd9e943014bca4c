"""The bar that always shows who this node is, where it listens and whether it serves."""

from __future__ import annotations

from textual.reactive import reactive
from textual.widgets import Static

from ringdrop.display import rate
from ringdrop.errors import RingdropError
from ringdrop.node import Node


class NodeStatus(Static):
    """Peer id, the addresses tickets name, the server's state, its home relay's, and the
    upload rate limit if there is one."""

    server: reactive[str] = reactive("starting…")
    relay: reactive[str] = reactive("")
    """The home relay's state: connecting, connected, disconnected (empty when disabled)."""

    def __init__(self, node: Node) -> None:
        super().__init__(markup=False, id="status")
        self.node = node

    def render(self) -> str:
        try:
            addresses = ", ".join(str(a) for a in self.node.addresses())
        except RingdropError as error:
            addresses = str(error)
        relay = f"; relay {self.node.home_relay} {self.relay}" if self.relay else ""
        limit = self.node.limit_rate
        relay += f"; uploads at most {rate(limit)}" if limit is not None else ""
        return (
            f"peer id {self.node.peer_id}  (i: QR, copy)\n"
            f"server  {self.server}{relay}\n"
            f"reach   {addresses}"
        )
