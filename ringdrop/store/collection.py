"""Collections: a folder's files as an ordered list of (relative name, root, size), as a blob.

Encoding (all integers little-endian):

    magic    8 bytes   b"RDCOLL\\x00\\x01"   (format version 1)
    count    u32
    count entries, each:
        root      32 bytes   BLAKE3 root of the file
        size      u64        its size in bytes (a claim until the file's download proves it)
        name_len  u16
        name      name_len bytes of UTF-8, a relative '/'-separated path (see names.py)

Entries are sorted by the UTF-8 bytes of their names, with no duplicates and no name that is also
a folder of another ("a" and "a/b"), so one tree has one encoding and one root. Nothing may
follow the last entry. Only regular files are collected: symbolic links, sockets, devices and
empty folders are left out (the import reports what it skipped), so an export recreates the
files and the folders that hold them.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ringdrop.errors import StoreError, UnsafePathError
from ringdrop.store.names import validate_name

__all__ = ["MAGIC", "Collection", "Entry", "check_names", "member_roots", "scan_directory"]

MAGIC = b"RDCOLL\x00\x01"
_HEAD = struct.Struct("<8sI")
_ENTRY = struct.Struct("<32sQH")


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    root: bytes
    size: int


@dataclass(frozen=True)
class Collection:
    """Entries in canonical order. Build one with `of()` or `decode()`, which check everything;
    the plain constructor trusts its caller (the folder import, which checked the names first)."""

    entries: tuple[Entry, ...]

    @property
    def total_size(self) -> int:
        return sum(e.size for e in self.entries)

    @classmethod
    def of(cls, entries: list[Entry]) -> Collection:
        """A collection of `entries` in canonical order; raises if a name is unsafe or repeats."""
        ordered = sorted(entries, key=lambda e: _sort_key(e.name))
        return cls._checked(ordered)

    @classmethod
    def decode(cls, data: bytes) -> Collection:
        """Parses a collection from untrusted bytes; raises UnsafePathError for a bad name and
        StoreError for anything else malformed."""
        entries = []
        for root, size, raw in _parse(data):
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UnsafePathError(f"the file name {raw!r} is not valid UTF-8") from None
            entries.append(Entry(name, root, size))
        return cls._checked(entries)

    def encode(self) -> bytes:
        parts = [_HEAD.pack(MAGIC, len(self.entries))]
        for e in self.entries:
            name = e.name.encode("utf-8")
            parts.append(_ENTRY.pack(e.root, e.size, len(name)))
            parts.append(name)
        return b"".join(parts)

    @classmethod
    def _checked(cls, entries: list[Entry]) -> Collection:
        check_names([e.name for e in entries])
        for e in entries:
            if len(e.root) != 32:
                raise StoreError(f"the entry {e.name!a} has a root of {len(e.root)} bytes, not 32")
            if not 0 <= e.size < 1 << 64:
                raise StoreError(f"the entry {e.name!a} has an impossible size {e.size}")
        return cls(tuple(entries))


def check_names(names: Sequence[str]) -> None:
    """Raises unless every name is safe, they are in canonical order without repeats, and no
    name is also a folder of another ("a" and "a/b")."""
    previous = b""
    for i, name in enumerate(names):
        encoded = validate_name(name).encode("utf-8")
        if i and encoded <= previous:
            what = "twice" if encoded == previous else "out of order"
            raise StoreError(f"the collection lists {name!a} {what}")
        previous = encoded
    folders: set[str] = set()
    for name in names:
        cut = name.rfind("/")
        while cut > 0 and name[:cut] not in folders:
            folders.add(name[:cut])
            cut = name.rfind("/", 0, cut)
    clashes = folders.intersection(names)
    if clashes:
        folder = min(clashes)
        raise StoreError(f"the collection has {folder!a} both as a file and as a folder")


def _sort_key(name: str) -> bytes:
    return name.encode("utf-8", "surrogatepass")


def _parse(data: bytes) -> list[tuple[bytes, int, bytes]]:
    """The raw (root, size, name bytes) entries of an encoded collection; structure only."""
    if len(data) < _HEAD.size:
        raise StoreError("this is not a collection (too short)")
    magic, count = _HEAD.unpack_from(data, 0)
    if magic != MAGIC:
        raise StoreError("this is not a collection of a format this ringdrop knows")
    offset = _HEAD.size
    entries = []
    for _ in range(count):
        if offset + _ENTRY.size > len(data):
            raise StoreError("the collection is truncated")
        root, size, length = _ENTRY.unpack_from(data, offset)
        offset += _ENTRY.size
        if offset + length > len(data):
            raise StoreError("the collection is truncated")
        entries.append((root, size, data[offset : offset + length]))
        offset += length
    if offset != len(data):
        raise StoreError(f"the collection has {len(data) - offset} bytes after its last entry")
    return entries


def member_roots(data: bytes) -> list[bytes]:
    """The roots a collection holds, reading only its structure (GC needs no names)."""
    return [root for root, _, _ in _parse(data)]


def scan_directory(folder: Path) -> tuple[list[tuple[str, str, int]], list[str]]:
    """The regular files below `folder` as (collection name, path, size) in canonical order,
    and the names skipped.

    Symbolic links are not followed (a link could lead out of the folder, or loop) and, like
    other non-files, are listed as skipped. Names are checked here, before any work.
    """
    if not folder.is_dir():
        raise StoreError(f"{folder} is not a folder")
    files: list[tuple[str, str, int]] = []
    skipped: list[str] = []
    pending: list[tuple[str, str]] = [("", str(folder))]
    while pending:
        prefix, current = pending.pop()
        with os.scandir(current) as it:
            for entry in it:
                name = prefix + entry.name
                if entry.is_dir(follow_symlinks=False):
                    pending.append((name + "/", entry.path))
                elif entry.is_file(follow_symlinks=False):
                    size = entry.stat(follow_symlinks=False).st_size
                    files.append((name, entry.path, size))
                else:
                    skipped.append(name)
    files.sort(key=lambda f: _sort_key(f[0]))
    check_names([name for name, _, _ in files])
    return files, sorted(skipped)
