"""The bar that always shows who this node is, where it listens and whether it serves."""

from __future__ import annotations

from textual import work
from textual.reactive import reactive
from textual.widgets import Static

from ringdrop.display import rate
from ringdrop.errors import RingdropError
from ringdrop.node import Node

# Interfaces come and go (a laptop changes networks): the addresses are looked at again this
# often, off the UI thread.
LOOK_INTERVAL = 30.0


class NodeStatus(Static):
    """Peer id, the addresses tickets name, the server's state, its home relay's, and the
    upload rate limit if there is one.

    `render` only reads reactives: finding the addresses enumerates interfaces, so a worker
    thread does it and sets them; the home relay is read when its state changes."""

    server: reactive[str] = reactive("starting…")
    relay: reactive[str] = reactive("")
    """The home relay's state: connecting, connected, disconnected (empty when disabled)."""
    relay_url: reactive[str] = reactive("")
    reach: reactive[str] = reactive("…")
    """The addresses tickets name, or why there are none."""

    def __init__(self, node: Node) -> None:
        super().__init__(markup=False, id="status")
        self.node = node

    def on_mount(self) -> None:
        self.look()
        self.set_interval(LOOK_INTERVAL, self.look)

    @work(thread=True, exclusive=True, group="status", exit_on_error=False)
    def look(self) -> None:
        try:
            reach = ", ".join(str(a) for a in self.node.addresses())
        except RingdropError as error:
            reach = str(error)
        try:
            relay = self.node.home_relay or ""
        except (RingdropError, OSError):
            relay = ""
        self.app.call_from_thread(self._found, reach, relay)

    def _found(self, reach: str, relay_url: str) -> None:
        self.reach, self.relay_url = reach, relay_url

    def watch_relay(self, state: str) -> None:
        # The server chooses the home relay as it starts; its state says it has (and which).
        self.relay_url = self.node.home_relay or ""

    def render(self) -> str:
        relay = f"; relay {self.relay_url} {self.relay}" if self.relay else ""
        limit = self.node.limit_rate  # an attribute: no I/O here
        relay += f"; uploads at most {rate(limit)}" if limit is not None else ""
        return (
            f"peer id {self.node.peer_id}  (i: QR, copy)\n"
            f"server  {self.server}{relay}\n"
            f"reach   {self.reach}"
        )
