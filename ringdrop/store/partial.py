"""Partial blobs: downloads in progress, written from verified leaves and resumable after a crash.

Files under partial/: `.data` (verified leaves at their offsets, sparse elsewhere), `.obao` (the
hash pairs the decoder verified), `.bitfield` (one bit per verified 16 KiB group, checksummed),
`.lock` (flock'd by the one PartialBlob that may write them).

Crash safety: a group's bit is set only after its bytes were fsynced. `flush()` syncs the data and
outboard, then replaces the bitfield atomically (write, fsync, rename), so a crash at any instant
leaves a bitfield that claims only durable, verified bytes; it loses at most the progress since
the last flush. A bitfield that is missing, torn, for another size, or that claims bytes past the
end of the data file is rebuilt from the data with `valid_ranges`. Whatever could make the bitfield
wrong (a reset, a promotion) deletes it first.

The size the sender claims is trusted only once its last chunk verifies. Until then a peer whose
header disagrees resets the partial: its data and outboard may have been laid out for the wrong
size, so they are discarded.
"""

from __future__ import annotations

import os
import struct
import time
from dataclasses import dataclass

import blake3

from ringdrop.bao import (
    ChunkRanges,
    Decoder,
    create_outboard,
    outboard_chains,
    outboard_from_bytes,
    outboard_size,
    valid_ranges,
)
from ringdrop.errors import IntegrityError, StoreError
from ringdrop.store import blobs, state, tags
from ringdrop.store.blobs import INLINE_MAX, BlobInfo, Staged
from ringdrop.store.db import Database
from ringdrop.store.files import FileLock, fsync_dir, replace_atomically
from ringdrop.store.layout import Layout, StagingPaths
from ringdrop.store.progress import Meter, ProgressFn
from ringdrop.store.space import check_partial
from ringdrop.store.tags import Format, Lease, TempTag
from ringdrop.store.translate import translated, translating

__all__ = [
    "PartialBlob",
    "PartialInfo",
    "PartialWriter",
    "decode_bitfield",
    "encode_bitfield",
]

_BITFIELD_MAGIC = b"RDBITS\x00\x01"
_BITFIELD_HEAD = struct.Struct("<8sQ")
_CHECKSUM = 16


def encode_bitfield(size: int, ranges: ChunkRanges) -> bytes:
    """The bitfield file for `ranges` of a blob of `size` bytes: header, bits, BLAKE3 checksum."""
    body = _BITFIELD_HEAD.pack(_BITFIELD_MAGIC, size) + ranges.to_bitfield(size)
    return body + blake3.blake3(body).digest(length=_CHECKSUM)


def decode_bitfield(data: bytes, size: int) -> ChunkRanges | None:
    """The ranges in a bitfield file, or None if it is torn, damaged or for another size."""
    body, checksum = data[:-_CHECKSUM], data[-_CHECKSUM:]
    if len(data) < _BITFIELD_HEAD.size + _CHECKSUM:
        return None
    if blake3.blake3(body).digest(length=_CHECKSUM) != checksum:
        return None
    magic, recorded = _BITFIELD_HEAD.unpack_from(body)
    if magic != _BITFIELD_MAGIC or recorded != size:
        return None
    try:
        return ChunkRanges.from_bitfield(body[_BITFIELD_HEAD.size :], size)
    except ValueError:
        return None


@dataclass(frozen=True)
class PartialInfo:
    root: bytes
    size: int | None
    size_proven: bool


