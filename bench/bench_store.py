"""Benchmarks of the blob store against the `blake3` package, measured in the same run.

    python bench/bench_store.py                 # 1 GiB file, 10,000 small files
    python bench/bench_store.py --size 64M --files 500   # a quick run

Prints one table: each store operation, the blake3 reference for the same bytes, and the ratio
the issue sets a goal for. Everything happens in a temporary folder that is deleted afterwards.
Figures are the median of `--repeat` runs, with the file in the page cache (a warm-up read first).
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import blake3

from ringdrop.bao import ChunkRanges, Encoder, create_outboard
from ringdrop.store import ImportMode, Store

PIECE = 256 << 10


def parse_size(text: str) -> int:
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    if text[-1:].upper() in units:
        return int(float(text[:-1]) * units[text[-1].upper()])
    return int(text)


def median_time(fn: Callable[[], object], repeat: int, before: Callable[[], object]) -> float:
    """The median time of `repeat` calls of `fn`, each after an untimed call of `before`."""
    times = []
    for _ in range(repeat):
        before()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def make_file(path: Path, size: int) -> None:
    with path.open("wb") as f:
        left = size
        while left:
            n = min(left, 16 << 20)
            f.write(os.urandom(n))
            left -= n


def make_tree(folder: Path, count: int, rng: random.Random) -> None:
    for i in range(count):
        sub = folder / f"d{i % 100:02d}"
        sub.mkdir(parents=True, exist_ok=True)
        path = sub / f"f{i:05d}.txt"
        path.write_bytes(rng.randbytes(rng.randint(100, 8000)))


def blake3_file(path: Path) -> bytes:
    hasher = blake3.blake3()
    with path.open("rb", buffering=0) as f:
        buffer = bytearray(1 << 20)
        while n := f.readinto(buffer):
            hasher.update(memoryview(buffer)[:n])
    return hasher.digest()


def blake3_tree(folder: Path) -> None:
    """The reference for a folder import: find every file and hash it, in one loop."""
    for top, _, names in os.walk(folder):
        for name in names:
            with open(os.path.join(top, name), "rb") as f:
                blake3.blake3(f.read()).digest()


def copy_and_sync(src: Path, dst: Path) -> None:
    """The floor for a copy-mode import: copy the file and make the copy durable."""
    shutil.copyfile(src, dst)
    fd = os.open(dst, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def settle() -> None:
    """Lets earlier writes reach the disk, so that they do not slow down the next measurement."""
    os.sync()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=1 << 30, help="big file (1G)")
    parser.add_argument("--files", type=int, default=10_000, help="small files (10000)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to make the temp folder")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ringdrop-bench-", dir=args.dir))
    rows: list[tuple[str, float, str, float, str]] = []
    try:
        rows += bench_big_file(work, args.size, args.repeat)
        rows += bench_tree(work, args.files, args.repeat)
        rows += bench_partial(work, args.size, args.repeat)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print_table(rows, args.size, args.files, args.repeat)


def fresh_stores(work: Path, prefix: str) -> tuple[list[Store], Callable[[], None]]:
    """A new store for every run: nothing is deleted while a measurement runs (freeing a 1 GiB
    file on this file system, mounted with `discard`, slows the writes that follow)."""
    stores: list[Store] = []

    def before() -> None:
        settle()
        stores.append(Store.open(work / f"{prefix}-{len(stores)}"))

    return stores, before


def import_latest(stores: list[Store], path: Path, mode: ImportMode) -> None:
    stores[-1].import_file(path, mode=mode)


def bench_big_file(work: Path, size: int, repeat: int) -> list[tuple[str, float, str, float, str]]:
    big = work / "big.bin"
    make_file(big, size)
    blake3_file(big)
    t_hash = median_time(lambda: blake3_file(big), repeat, settle)
    copies = iter(range(repeat))
    t_copy = median_time(
        lambda: copy_and_sync(big, work / f"copy-{next(copies)}.bin"), repeat, settle
    )
    rows = [("cp + fsync (no hashing)", t_copy, "blake3 of the file", t_hash, "")]
    modes: tuple[ImportMode, ...] = ("copy", "reference")
    for mode in modes:
        stores, before = fresh_stores(work, f"store-{mode}")
        t = median_time(partial(import_latest, stores, big, mode), repeat, before)
        rows.append((f"import, {mode} mode", t, "blake3 of the file", t_hash, ">= 0.8"))
        for store in stores:
            store.close()
    return rows


def bench_tree(work: Path, files: int, repeat: int) -> list[tuple[str, float, str, float, str]]:
    tree = work / "tree"
    make_tree(tree, files, random.Random(1))
    blake3_tree(tree)
    t_loop = median_time(lambda: blake3_tree(tree), repeat, settle)
    stores, before = fresh_stores(work, "store-tree")
    t_tree = median_time(lambda: stores[-1].import_directory(tree), repeat, before)
    for store in stores:
        store.close()
    return [(f"import {files} small files", t_tree, "walk + blake3 loop", t_loop, "<= 2x")]


def bench_partial(work: Path, size: int, repeat: int) -> list[tuple[str, float, str, float, str]]:
    big = work / "big.bin"
    root, _ = create_outboard(big, work / "big.obao")
    stream = Encoder(big, work / "big.obao", root, size, ChunkRanges.all()).read(1 << 62)
    pieces = [stream[at : at + PIECE] for at in range(0, len(stream), PIECE)]
    del stream
    t_hash = median_time(lambda: blake3_file(big), repeat, settle)
    stores, before = fresh_stores(work, "store-partial")

    def write_partial() -> None:
        with stores[-1].partial(root) as download:
            writer = download.writer()
            for piece in pieces:
                writer.write(piece)
            writer.finish()

    t_partial = median_time(write_partial, repeat, before)
    settle()
    promotions = []
    for store in stores:
        with store.partial(root) as download:
            start = time.perf_counter()
            download.promote(tag="bench")
            promotions.append(time.perf_counter() - start)
        store.close()
    t_promote = statistics.median(promotions)
    return [
        ("write partial (verify+sync)", t_partial, "blake3 of the file", t_hash, ">= 300 MB/s"),
        ("promote partial opened again (rehash)", t_promote, "blake3 of the file", t_hash, ""),
    ]


def print_table(
    rows: list[tuple[str, float, str, float, str]], size: int, files: int, repeat: int
) -> None:
    mb = size / 1e6
    print(f"\nblob store: {size / (1 << 30):.2f} GiB file, {files} small files (100 B-8 KB),")
    print(f"median of {repeat} runs, data in the page cache, os.sync() before each run\n")
    head = f"{'operation':<30} {'time':>8} {'rate':>12}   {'reference':<20} {'time':>8}"
    print(f"{head} {'ratio':>6}  goal")
    for name, t, ref, t_ref, goal in rows:
        rate = f"{files / t:,.0f} files/s" if "files" in name else f"{mb / t:,.0f} MB/s"
        ratio = f"{t / t_ref:.2f}x" if goal == "<= 2x" else f"{t_ref / t:.2f}"
        print(f"{name:<30} {t:>7.3f}s {rate:>12}   {ref:<20} {t_ref:>7.3f}s {ratio:>6}  {goal}")
    print("\nratio: reference time / store time, except for the folder: store time / reference")


if __name__ == "__main__":
    main()
