"""A store client run as a subprocess by the tests, to be killed with SIGKILL at any instant.

Each command prints one line per durable step ("committed …", "flushed …") after it, and one
line per deletion ("untagging …") before it, flushing stdout, so the test knows exactly what must
survive the kill.

    python worker.py hold-temp-tag STORE ROOT
    python worker.py hold-partial STORE ROOT SIZE
    python worker.py download STORE DATA OUTBOARD ROOT SIZE PACE [MOVES]
    python worker.py import STORE SCRATCH SEED
    python worker.py gc STORE SEED
    python worker.py commit-small STORE SEED
    python worker.py export STORE ROOT DEST KEEP [STEP[:N]]

With MOVES, the download's promotion stops after it has moved that many of the download's files
into the store's blobs/ (a real `os.replace`), says "at move" and waits there for the kill.
With STEP, the export stops at the Nth call (default: the first) of its function STEP (one of
ringdrop.store.export's), says "at STEP" and waits there for the kill: a kill at a known point.
"""

from __future__ import annotations

import importlib
import os
import random
import signal
import sys
import time
from pathlib import Path

from ringdrop.bao import Encoder, outboard_from_bytes
from ringdrop.store import ImportMode, Store

PIECE = 4096
FLUSH_EVERY = 8


def say(*words: object) -> None:
    # One write per line: with PYTHONUNBUFFERED, print() would write word by word, and a kill
    # between two of those writes would leave half a line.
    sys.stdout.write(" ".join(map(str, words)) + "\n")
    sys.stdout.flush()


def hold_temp_tag(store: Store, root: bytes) -> None:
    store.temp_tag(root)
    say("ready")
    time.sleep(3600)


def hold_partial(store: Store, root: bytes, size: int) -> None:
    store.partial(root, size)
    say("ready")
    time.sleep(3600)


def stop_after_moves(count: int) -> None:
    """Makes the `count`th `os.replace` into blobs/ wait for the kill once it has happened."""
    original = os.replace
    moves = 0

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        nonlocal moves
        original(src, dst)
        if Path(dst).parent.parent.name == "blobs":
            moves += 1
            if moves == count:
                say("at", "move")
                while True:
                    signal.pause()  # until the SIGKILL

    os.replace = replace  # type: ignore[assignment]


def download(store: Store, data: Path, outboard: Path, root: bytes, size: int, pace: float) -> None:
    """Resumes the download of `root` from a local 'sender', `pace` seconds a piece, flushing
    every few pieces."""
    with store.partial(root, size) as partial:
        missing = partial.missing()
        say("ready")
        encoder = Encoder(data, outboard, root, size, missing)
        writer = partial.writer(missing, flush_bytes=1 << 40, flush_interval=1e9)
        pieces = 0
        while piece := encoder.read(PIECE):
            time.sleep(pace)
            writer.write(piece)
            pieces += 1
            if pieces % FLUSH_EVERY == 0:
                writer.flush()
                say("flushed", partial.valid().to_bytes().hex())
        writer.finish()
        say("flushed", partial.valid().to_bytes().hex())
        partial.promote(tag="downloaded")
    say("promoted")


def import_loop(store: Store, scratch: Path, rng: random.Random) -> None:
    """Imports files forever, now and then untagging one and collecting garbage."""
    say("ready")
    tagged: list[str] = []
    for i in range(10**9):
        path = scratch / f"{os.getpid()}-{i}.bin"
        # Random content of 16 bytes or more: no two files share a root (and so a tag).
        path.write_bytes(rng.randbytes(rng.choice([16, 100, 20_000, 150_000, 400_000])))
        mode: ImportMode = "reference" if i % 3 == 2 else "copy"
        info, tag = store.import_file(path, mode=mode)
        tagged.append(tag.name)
        say("committed", info.root.hex(), mode)
        if i % 4 == 3:
            name = tagged.pop(rng.randrange(len(tagged)))
            # Said before it happens: a kill right after the delete must not look like a loss.
            say("untagging", name)
            store.delete_tag(name)
            store.gc()
            say("gc")


def gc_loop(store: Store, rng: random.Random) -> None:
    """Makes garbage and collects it, forever."""
    say("ready")
    while True:
        for _ in range(3):
            _, tag = store.import_bytes(rng.randbytes(rng.choice([10, 50_000, 200_000])))
            store.delete_tag(tag.name)
        store.gc()
        say("gc")


def small_group(seed: int, group: int) -> list[tuple[bytes, bytes]]:
    """Group `group` of the commit-small loop: 300 small blobs, the same in every process."""
    rng = random.Random(seed * 1_000_003 + group)
    items = []
    for _ in range(300):
        data = rng.randbytes(rng.randint(64, 16384))  # too long to repeat by chance
        items.append((outboard_from_bytes(data)[0], data))
    return items


def commit_small_loop(store: Store, seed: int) -> None:
    """Group-commits groups of small blobs, forever, saying each before and after."""
    say("ready")
    group = 0
    while True:
        items = small_group(seed, group)
        say("committing", group)
        store.commit_small(items)
        say("committed", group)
        group += 1


def export(store: Store, root: bytes, dest: Path, keep: bool, stop_at: str | None) -> None:
    """Exports collection `root` to `dest`, handing the store's files over unless `keep`;
    with `stop_at` ("STEP" or "STEP:N"), waits for the kill on entering that step."""
    if stop_at is not None:
        step, _, nth = stop_at.partition(":")
        steps = importlib.import_module("ringdrop.store.export")
        original = getattr(steps, step)
        calls = 0

        def stopping(*args: object, **kwargs: object) -> object:
            nonlocal calls
            calls += 1
            if calls == int(nth or 1):
                say("at", step)
                while True:
                    signal.pause()  # until the SIGKILL
            return original(*args, **kwargs)

        setattr(steps, step, stopping)
    say("ready")
    store.export_collection(root, dest, keep=keep)
    say("exported")


def main() -> None:
    command, store_path, *args = sys.argv[1:]
    with Store.open(store_path) as store:
        if command == "hold-temp-tag":
            hold_temp_tag(store, bytes.fromhex(args[0]))
        elif command == "hold-partial":
            hold_partial(store, bytes.fromhex(args[0]), int(args[1]))
        elif command == "download":
            data, outboard, root, size, pace, *moves = args
            if moves:
                stop_after_moves(int(moves[0]))
            download(store, Path(data), Path(outboard), bytes.fromhex(root), int(size), float(pace))
        elif command == "import":
            import_loop(store, Path(args[0]), random.Random(int(args[1])))
        elif command == "gc":
            gc_loop(store, random.Random(int(args[0])))
        elif command == "commit-small":
            commit_small_loop(store, int(args[0]))
        elif command == "export":
            stop_at = args[3] if len(args) > 3 else None
            export(store, bytes.fromhex(args[0]), Path(args[1]), args[2] == "keep", stop_at)
        else:
            raise SystemExit(f"unknown command {command}")


if __name__ == "__main__":
    main()
