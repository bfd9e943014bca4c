"""The Textual TUI: a thin client of `ringdrop.node.Node`. Start it with `run`."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def run(
    data_dir: Path | None = None,
    *,
    relays: Sequence[str] | None = None,
    stun: Sequence[str] | None = None,
    discovery: Sequence[str] | None = None,
) -> int:
    """Opens the node in `data_dir` (with these relay, STUN and discovery servers; None: the
    environment's, else the defaults) and runs the TUI on it until the user quits. The process's
    allocator keeps the memory it frees, as the CLI's commands have it (`keep_freed_memory`)."""
    from ringdrop.node import Node, keep_freed_memory
    from ringdrop.tui.app import make_app

    keep_freed_memory()
    with Node(data_dir, relays=relays, stun=stun, discovery=discovery) as node:
        make_app(node).run()
    return 0


__all__ = ["run"]