class PartialBlob:
    """A download of one root, held exclusively by this object until `close()`.

    Use it as a context manager. `missing()` says what to request; `writer()` verifies a response
    stream into the files; `promote()` turns the finished download into a complete blob.
    """

    def __init__(
        self,
        db: Database,
        layout: Layout,
        lease: Lease,
        root: bytes,
        size: int | None,
    ) -> None:
        self.root = root
        self._db = db
        self._layout = layout
        self._lease = lease
        self.paths = layout.partial_paths(root)
        self._lock = FileLock(self.paths.lock)
        self._temp_tag: TempTag | None = None
        self._writers: list[PartialWriter] = []
        self._valid = ChunkRanges()
        self._inherited = ChunkRanges()
        """The groups that were valid when this object opened the download (see `promote`)."""
        self.size: int | None = None
        self.size_proven = False
        with translated(f"could not open the download of {root.hex()}"):
            if not self._lock.acquire(blocking=False):
                raise StoreError(
                    f"{root.hex()} is being downloaded by another process using this data directory"
                )
            try:
                self._open(size)
            except BaseException:
                self._release()
                raise

    def _open(self, size: int | None) -> None:
        with self._db.transaction() as conn:
            if blobs.get_blob(conn, self.root) is not None:
                raise StoreError(f"{self.root.hex()} is already complete in the store")
            self._temp_tag = TempTag(self._db, self._lease.add(conn, [self.root], "blob")[0])
            recorded = state.open_partial(conn, self._layout, self.root)
        if recorded is None:
            self.paths.bitfield.unlink(missing_ok=True)
            self.paths.data.write_bytes(b"")
            self.paths.outboard.write_bytes(b"")
        else:
            self.size, self.size_proven = recorded.size, recorded.proven
            self._valid = self._inherited = self._load_valid()
        if size is not None:
            self._claim_size(size)
        elif self.size is not None:
            self._size_files()

    # -- what is there ------------------------------------------------------------------------

    def valid(self) -> ChunkRanges:
        """The chunks verified so far (group-aligned after a reopen)."""
        return self._valid

    def missing(self) -> ChunkRanges:
        """The chunks still to fetch: everything while the size is unknown."""
        if self.size is None:
            return ChunkRanges.all()
        return self._valid.complement(self.size)

    @property
    def complete(self) -> bool:
        return self.size is not None and self.missing().is_empty()

    @property
    def valid_bytes(self) -> int:
        return 0 if self.size is None else self._valid.byte_count(self.size)

    # -- writing ------------------------------------------------------------------------------

    def writer(
        self,
        ranges: ChunkRanges | None = None,
        *,
        flush_bytes: int = 16 << 20,
        flush_interval: float = 1.0,
        shared: bool = False,
    ) -> PartialWriter:
        """A verifier for one response stream covering `ranges` (default: what is missing).

        It writes verified leaves into the data file and makes them durable every `flush_bytes`
        bytes or `flush_interval` seconds. A new writer finishes the previous ones, unless
        `shared`: then several streams (from several providers) write at once, each its own
        ranges. Only once the size is proven: a stream's size header can then no longer reset
        the files under the others. The writers of one partial are used by one thread at a
        time (the caller's lock): they share the data and outboard files.
        """
        self._check_open()
        if shared and not self.size_proven:
            raise StoreError("several streams may write a download only once its size is proven")
        if not shared:
            self.close_writer()
        writer = PartialWriter(
            self, self.missing() if ranges is None else ranges, flush_bytes, flush_interval
        )
        self._writers.append(writer)
        return writer

    def close_writer(self) -> None:
        """Flushes and drops every writer (and their decoders' open files)."""
        writers, self._writers = self._writers, []
        for writer in writers:
            writer.close()

    @translating("could not save download progress")
    def flush(self) -> None:
        """Makes all progress durable: every writer's data first, then the bitfield."""
        self._sync_all()

    def _sync_all(self) -> None:
        """Syncs what every writer wrote, then records it in the bitfield: a bit is never set
        for another writer's bytes that are not yet durable."""
        proven = False
        for writer in self._writers:
            proven = writer._sync() or proven
        self._save_bitfield()
        if proven:
            self._mark_proven()
        # Last: a step above that failed leaves the writers unflushed, so closing them retries it.
        for writer in self._writers:
            writer._synced()

    @translating("could not reset the download")
    def reset(self, size: int | None = None) -> None:
        """Throws away everything downloaded and starts again, for a blob of `size` bytes."""
        self._check_open()
        self.close_writer()
        self._reset(size)

    # -- finishing ----------------------------------------------------------------------------

    @translating("could not finish the download")
    def promote(
        self,
        *,
        tag: str | None = None,
        display_name: str | None = None,
        format: Format = "blob",
        progress: ProgressFn | None = None,
    ) -> BlobInfo:
        """Turns the finished download into a complete blob, tagged `tag` if given.

        Every group this object's writers verified was checked against the root as it arrived,
        and the parents they saved are the tree that proved it. When they verified all of it
        and that tree chains to the root (a check of the outboard alone, `outboard_chains`), it
        becomes the blob's outboard and the data is not read again. Otherwise (a download
        resumed from an earlier run, whose files may have changed on disk since) the outboard
        is rebuilt from the data and must reproduce the root; on a mismatch the download is
        reset and IntegrityError raised. Closes this object.
        """
        self._check_open()
        tags.check_format(format)
        self.close_writer()
        if self.size is None or not self.complete:
            raise StoreError(
                f"the download of {self.root.hex()} is not complete "
                f"({self.valid_bytes} of {self.size if self.size is not None else '?'} bytes)"
            )
        size = self.size
        os.truncate(self.paths.data, size)
        staged = self._stage(size, Meter(size, progress))
        with self._db.transaction() as conn:
            # Delete the bitfield before the data moves: it must never describe a missing file.
            self.paths.bitfield.unlink(missing_ok=True)
            fsync_dir(self.paths.bitfield.parent)
            info = state.promote(conn, self._layout, staged)
            if tag is not None:
                tags.set_tag(conn, tag, self.root, format, display_name)
        for path in self.paths.files():
            path.unlink(missing_ok=True)
        self._release(unlink_lock=True)
        return info

    def _stage(self, size: int, meter: Meter) -> Staged:
        if size <= INLINE_MAX:
            data = self.paths.data.read_bytes()
            root, _ = outboard_from_bytes(data)
            meter.add(size)
            staged = Staged(root, size, "inline", data=data)
        else:
            outboard = self.paths.outboard
            if self._inherited.is_empty() and outboard_chains(outboard, self.root, size):
                os.truncate(outboard, outboard_size(size))
                _fsync(outboard)
                root = self.root
                meter.add(size)
            else:
                outboard = self.paths.new_outboard
                root, _ = create_outboard(self.paths.data, outboard, meter.native())
            _fsync(self.paths.data)
            # Staged without a lock: the partial's own lock covers these files.
            files = StagingPaths(self.paths.data, outboard, self.paths.lock)
            staged = Staged(root, size, "file", paths=files)
        if root != self.root:
            self._reset(None)
            raise IntegrityError(
                f"the downloaded data of {self.root.hex()} does not hash to its root; the "
                "download starts over"
            )
        return staged

    @translating("could not discard the download")
    def discard(self) -> None:
        """Deletes the download and everything it fetched. Closes this object."""
        self._check_open()
        self.close_writer()
        self.paths.bitfield.unlink(missing_ok=True)
        with self._db.transaction() as conn:
            state.drop_partial(conn, self.root)
        for path in self.paths.files():
            path.unlink(missing_ok=True)
        self._release(unlink_lock=True)

    @translating("could not close the download")
    def close(self) -> None:
        """Saves progress and lets go of the download (another process may then resume it)."""
        if not self._lock.held:
            return
        try:
            self.close_writer()
        finally:
            self._release()

    def __enter__(self) -> PartialBlob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ----------------------------------------------------------------------------

    def _check_open(self) -> None:
        if not self._lock.held:
            raise StoreError(f"the download of {self.root.hex()} was already closed")

    def _release(self, *, unlink_lock: bool = False) -> None:
        self._writers = []
        if self._temp_tag is not None:
            self._temp_tag.release()
            self._temp_tag = None
        self._lock.release(unlink=unlink_lock)

    def _claim_size(self, size: int) -> None:
        """Records the size a sender claims, resetting if an unproven size disagrees."""
        if size < 0:
            raise ValueError("a size cannot be negative")
        if self.size == size:
            return
        if self.size is not None and self.size_proven:
            raise IntegrityError(
                f"the sender claims {size} bytes for {self.root.hex()}, whose size is proven to "
                f"be {self.size}"
            )
        if self.size is None and self._valid.is_empty():
            with self._db.transaction() as conn:
                state.record_partial(conn, self.root, state.Partial(size, proven=False))
            self.size = size
            self._size_files()
        else:
            self._reset(size)

    def _size_files(self) -> None:
        assert self.size is not None
        check_partial(self._layout.partial, self.size, self.valid_bytes, self.root)
        if self.paths.data.stat().st_size != self.size:
            os.truncate(self.paths.data, self.size)

    def _reset(self, size: int | None) -> None:
        # The bitfield goes first and durably: after it, whatever happens to the data can no
        # longer be taken for verified.
        self.paths.bitfield.unlink(missing_ok=True)
        fsync_dir(self.paths.bitfield.parent)
        self.paths.new_outboard.unlink(missing_ok=True)
        os.truncate(self.paths.data, 0)
        os.truncate(self.paths.outboard, 0)
        with self._db.transaction() as conn:
            state.record_partial(conn, self.root, state.Partial(size, proven=False))
        self.size, self.size_proven, self._valid = size, False, ChunkRanges()
        self._inherited = ChunkRanges()
        if size is not None:
            self._size_files()

    def _load_valid(self) -> ChunkRanges:
        """The verified ranges from the bitfield file, rebuilt from the data if untrustworthy."""
        for path in (self.paths.data, self.paths.outboard):
            if not path.exists():
                path.write_bytes(b"")
        if self.size is None:
            return ChunkRanges()
        try:
            recorded = decode_bitfield(self.paths.bitfield.read_bytes(), self.size)
        except FileNotFoundError:
            recorded = None
        data_len = self.paths.data.stat().st_size
        if recorded is not None and _end(recorded, self.size) <= data_len:
            return recorded
        return self._rebuild()

    def _rebuild(self) -> ChunkRanges:
        assert self.size is not None
        found = valid_ranges(self.paths.data, self.paths.outboard, self.root, self.size)
        _fsync(self.paths.data)
        self._valid = found
        self._save_bitfield()
        return found

    def _record(self, ranges: ChunkRanges) -> None:
        self._valid = self._valid | ranges

    def _save_bitfield(self) -> None:
        if self.size is not None:
            replace_atomically(self.paths.bitfield, encode_bitfield(self.size, self._valid))

    def _mark_proven(self) -> None:
        if not self.size_proven:
            with self._db.transaction() as conn:
                state.record_partial(conn, self.root, state.Partial(self.size, proven=True))
            self.size_proven = True


