"""The one check for a relative file name inside a collection, on import and on export.

Names come from the network, so a name is refused unless it is plainly a relative path below the
destination: '/'-separated, no empty, '.' or '..' part, no leading '/', no drive letter, no
backslash, no NUL or other control character (they would also reach terminals), no bidi override
(it disguises names on screen), valid UTF-8, at most 255 bytes a part and 4096 in all.
"""

from __future__ import annotations

import re

from ringdrop.errors import UnsafePathError

__all__ = ["MAX_NAME_BYTES", "MAX_PART_BYTES", "validate_name"]

MAX_PART_BYTES = 255
MAX_NAME_BYTES = 4096

# C0 and C1 controls, DEL, backslash, and the Unicode bidi controls.
_FORBIDDEN = re.compile("[\x00-\x1f\x7f-\x9f\\\\\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_DRIVE = re.compile("[A-Za-z]:")


def validate_name(name: str) -> str:
    """Returns `name` if it is a safe relative path; raises UnsafePathError saying why not."""
    try:
        encoded = name.encode("utf-8")
    except UnicodeEncodeError:
        raise UnsafePathError(f"the file name {name!a} is not valid UTF-8") from None
    if not name:
        raise UnsafePathError("a file name in the collection is empty")
    if len(encoded) > MAX_NAME_BYTES:
        raise UnsafePathError(f"the file name {name!a} is longer than {MAX_NAME_BYTES} bytes")
    bad = _FORBIDDEN.search(name)
    if bad:
        what = "a backslash" if bad.group() == "\\" else f"the character {bad.group()!a}"
        raise UnsafePathError(f"the file name {name!a} contains {what}")
    if name[0] == "/":
        raise UnsafePathError(f"the file name {name!a} is an absolute path")
    if _DRIVE.match(name):
        raise UnsafePathError(f"the file name {name!a} starts with a drive letter")
    wrapped = f"/{name}/"
    if "//" in wrapped or "/./" in wrapped or "/../" in wrapped:
        raise UnsafePathError(
            f"the file name {name!a} has an empty, '.' or '..' part; only plain relative "
            "paths are allowed"
        )
    if len(encoded) > MAX_PART_BYTES and any(
        len(part.encode("utf-8")) > MAX_PART_BYTES for part in name.split("/")
    ):
        raise UnsafePathError(
            f"the file name {name!a} has a part longer than {MAX_PART_BYTES} bytes"
        )
    return name
