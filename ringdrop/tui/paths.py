"""Completion of file system paths in an Input."""

from __future__ import annotations

import os
from pathlib import Path

from textual.suggester import Suggester


class PathSuggester(Suggester):
    """Suggests the first entry of the typed directory that starts with the typed name; a
    directory's suggestion ends with `/` so that completing goes on inside it."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        if not value:
            return None
        head, _, stem = value.rpartition(os.sep)
        rooted = value.startswith(os.sep)
        folder = Path(os.path.expanduser(head)) if head else Path(os.sep if rooted else ".")
        try:
            names = sorted(e.name for e in os.scandir(folder) if e.name.startswith(stem))
        except OSError:
            return None
        visible = [n for n in names if not n.startswith(".") or stem.startswith(".")]
        if not visible:
            return None
        name = visible[0]
        prefix = f"{head}{os.sep}" if head or rooted else ""
        return prefix + name + (os.sep if (folder / name).is_dir() else "")
