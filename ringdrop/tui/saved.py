"""The transfers of the Receive tab, kept in the data directory: closing the TUI interrupts the
unfinished ones and opening it again continues them, and finished ones stay listed until the
user clears them. No Textual here: plain data and one JSON file."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

from ringdrop.node import OnExisting, replace_atomically

FILE_NAME = "tui-transfers.json"


@dataclass(frozen=True)
class SavedTransfer:
    """A download the user started and has not cleared from the list."""

    ticket: str
    dest: str
    """The folder it is saved in."""
    paused: bool = False
    existing: OnExisting = "refuse"
    """What the user chose to do about a destination that already existed."""
    saved_as: str | None = None
    """Where it was put, once finished (None while it is not)."""
    text: str | None = None
    """What a finished text said (one sent with `send --text`)."""


class SavedTransfers:
    """The list of transfers in `data_dir`, keyed by ticket text."""

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
                    None if r.get("saved_as") is None else str(r["saved_as"]),
                    None if r.get("text") is None else str(r["text"]),
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
