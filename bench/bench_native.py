"""Benchmark of the native core against the `blake3` package, measured in the same run.

    python bench/bench_native.py [--size-mib 1024] [--rss-size-mib 2048]

Reports, on one file: outboard creation vs single-thread BLAKE3 hashing of the same file (goal
ratio >= 0.9); decode+verify of a full response stream vs single-thread BLAKE3 of the same bytes
in memory (goal >= 0.8), also into a data file, into data and outboard files as a download does,
and from the whole stream in one write call (a leaf per 16 KiB, written to /dev/null so that only
the decoder's work counts); a download's writes by the size of the pieces it is given (synced
every 16 MiB as a download syncs; the median, since what differs is how steady they are); and the
peak RSS above the interpreter's baseline while building the outboard of a larger file (goal < 64
MiB). Best of --repeat runs; files live in a temp dir.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import blake3

from ringdrop.bao import ChunkRanges, Decoder, Encoder, create_outboard

MIB = 2**20
PIECE = 256 * 1024
SYNC_BYTES = 16 * MIB  # what a download writes between syncs (PartialBlob.writer)
WRITE_PIECES = (256 * 1024, MIB, 4 * MIB, 16 * MIB)

RSS_PROBE = """
import sys
from ringdrop.bao import create_outboard

def status(field):
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024

base = status("VmRSS")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # resets VmHWM, the peak RSS, to the current RSS
create_outboard(sys.argv[1], sys.argv[2])
print(status("VmHWM") - base)
"""


def make_file(path: Path, size: int) -> None:
    xof = blake3.blake3(b"ringdrop bench")
    with open(path, "wb") as f:
        for offset in range(0, size, 64 * MIB):
            f.write(xof.digest(length=min(64 * MIB, size - offset), seek=offset))


def timed(repeat: int, fn: Callable[[], object]) -> list[float]:
    """Seconds of each of `repeat` calls of `fn`."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def best(repeat: int, fn: Callable[[], object]) -> float:
    return min(timed(repeat, fn))


def time_memory_hash(payload: bytes, repeat: int) -> float:
    return best(repeat, lambda: blake3.blake3(payload, max_threads=1).digest())


def hash_file(path: Path) -> bytes:
    hasher = blake3.blake3(max_threads=1)
    hasher.update_mmap(path)
    return hasher.digest()


def decode(root: bytes, pieces: list[bytes]) -> int:
    """Feeds the stream as it would arrive from the network, in pieces."""
    decoder = Decoder(root, ChunkRanges.all())
    total = 0
    for piece in pieces:
        for _, leaf in decoder.feed(piece):
            total += len(leaf)
    decoder.finish()
    return total


def decode_into_file(root: bytes, pieces: list[bytes], target: Path) -> None:
    target.unlink(missing_ok=True)
    decoder = Decoder(root, ChunkRanges.all(), data=target)
    for piece in pieces:
        decoder.write(piece)
    decoder.finish()


def decode_into_files(root: bytes, pieces: list[bytes], data: Path, outboard: Path) -> None:
    """As a download writes: verified leaves into the data file, verified parents into the
    outboard."""
    data.unlink(missing_ok=True)
    outboard.unlink(missing_ok=True)
    decoder = Decoder(root, ChunkRanges.all(), data=data, outboard=outboard)
    for piece in pieces:
        decoder.write(piece)
    decoder.finish()


def write_in_pieces(root: bytes, stream: bytes, piece: int, data: Path, outboard: Path) -> None:
    """As a download writes when each read of the network hands it `piece` bytes."""
    data.unlink(missing_ok=True)
    outboard.unlink(missing_ok=True)
    decoder = Decoder(root, ChunkRanges.all(), data=data, outboard=outboard)
    view = memoryview(stream)
    unsynced = 0
    for at in range(0, len(stream), piece):
        decoder.write(bytes(view[at : at + piece]))
        unsynced += piece
        if unsynced >= SYNC_BYTES:
            decoder.sync()
            unsynced = 0
    decoder.sync()
    decoder.finish()


def median_time(repeat: int, fn: Callable[[], object]) -> float:
    return statistics.median(timed(repeat, fn))


def decode_in_one_call(root: bytes, stream: bytes) -> None:
    decoder = Decoder(root, ChunkRanges.all(), data="/dev/null")
    decoder.write(stream)
    decoder.finish()


def drain(encoder: Encoder) -> None:
    """Reads the whole stream, as a sender handing pieces to the network would."""
    while encoder.read(PIECE):
        pass


