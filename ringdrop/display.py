"""How the CLI and the TUI show things: sizes, rates and times for people, names from the network
made safe (no terminal escapes), JSON for programs, QR codes."""

from __future__ import annotations

import json
import sys
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from ringdrop.ticket import Format

# Unicode categories a name from the network may not put on a terminal as they are: controls
# (ESC starts escape sequences; C1 controls are escapes on some terminals), format characters
# (bidirectional overrides make a name read backwards), line and paragraph separators, and
# lone surrogates (undecodable bytes of a file name).
_UNSAFE = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
# Joiners are format characters that only shape emoji and scripts; they cannot move the cursor.
_HARMLESS_FORMAT = frozenset({"\u200c", "\u200d"})

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def safe(text: str) -> str:
    """`text` with every character that could control a terminal written as an escape (`\\x1b`,
    `\\u202e`), so that a name chosen by someone else prints as exactly one visible line."""
    return "".join(_escape(char) for char in text)


def _escape(char: str) -> str:
    if char in _HARMLESS_FORMAT or unicodedata.category(char) not in _UNSAFE:
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def size(n: int | None) -> str:
    """A byte count for people: `512 B`, `1.5 MiB`; `?` when unknown."""
    if n is None:
        return "?"
    value = float(n)
    for unit in _UNITS:
        if value < 1024 or unit == _UNITS[-1]:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def rate(bytes_per_second: float) -> str:
    return f"{size(round(bytes_per_second))}/s"


def duration(seconds: float) -> str:
    """`0.4 s`, `12 s`, `3 min 05 s`, `2 h 07 min`."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return f"{whole // 60} min {whole % 60:02d} s"
    return f"{whole // 3600} h {whole % 3600 // 60:02d} min"


def clock(seconds: float) -> str:
    """An ETA as a count-down: `0:07`, `12:30`, `2:05:00`."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def when(at: float) -> str:
    """A moment in local time, to the second."""
    return datetime.fromtimestamp(at).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def iso(at: float) -> str:
    """A moment for programs: ISO 8601 with the UTC offset."""
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")


def short_hash(root: bytes) -> str:
    """Enough of a root hash to tell content apart and to name it in a command."""
    return root.hex()[:12]


def emit_json(value: object, out: TextIO | None = None) -> None:
    """One JSON document on stdout. Non-ASCII is escaped, so no name can reach a terminal raw."""
    print(json.dumps(value, indent=2), file=out or sys.stdout)


def print_qr(text: str, out: TextIO | None = None) -> None:
    """`text` as a QR code of Unicode blocks. Tickets and peer ids are read in either case, and
    in upper case they fit QR's denser alphanumeric mode, so the code comes out smaller."""
    import segno  # here: it pulls in urllib and xml, which no other command needs

    segno.make(text.upper(), error="m").terminal(out=out or sys.stdout, compact=True)


def table(rows: Sequence[Sequence[str]], out: TextIO | None = None) -> None:
    """Rows in left-aligned columns (the last column is not padded)."""
    if not rows:
        return
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[-1]]).rstrip(), file=out or sys.stdout)


def kind(format: Format) -> str:
    """A content format as people say it: a blob is a file, a collection a folder."""
    return "folder" if format == "collection" else "file"


def count(n: int, noun: str) -> str:
    """`1 blob`, `3 blobs`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
