"""Collections: a folder's files as an ordered list of (relative name, root, size, metadata), as a
blob.

Encoding (all integers little-endian):

    magic    8 bytes   b"RDCOLL\\x00\\x02"   (format version 2; version 1 is still read)
    count    u32
    count entries, each:
        root      32 bytes   BLAKE3 root of the file
        size      u64        its size in bytes (a claim until the file's download proves it)
        mtime_ns  i64        modification time, nanoseconds since the Unix epoch   (version 2)
        flags     u8         bit 0: executable; bit 1: mtime_ns is known; others zero (version 2)
        name_len  u16
        name      name_len bytes of UTF-8, a relative '/'-separated path (see names.py)

Version 1 entries have no mtime_ns and flags: their files come out with the receiver's time and
default mode. The metadata sits in the collection, so the collection's root covers it; the files'
own roots (content only) do not change.

Entries are sorted by the UTF-8 bytes of their names, with no duplicates and no name that is also
a folder of another ("a" and "a/b"), so one tree has one encoding and one root. Nothing may
follow the last entry. Only regular files are collected: symbolic links, sockets, devices and
empty folders are left out (the import reports what it skipped), so an export recreates the
files and the folders that hold them.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ringdrop.errors import StoreError, UnsafePathError
from ringdrop.store.files import FileId, Tree
from ringdrop.store.names import validate_name

if TYPE_CHECKING:
    from pathspec import GitIgnoreSpec

__all__ = [
    "IGNORE_FILE",
    "MAGIC",
    "MAGIC_V1",
    "MAX_COLLECTION_BYTES",
    "MAX_COLLECTION_ENTRIES",
    "Collection",
    "Entry",
    "Scan",
    "ScannedFile",
    "check_names",
    "check_size",
    "encoded_size",
    "member_roots",
    "scan_directory",
]

MAGIC = b"RDCOLL\x00\x02"
MAGIC_V1 = b"RDCOLL\x00\x01"
MAX_COLLECTION_ENTRIES = 1_000_000
"""Files in one collection, at most. A receiver holds the decoded listing in memory, so a
hostile sharer's collection is refused by its count, before any entry is read."""
MAX_COLLECTION_BYTES = 256 << 20
"""An encoded collection's size, at most: a million entries with names of 200 bytes on average
(SPEC.md). Checked against the claimed size before a download and before any read."""
IGNORE_FILE = ".ringdropignore"
"""Optional, at the top of a shared folder: gitignore-style patterns of files to leave out."""
_HEAD = struct.Struct("<8sI")
_ENTRY_V1 = struct.Struct("<32sQH")
_ENTRY = struct.Struct("<32sQqBH")
_EXECUTABLE = 0x01
_HAS_MTIME = 0x02


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    root: bytes
    size: int
    mtime_ns: int | None = None
    """When the file was last modified (ns since the epoch), if the sharer said."""
    executable: bool = False


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
        for root, size, mtime_ns, flags, raw in _parse(data):
            try:
                name = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise UnsafePathError(f"the file name {raw!r} is not valid UTF-8") from None
            if flags & ~(_EXECUTABLE | _HAS_MTIME):
                raise StoreError(f"the entry {name!a} has unknown flags {flags:#x}")
            known = mtime_ns if flags & _HAS_MTIME else None
            entries.append(Entry(name, root, size, known, bool(flags & _EXECUTABLE)))
        return cls._checked(entries)

    def encode(self) -> bytes:
        parts = [_HEAD.pack(MAGIC, len(self.entries))]
        for e in self.entries:
            name = e.name.encode("utf-8")
            flags = (_EXECUTABLE if e.executable else 0) | (
                _HAS_MTIME if e.mtime_ns is not None else 0
            )
            parts.append(_ENTRY.pack(e.root, e.size, e.mtime_ns or 0, flags, len(name)))
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
            if e.mtime_ns is not None and not -(1 << 63) <= e.mtime_ns < 1 << 63:
                raise StoreError(f"the entry {e.name!a} has an impossible time {e.mtime_ns}")
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


def _parse(data: bytes) -> list[tuple[bytes, int, int, int, bytes]]:
    """The raw (root, size, mtime_ns, flags, name bytes) entries of an encoded collection;
    structure only. Version 1 entries read as mtime 0 with no flags."""
    if len(data) < _HEAD.size:
        raise StoreError("this is not a collection (too short)")
    magic, count = _HEAD.unpack_from(data, 0)
    if magic not in (MAGIC, MAGIC_V1):
        raise StoreError("this is not a collection of a format this ringdrop knows")
    check_size(len(data), count)
    layout = _ENTRY if magic == MAGIC else _ENTRY_V1
    if count * layout.size > len(data) - _HEAD.size:
        raise StoreError(f"the collection claims {count} entries, more than its bytes can hold")
    offset = _HEAD.size
    entries = []
    for _ in range(count):
        if offset + layout.size > len(data):
            raise StoreError("the collection is truncated")
        if magic == MAGIC:
            root, size, mtime_ns, flags, length = layout.unpack_from(data, offset)
        else:
            (root, size, length), mtime_ns, flags = layout.unpack_from(data, offset), 0, 0
        offset += layout.size
        if offset + length > len(data):
            raise StoreError("the collection is truncated")
        entries.append((root, size, mtime_ns, flags, data[offset : offset + length]))
        offset += length
    if offset != len(data):
        raise StoreError(f"the collection has {len(data) - offset} bytes after its last entry")
    return entries


