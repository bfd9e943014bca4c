"""Unfinished transfers kept in the data directory, so that closing the TUI interrupts them
and opening it again continues them. No Textual here: plain data and one JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ringdrop.node import OnExisting, replace_atomically

FILE_NAME = "tui-transfers.json"


@dataclass(frozen=True)
class SavedTransfer:
    """A download the user started and has not finished or cancelled."""

    ticket: str
    dest: str
    paused: bool = False
    existing: OnExisting = "refuse"
    """What the user chose to do about a destination that already existed."""


class SavedTransfers:
    """The list of unfinished transfers in `data_dir`, keyed by ticket text."""

    def __init__(self, data_dir: Path) -> None:
        self._path = data_dir / FILE_NAME

    def load(self) -> list[SavedTransfer]:
        try:
            rows = json.loads(self._path.read_text())
            return [
                SavedTransfer(
                    str(r["ticket"]),
                    str(r["dest"]),
                    bool(r["paused"]),
                    _existing(r.get("existing", "refuse")),
                )
                for r in rows
            ]
        except (OSError, ValueError, KeyError, TypeError):
            return []

    def put(self, transfer: SavedTransfer) -> None:
        rows = [t for t in self.load() if t.ticket != transfer.ticket]
        self._write([*rows, transfer])

    def forget(self, ticket: str) -> None:
        self._write([t for t in self.load() if t.ticket != ticket])

    def _write(self, rows: list[SavedTransfer]) -> None:
        replace_atomically(self._path, json.dumps([asdict(r) for r in rows], indent=1).encode())


def _existing(value: object) -> OnExisting:
    if value == "force":
        return "force"
    return "rename" if value == "rename" else "refuse"
