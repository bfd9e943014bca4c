"""A ring serving itself: one file fetched from 1, 2 and 3 providers at once, every provider's
upload limited as a home line's is, on loopback.

    python bench/bench_swarm.py [--size-mib 256] [--limit 20M] [--slow 2M] [--repeat 2]

An owner A shares the file with a ring of members; members B and C fetch it first (from A) and
serve it (`ringdrop serve --limit-rate`), so that they are providers. Then a fresh member D runs
`ringdrop get --json`, timed from the command's start to its exit, in four setups: A alone
(B and C not serving), A and B, A, B and C, and A, B and C with C limited to `--slow`. Each
run starts D from an empty data directory. Reports the rate (content bytes / seconds) and how
many bytes each provider sent; every download must end intact (checked by `get` itself against
the root, and here against the file's hash).

Goals (issue 24): two providers at least 1.8 times one provider's rate, three at least 2.5
times; one of three at a tenth of the others' limit within 15 % of two providers alone.

    python bench/bench_swarm.py --baseline /work/main [--size-mib 256] [--repeat 3]

measures the common case instead: one sharer, no limit, no other provider, the open ring;
`get` of this checkout against `get` of the one at BASELINE (both from a sharer running this
checkout), run alternately, so that asking the sharer about providers shows up as what it costs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RINGDROP = [sys.executable, "-m", "ringdrop.cli"]
MIB = 1 << 20
ENV = {
    **{k: v for k, v in os.environ.items() if k != "RINGDROP_DATA_DIR"},
    "PYTHONPATH": str(ROOT),
    "RINGDROP_ADDRESSES": "127.0.0.1",
    "RINGDROP_RELAY": "disabled",
    "RINGDROP_STUN": "disabled",
    "RINGDROP_DISCOVERY": "disabled",
    "PYTHONUNBUFFERED": "1",
}


def run(data: Path, *args: str, code: Path = ROOT) -> str:
    done = subprocess.run(
        [*RINGDROP, "--data-dir", str(data), *args],
        capture_output=True, text=True, env={**ENV, "PYTHONPATH": str(code)}, check=False,
    )  # fmt: skip
    if done.returncode:
        sys.exit(f"ringdrop {' '.join(args)} failed: {done.stderr}")
    return done.stdout


def serve(data: Path, limit: str | None, code: Path = ROOT) -> subprocess.Popen[str]:
    """`ringdrop serve --limit-rate LIMIT`, its log in serve.log beside the data directory."""
    log = data.parent / f"{data.name}-serve.log"
    limited = ["--limit-rate", limit] if limit else []
    with log.open("a") as out:
        process = subprocess.Popen(
            [*RINGDROP, "--data-dir", str(data), "serve", *limited],
            stdout=out, stderr=subprocess.STDOUT, text=True,
            env={**ENV, "PYTHONPATH": str(code)},
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while "serving as " not in log.read_text():
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"a server did not start: {log.read_text()}")
        time.sleep(0.1)
    return process


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    process.wait(30)


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


def fetch(work: Path, ticket: str, name: str, expected: bytes) -> tuple[float, dict[str, int]]:
    data = work / name
    shutil.rmtree(data, ignore_errors=True)
    shutil.copytree(work / "d-keys", data)  # D's identity, and nothing received yet
    dest = work / f"{name}.out"
    dest.unlink(missing_ok=True)
    started = time.monotonic()
    out = run(data, "get", ticket, "--dest", str(dest), "--json")
    seconds = time.monotonic() - started
    if file_hash(dest) != expected:
        sys.exit(f"{name}: the file arrived altered")
    dest.unlink()
    shutil.rmtree(data)
    return seconds, json.loads(out)["providers"]


def baseline(work: Path, size: int, repeat: int, other: Path) -> None:
    """One sharer (this code), no limit: `get` by this code and by the baseline's."""
    a = work / "a"
    expected = make_file(work / "share.bin", size)
    ticket = json.loads(run(a, "share", str(work / "share.bin"), "--open", "--json"))["ticket"]
    server = serve(a, None)
    times: dict[str, list[float]] = {"this checkout": [], "baseline": []}
    try:
        for i in range(repeat):
            for label, code in (("this checkout", ROOT), ("baseline", other)):
                data, dest = work / f"r{i}{label[0]}", work / "out.bin"
                started = time.monotonic()
                run(data, "get", ticket, "--dest", str(dest), code=code)
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
    args = parser.parse_args()
    size = args.size_mib * MIB
    with tempfile.TemporaryDirectory(prefix="bench-swarm-") as tmp:
        work = Path(tmp) if args.keep is None else args.keep
        work.mkdir(parents=True, exist_ok=True)
        if args.baseline is not None:
            baseline(work, size, args.repeat, args.baseline.resolve())
            return
        a, b, c, d = (work / n for n in ("a", "b", "c", "d-keys"))
        ids = {}
        for name, data in (("b", b), ("c", c), ("d", d)):
            ids[name] = run(data, "id").strip()
        run(a, "ring", "new", "family")
        for name in ("b", "c", "d"):
            run(a, "ring", "add", "family", ids[name])
        expected = make_file(work / "share.bin", size)
        shared = run(a, "share", str(work / "share.bin"), "--ring", "family", "--json")
        ticket = json.loads(shared)["ticket"]
        servers = {"a": serve(a, args.limit)}
        try:
            for name, data in (("b", b), ("c", c)):  # the members fetch it first, unlimited
                run(data, "get", ticket, "--dest", str(work / f"{name}.bin"))
            rows = []
            setups = [
                ("1 provider (A)", {}),
                ("2 providers (A, B)", {"b": args.limit}),
                ("3 providers (A, B, C)", {"b": args.limit, "c": args.limit}),
                (f"3 providers, C at {args.slow}", {"b": args.limit, "c": args.slow}),
            ]
            for label, members in setups:
                for name, limit in members.items():
                    servers[name] = serve(b if name == "b" else c, limit)
                times, shares = [], []
                for i in range(args.repeat):
                    seconds, providers = fetch(work, ticket, f"d{i}", expected)
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
        names[run(a, "id").strip()] = "A"
        one = rows[0][1]
        print(f"\n{args.size_mib} MiB, every provider limited to {args.limit}B/s, best of "
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


if __name__ == "__main__":
    main()