def encode(encoder: Encoder) -> list[bytes]:
    pieces = []
    while piece := encoder.read(PIECE):
        pieces.append(piece)
    return pieces


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rss-size-mib", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args()
    size: int = args.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="ringdrop-bench-") as tmp:
        data, outboard = Path(tmp) / "data", Path(tmp) / "obao"
        make_file(data, size)
        hash_file(data)  # warm the page cache
        t_ref = best(args.repeat, lambda: hash_file(data))
        t_outboard = best(args.repeat, lambda: create_outboard(data, outboard))
        root, _ = create_outboard(data, outboard)
        assert root == hash_file(data)

        t_encode = best(
            args.repeat, lambda: drain(Encoder(data, outboard, root, size, ChunkRanges.all()))
        )
        stream = encode(Encoder(data, outboard, root, size, ChunkRanges.all()))
        t_mem_ref = time_memory_hash(data.read_bytes(), args.repeat)
        t_decode = best(args.repeat, lambda: decode(root, stream))
        out, out_ob = Path(tmp) / "out", Path(tmp) / "out-obao"
        t_decode_file = best(args.repeat, lambda: decode_into_file(root, stream, out))
        t_decode_files = best(args.repeat, lambda: decode_into_files(root, stream, out, out_ob))
        whole = b"".join(stream)
        stream.clear()

        def write_pieces(piece: int) -> None:
            write_in_pieces(root, whole, piece, out, out_ob)

        t_decode_one_call = best(args.repeat, lambda: decode_in_one_call(root, whole))
        t_pieces = {
            piece: median_time(max(args.repeat, 5), partial(write_pieces, piece))
            for piece in WRITE_PIECES
        }
        whole = b""
        data.unlink()

        big = Path(tmp) / "big"
        make_file(big, args.rss_size_mib * MIB)
        probe = subprocess.run(
            [sys.executable, "-c", RSS_PROBE, str(big), str(outboard)],
            check=True,
            capture_output=True,
            text=True,
        )
        rss_delta = int(probe.stdout.strip())

    def mbps(seconds: float) -> float:
        return size / seconds / 1e6

    figures = {
        "size_mib": args.size_mib,
        "blake3_file_1thread_MBps": round(mbps(t_ref)),
        "outboard_MBps": round(mbps(t_outboard)),
        "outboard_ratio": round(t_ref / t_outboard, 3),
        "blake3_memory_1thread_MBps": round(mbps(t_mem_ref)),
        "decode_verify_MBps": round(mbps(t_decode)),
        "decode_ratio": round(t_mem_ref / t_decode, 3),
        "decode_into_file_MBps": round(mbps(t_decode_file)),
        "decode_into_file_ratio": round(t_mem_ref / t_decode_file, 3),
        "decode_into_files_MBps": round(mbps(t_decode_files)),
        "decode_in_one_call_MBps": round(mbps(t_decode_one_call)),
        "encode_validated_file_MBps": round(mbps(t_encode)),
        "download_writes_by_piece_MBps": {
            f"{piece // 1024} KiB": round(mbps(t)) for piece, t in t_pieces.items()
        },
        "rss_over_baseline_MiB": round(rss_delta / MIB, 1),
        "rss_file_size_mib": args.rss_size_mib,
    }
    if args.json:
        print(json.dumps(figures, indent=1))
        return
    print(f"file: {args.size_mib} MiB, best of {args.repeat}")
    print(f"  blake3 (1 thread, file)        {figures['blake3_file_1thread_MBps']:>7} MB/s")
    print(
        f"  outboard creation              {figures['outboard_MBps']:>7} MB/s"
        f"  ratio {figures['outboard_ratio']:.2f} (goal >= 0.9)"
    )
    print(f"  blake3 (1 thread, memory)      {figures['blake3_memory_1thread_MBps']:>7} MB/s")
    print(
        f"  decode+verify (memory)         {figures['decode_verify_MBps']:>7} MB/s"
        f"  ratio {figures['decode_ratio']:.2f} (goal >= 0.8)"
    )
    print(
        f"  decode+verify into a file      {figures['decode_into_file_MBps']:>7} MB/s"
        f"  ratio {figures['decode_into_file_ratio']:.2f}"
    )
    print(f"  decode+verify into data+obao   {figures['decode_into_files_MBps']:>7} MB/s")
    print(f"  decode+verify, one write call  {figures['decode_in_one_call_MBps']:>7} MB/s")
    print(f"  validated encode from the file {figures['encode_validated_file_MBps']:>7} MB/s")
    print("  a download's writes, synced every 16 MiB, median, by piece size:")
    for name, value in t_pieces.items():
        print(f"    {name // 1024:>6} KiB pieces            {round(mbps(value)):>7} MB/s")
    print(
        f"peak RSS over baseline, outboard of {args.rss_size_mib} MiB: "
        f"{figures['rss_over_baseline_MiB']} MiB (goal < 64)"
    )


if __name__ == "__main__":
    main()