def check_size(size: int, entries: int = 0) -> None:
    """Raises StoreError if a collection of `size` bytes, or of `entries` entries, is more than
    a receiver takes (`MAX_COLLECTION_BYTES`, `MAX_COLLECTION_ENTRIES`)."""
    if size > MAX_COLLECTION_BYTES:
        raise StoreError(
            f"the collection is {size} bytes long, more than the {MAX_COLLECTION_BYTES} "
            "this ringdrop takes"
        )
    if entries > MAX_COLLECTION_ENTRIES:
        raise StoreError(
            f"the collection lists {entries} files, more than the {MAX_COLLECTION_ENTRIES:,} "
            "this ringdrop takes in one folder"
        )


def encoded_size(names: Iterable[str]) -> int:
    """The size of the (version 2) encoding of a collection of files with these names."""
    return _HEAD.size + sum(_ENTRY.size + len(name.encode("utf-8")) for name in names)


def member_roots(data: bytes) -> list[bytes]:
    """The roots a collection holds, reading only its structure (GC needs no names)."""
    return [entry[0] for entry in _parse(data)]


@dataclass(frozen=True)
class ScannedFile:
    name: str
    """Its name in the collection."""
    path: str
    size: int
    mtime_ns: int
    executable: bool
    file_id: FileId
    """Which file the name led to: the import reads only this file under this name."""


@dataclass(frozen=True)
class Scan:
    files: list[ScannedFile]
    """The regular files to share, in canonical order."""
    skipped: list[str]
    """Symbolic links and other things that are not regular files."""
    excluded: int
    """Files left out by an exclusion pattern or the folder's .ringdropignore."""
    folders: dict[str, FileId]
    """Each folder walked, by its name relative to the top ("" for the top)."""


def scan_directory(folder: Path, exclude: Sequence[str] = ()) -> Scan:
    """The regular files below `folder`, less those that gitignore-style `exclude` patterns or
    the folder's own `.ringdropignore` match.

    Symbolic links are not followed (a link could lead out of the folder, or loop) and, like
    other non-files, are listed as skipped (unless excluded); each folder is opened from its
    parent's descriptor without following links (`files.Tree`), and the scan records which file
    each name led to, so that the import can refuse a name swapped meanwhile. Names are checked
    here, before any work. Patterns are matched against names relative to `folder`, as git does
    for a .gitignore at the top of a repository (`build/`, `*.log`, `!keep.log`, `/only-here`).
    """
    if not folder.is_dir():
        raise StoreError(f"{folder} is not a folder")
    spec = _ignore_spec(folder, exclude)
    files: list[ScannedFile] = []
    skipped: list[str] = []
    excluded = 0
    top = str(folder)
    with Tree(folder) as tree:
        pending = [""]
        while pending:
            current = pending.pop()
            prefix = current + "/" if current else ""
            with os.scandir(tree.folder(current)) as it:
                for entry in it:
                    name = prefix + entry.name
                    if entry.is_dir(follow_symlinks=False):
                        pending.append(name)
                        continue
                    if spec is not None and spec.match_file(name):
                        excluded += entry.is_file(follow_symlinks=False)
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        executable = bool(st.st_mode & (stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
                        files.append(
                            ScannedFile(
                                name,
                                f"{top}/{name}",
                                st.st_size,
                                st.st_mtime_ns,
                                executable,
                                (st.st_dev, st.st_ino),
                            )
                        )
                    else:
                        skipped.append(name)
        folders = tree.folders
    files.sort(key=lambda f: _sort_key(f.name))
    check_names([f.name for f in files])
    return Scan(files, sorted(skipped), excluded, folders)


def _ignore_spec(folder: Path, exclude: Sequence[str]) -> GitIgnoreSpec | None:
    lines = list(exclude)
    try:
        lines += (folder / IGNORE_FILE).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        pass
    except (OSError, UnicodeDecodeError) as e:
        raise StoreError(f"could not read {folder / IGNORE_FILE}: {e}") from None
    if not lines:
        return None
    from pathspec import (
        GitIgnoreSpec,
    )  # here: only a folder with patterns needs it, and it is slow to load

    return GitIgnoreSpec.from_lines(lines)
