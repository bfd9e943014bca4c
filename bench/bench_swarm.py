"""A ring serving itself: one file fetched from 1, 2 and 3 providers at once, every provider's
upload limited as a home line's is, each machine in its own network namespace on one LAN.

    sudo python bench/bench_swarm.py [--size-mib 256] [--limit 20M] [--slow 2M] [--repeat 2]
                                     [--one-machine]

Owner A, members B and C and the receiver D each run in a network namespace of their own, all
on one bridge at MTU 1500 (tests/netlab.py `lan`; root needed; --one-machine runs them all in
this one instead), as users on one LAN would: with the ticket `share` prints by default (every
address of A's machine), relay, STUN and discovery off (the namespaces have no internet), the
package's bytecode written as an install would (bench/installed.py). A shares the file with a
ring of members; B and C fetch it first (from A), which tells A that they hold it and where they
are reached (HAVE), and serve it (`ringdrop serve --limit-rate`); D learns of them from A
(ABOUT), as any member does. A fresh member D runs `ringdrop get --json`, timed from the
command's start to its exit, in five setups: A alone (before any member holds the file), A and
B (B fetched it just before), A, B and C (C fetched it just before), the same with C limited to
`--slow`, and A alone again with B and C named by A but not serving (what an offline member
costs). Each run starts D from an empty data directory. Reports the rate (content bytes /
seconds) and how many bytes each provider sent; every download must end intact (checked by
`get` itself against the root, and here against the file's hash).

Goals (issue 24): two providers at least 1.8 times one provider's rate, three at least 2.5
times; one of three at a tenth of the others' limit within 15 % of two providers alone.

    python bench/bench_swarm.py --baseline /work/main [--size-mib 256] [--repeat 3]

measures the common case instead: one sharer, no limit, no other provider, the open ring;
`get` of this checkout against `get` of the one at BASELINE (both from a sharer running this
checkout), run alternately, so that asking the sharer about providers shows up as what it costs
(the sharer in A's namespace, the receiver in D's).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from installed import compile_bytecode, user_env  # noqa: E402

from tests.netlab import in_namespace, is_root, lan  # noqa: E402

RINGDROP = [sys.executable, "-m", "ringdrop.cli"]
MIB = 1 << 20
OFFLINE = {"RINGDROP_RELAY": "disabled", "RINGDROP_STUN": "disabled",
           "RINGDROP_DISCOVERY": "disabled"}  # fmt: skip
NODES = ("a", "b", "c", "d")


@dataclass(frozen=True)
class Node:
    """One machine: its data directory and its network namespace (None: this one)."""

    data: Path
    namespace: str | None

    def command(self, *args: str, data: Path | None = None) -> list[str]:
        command = [*RINGDROP, "--data-dir", str(data or self.data), *args]
        return in_namespace(self.namespace, command) if self.namespace else command


@contextlib.contextmanager
def machines(work: Path, one_machine: bool) -> Iterator[tuple[dict[str, Node], str]]:
    if one_machine:
        yield {n: Node(work / n, None) for n in NODES}, "all on one machine"
        return
    if not is_root():
        sys.exit("the namespaces need root (or run with --one-machine)")
    with lan(NODES, mtu=1500) as net:
        yield {n: Node(work / n, net.hosts[n]) for n in NODES}, "one bridge, MTU 1500"


def env(code: Path) -> dict[str, str]:
    return user_env(PYTHONPATH=str(code), **OFFLINE)


def run(node: Node, *args: str, code: Path = ROOT, data: Path | None = None) -> str:
    done = subprocess.run(
        node.command(*args, data=data), capture_output=True, text=True, env=env(code), check=False
    )
    if done.returncode:
        sys.exit(f"ringdrop {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def serve(node: Node, limit: str | None) -> subprocess.Popen[str]:
    """`ringdrop serve --limit-rate LIMIT`, its log in serve.log beside the data directory."""
    log = node.data.parent / f"{node.data.name}-serve.log"
    limited = ["--limit-rate", limit] if limit else []
    with log.open("a") as out:
        process = subprocess.Popen(
            node.command("serve", *limited),
            stdout=out, stderr=subprocess.STDOUT, text=True, env=env(ROOT),
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while "serving as " not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            stop(process)
            sys.exit(f"a server did not start: {log.read_text()}")
        time.sleep(0.1)
    return process


def stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def make_file(path: Path, size: int) -> bytes:
    h = hashlib.sha256()
    with path.open("wb") as out:
        for block in range(0, size, MIB):
            piece = hashlib.sha256(block.to_bytes(8, "big")).digest() * (MIB // 32)
            piece = piece[: min(MIB, size - block)]
            h.update(piece)
            out.write(piece)
    return h.digest()


def file_hash(path: Path) -> bytes:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(MIB):
            h.update(chunk)
    return h.digest()


def fetch(
    d: Node, work: Path, ticket: str, name: str, expected: bytes
) -> tuple[float, dict[str, int]]:
    data = work / name
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(d.data, data)  # D's identity, and nothing received yet
    dest = work / f"{name}.out"
    dest.unlink(missing_ok=True)
    started = time.monotonic()
    out = run(d, "get", ticket, "--dest", str(dest), "--json", data=data)
    seconds = time.monotonic() - started
    if file_hash(dest) != expected:
        sys.exit(f"{name}: the file arrived altered")
    dest.unlink()
    shutil.rmtree(data)
    return seconds, json.loads(out)["providers"]


def baseline(nodes: dict[str, Node], work: Path, size: int, repeat: int, other: Path) -> None:
    """One sharer (this code), no limit: `get` by this code and by the baseline's."""
    a, d = nodes["a"], nodes["d"]
    expected = make_file(work / "share.bin", size)
    ticket = json.loads(run(a, "share", str(work / "share.bin"), "--open", "--json"))["ticket"]
    server = serve(a, None)
    times: dict[str, list[float]] = {"this checkout": [], "baseline": []}
    try:
        for i in range(repeat):
            for label, code in (("this checkout", ROOT), ("baseline", other)):
                data, dest = work / f"r{i}{label[0]}", work / "out.bin"
                started = time.monotonic()
                run(d, "get", ticket, "--dest", str(dest), code=code, data=data)
                times[label].append(time.monotonic() - started)
                if file_hash(dest) != expected:
                    sys.exit("the file arrived altered")
                dest.unlink()
                shutil.rmtree(data)
    finally:
        stop(server)
    for label, runs in times.items():
        print(f"{label}: median {statistics.median(runs):.3f} s, best {min(runs):.3f} s, "
              f"{size / min(runs) / 1e6:.0f} MB/s (runs: "
              f"{', '.join(f'{t:.3f}' for t in runs)})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--limit", default="20M")
    parser.add_argument("--slow", default="2M")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--keep", type=Path, help="work in this folder and keep it (logs)")
    parser.add_argument("--baseline", type=Path, help="compare one sharer's case with this code")
    parser.add_argument("--one-machine", action="store_true", help="no namespaces: all here")
    args = parser.parse_args()
    size = args.size_mib * MIB
    compile_bytecode(ROOT)
    if args.baseline is not None:
        compile_bytecode(args.baseline.resolve())
    with tempfile.TemporaryDirectory(prefix="bench-swarm-") as tmp:
        work = Path(tmp) if args.keep is None else args.keep.resolve()
        work.mkdir(parents=True, exist_ok=True)
        with machines(work, args.one_machine) as (nodes, path):
            if args.baseline is not None:
                baseline(nodes, work, size, args.repeat, args.baseline.resolve())
            else:
                swarm(nodes, work, size, args, path)