def _end(ranges: ChunkRanges, size: int) -> int:
    """The byte just past the last chunk in `ranges`, for a blob of `size` bytes."""
    end = 0
    for _, stop in ranges:
        end = size if stop is None else min(size, stop * 1024)
    return end


def _fsync(path: os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PartialWriter:
    """Verifies one response stream into a partial blob; obtained from `PartialBlob.writer()`.

    `write()` takes network bytes in any fragments and returns the chunks newly verified and
    written. The first 8 bytes (the sender's size claim) are checked against the partial before
    the decoder sees them, so a disagreeing unproven size resets the files before the decoder
    writes anything into them.
    """

    def __init__(
        self, partial: PartialBlob, ranges: ChunkRanges, flush_bytes: int, flush_interval: float
    ) -> None:
        self.ranges = ranges
        self._partial = partial
        self._decoder: Decoder | None = Decoder(
            partial.root, ranges, data=partial.paths.data, outboard=partial.paths.outboard
        )
        self._header = b""
        self._failed = False
        self._flush_bytes = flush_bytes
        self._flush_interval = flush_interval
        self._unflushed = 0
        self._last_flush = time.monotonic()

    @property
    def size(self) -> int | None:
        """The size the sender claims (None before its header)."""
        return self._live().size

    @property
    def done(self) -> bool:
        """True once every requested chunk arrived and verified."""
        return self._live().done

    @property
    def verified_bytes(self) -> int:
        return self._live().verified_bytes

    @translating("could not write the download")
    def write(self, data: bytes) -> ChunkRanges:
        """Verifies `data`, writes its verified leaves, and returns the chunks they cover.

        Raises IntegrityError if the stream does not match the root (the writer is then dead;
        progress already made is kept).
        """
        decoder = self._live()
        if self._failed:
            raise IntegrityError("this download stream already failed; start a new one")
        try:
            if len(self._header) < 8:
                need = 8 - len(self._header)
                self._header += data[:need]
                if len(self._header) < 8:
                    return ChunkRanges()
                self._partial._claim_size(int.from_bytes(self._header, "little"))
                data = self._header + data[need:]
            got = decoder.write(data)
        except BaseException:
            self._failed = True
            raise
        self._partial._record(got)
        self._unflushed += len(data)
        if (
            (decoder.size_proven and not self._partial.size_proven)
            or self._unflushed >= self._flush_bytes
            or (time.monotonic() - self._last_flush >= self._flush_interval)
        ):
            self.flush()
        return got

    @translating("could not save download progress")
    def flush(self) -> None:
        """Syncs data and outboard (every writer's of the partial), then records them in the
        bitfield (in that order)."""
        self._live()
        self._partial._sync_all()

    def _sync(self) -> bool:
        """Syncs this writer's files; whether its stream proved the size."""
        if self._decoder is None:
            return False
        self._decoder.sync()
        return self._decoder.size_proven

    def _synced(self) -> None:
        """What this writer wrote is durable and recorded in the bitfield."""
        self._unflushed = 0
        self._last_flush = time.monotonic()

    def finish(self) -> None:
        """Raises IntegrityError unless the whole requested stream arrived; flushes either way."""
        decoder = self._live()
        self.flush()
        decoder.finish()

    def close(self) -> None:
        """Flushes what is not yet recorded and drops the decoder (and its open files). After
        `finish` that is nothing: the bitfield a promotion deletes is not written again."""
        if self._decoder is not None:
            try:
                if len(self._header) == 8 and self._unflushed:
                    self.flush()
            finally:
                self._decoder = None
                if self in self._partial._writers:
                    self._partial._writers.remove(self)

    def _live(self) -> Decoder:
        if self._decoder is None:
            raise StoreError("this download stream was closed; ask the partial for a new writer")
        return self._decoder
