"""Helpers for the store tests: content, encoded streams, reading blobs back as a peer would."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import time
from pathlib import Path

from hypothesis import strategies as st

from ringdrop.bao import ChunkRanges, Decoder, Encoder, outboard_from_bytes
from ringdrop.store import Store


def stream_of(data: bytes, ranges: ChunkRanges | None = None) -> tuple[bytes, bytes]:
    """The root of `data` and its verified response stream for `ranges` (default: all)."""
    root, outboard = outboard_from_bytes(data)
    encoder = Encoder(data, outboard, root, len(data), ranges or ChunkRanges.all())
    return root, encoder.read(1 << 40)


def read_all(store: Store, root: bytes) -> bytes:
    """The content of `root` as a peer would receive it: through the encoder, verified."""
    stream = store.encoder(root).read(1 << 40)
    return b"".join(piece for _, piece in Decoder(root, ChunkRanges.all()).feed(stream))


# One part of a safe name: any printable text without separators, "." or "..".
SAFE_PART = st.text(
    alphabet=st.characters(
        blacklist_categories=("Cs", "Cc"),
        blacklist_characters="/\\\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
        "\u2066\u2067\u2068\u2069",
    ),
    min_size=1,
    max_size=30,
).filter(lambda p: p not in (".", "..") and not (len(p) > 1 and p[1] == ":"))


WORKER = Path(__file__).with_name("worker.py")


def spawn(*args: object) -> subprocess.Popen[bytes]:
    """Starts `worker.py` with `args` and waits until it says it is ready.

    Its output is read unbuffered (`read_line`): a buffered reader could take a line the worker
    has printed into its buffer, where `select` no longer sees it, and wait for it forever."""
    proc = subprocess.Popen(
        [sys.executable, str(WORKER), *map(str, args)], stdout=subprocess.PIPE, bufsize=0
    )
    line = read_line(proc)
    if line.strip() != "ready":
        proc.kill()
        raise AssertionError(f"the worker did not start: {line!r}")
    return proc


def read_line(proc: subprocess.Popen[bytes]) -> str:
    """The worker's next line, read byte by byte ("" once it has ended)."""
    assert proc.stdout is not None
    return proc.stdout.readline().decode()


def wait_for_line(proc: subprocess.Popen[bytes], prefixes: tuple[str, ...], failsafe: float) -> str:
    """The next line the worker prints that starts with one of `prefixes`; a worker that prints
    none within `failsafe` seconds (a hang, not slowness: keep it generous) fails the test."""
    assert proc.stdout is not None
    deadline = time.monotonic() + failsafe
    while True:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            raise AssertionError(f"the worker printed no {prefixes} line in {failsafe:g} s")
        line = read_line(proc)
        if not line:
            raise AssertionError(f"the worker ended (exit {proc.wait()}) before a {prefixes} line")
        if line.startswith(prefixes):
            return line


def kill(proc: subprocess.Popen[bytes]) -> list[str]:
    """SIGKILLs the worker and returns the whole lines it printed after 'ready'."""
    proc.send_signal(signal.SIGKILL)
    out, _ = proc.communicate()
    whole, _, _ = out.decode().rpartition("\n")
    return whole.splitlines()