def swarm(
    nodes: dict[str, Node], work: Path, size: int, args: argparse.Namespace, path: str
) -> None:
    a, d = nodes["a"], nodes["d"]
    ids = {name: run(node, "id").strip() for name, node in nodes.items()}
    run(a, "ring", "new", "family")
    for name in ("b", "c", "d"):
        run(a, "ring", "add", "family", ids[name])
    expected = make_file(work / "share.bin", size)
    shared = run(a, "share", str(work / "share.bin"), "--ring", "family", "--json")
    ticket = json.loads(shared)["ticket"]
    servers = {"a": serve(a, args.limit)}
    # A member that fetches tells A it holds the content, and D then tries it: each member
    # fetches just before the first setup it serves in, so that every earlier setup has no
    # provider that is named but not serving. The last setup is that case on purpose.
    setups: list[tuple[str, tuple[str, ...], dict[str, str]]] = [
        ("1 provider (A)", (), {}),
        ("2 providers (A, B)", ("b",), {"b": args.limit}),
        ("3 providers (A, B, C)", ("c",), {"b": args.limit, "c": args.limit}),
        (f"3 providers, C at {args.slow}", (), {"b": args.limit, "c": args.slow}),
        ("A alone, B and C named but off", (), {}),
    ]
    rows = []
    try:
        for label, newcomers, members in setups:
            for name in newcomers:
                run(nodes[name], "get", ticket, "--dest", str(work / f"{name}.bin"))
            for name, limit in members.items():
                servers[name] = serve(nodes[name], limit)
            times, shares = [], []
            for i in range(args.repeat):
                seconds, providers = fetch(d, work, ticket, f"d{i}", expected)
                times.append(seconds)
                shares.append(providers)
            for name in members:
                stop(servers.pop(name))
            best = min(times)
            rows.append((label, size / best, times, shares[times.index(best)]))
            print(f"{label}: {size / best / 1e6:.1f} MB/s (runs: "
                  f"{', '.join(f'{t:.2f} s' for t in times)})", flush=True)  # fmt: skip
    finally:
        for process in servers.values():
            stop(process)
    names = {v: k.upper() for k, v in ids.items()}
    one = rows[0][1]
    print(f"\n{args.size_mib} MiB, {path}, every provider limited to {args.limit}B/s, best of "
          f"{args.repeat}:")  # fmt: skip
    print("| setup | rate | times one provider | bytes from each |\n|---|---|---|---|")
    for label, rate, _, providers in rows:
        ordered = sorted(providers.items(), key=lambda item: names.get(item[0], ""))
        each = ", ".join(f"{names.get(p, p[:8])} {n / MIB:.0f} MiB" for p, n in ordered)
        print(f"| {label} | {rate / 1e6:.1f} MB/s | {rate / one:.2f} | {each} |")
    slow_vs_two = rows[3][1] / rows[1][1]
    print(f"\nslow third vs two providers alone: {100 * (slow_vs_two - 1):+.1f} % "
          f"(median of runs: {statistics.median(rows[3][2]):.2f} s vs "
          f"{statistics.median(rows[1][2]):.2f} s)")  # fmt: skip
    print(
        f"two providers named but off cost A alone "
        f"{statistics.median(rows[4][2]) - statistics.median(rows[0][2]):+.2f} s (medians)"
    )


if __name__ == "__main__":
    main()
