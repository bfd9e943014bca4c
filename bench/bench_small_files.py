"""Many-small-files benchmark: `share DIR` → `serve` → `get TICKET` with the real CLI, on loopback.

    python bench/bench_small_files.py [--files 10000] [--repeat 1] [--json]

Makes a folder of `--files` files of 1 to 4,096 random bytes in 10 subfolders (seeded, so every
run moves the same folder), then times, each in a fresh data directory:

- share: `ringdrop share DIR --open` (walk, hash, insert);
- get: `ringdrop get TICKET --dest OUT` against `ringdrop serve` in another process, the whole
  command as a user sees it (connect, fetch, verify, commit, export);
- export: `Store.export_collection` of the received folder into a fresh folder, in process.

Every received file is compared with the original. Reports files/s for each (best of
`--repeat`) and the peak RSS of the ringdrop processes. The namespace-pair comparison with
wormhole and sendme is bench/bench_network.py's.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ringdrop.access import MIGRATIONS  # noqa: E402
from ringdrop.store import Store  # noqa: E402

TICKET = re.compile(r"rdrop:[a-z2-7]+")
RINGDROP = [sys.executable, "-m", "ringdrop.cli"]


def make_folder(path: Path, files: int, seed: int = 12) -> None:
    rng = random.Random(seed)
    for i in range(files):
        folder = path / f"dir{i % 10}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"file{i:06d}.bin").write_bytes(rng.randbytes(rng.randint(1, 4096)))


def env() -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if k != "RINGDROP_DATA_DIR"}
    out.update(RINGDROP_ADDRESSES="127.0.0.1", PYTHONPATH=str(ROOT))
    return out


def ringdrop(data_dir: Path, *args: str) -> str:
    done = subprocess.run(
        [*RINGDROP, "--data-dir", str(data_dir), *args],
        capture_output=True,
        text=True,
        env=env(),
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"ringdrop {' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def same_tree(a: Path, b: Path) -> bool:
    def files(base: Path) -> dict[str, bytes]:
        return {
            str(p.relative_to(base)): p.read_bytes() for p in sorted(base.rglob("*")) if p.is_file()
        }

    return files(a) == files(b)


def run_once(source: Path, files: int, work: Path) -> dict[str, float]:
    sharer, receiver = work / "sharer", work / "receiver"
    started = time.perf_counter()
    out = ringdrop(sharer, "share", str(source), "--open")
    share_s = time.perf_counter() - started
    found = TICKET.search(out)
    assert found is not None, out
    ticket = found.group(0)
    log = work / "serve.log"
    with log.open("w") as log_file:
        server = subprocess.Popen(
            [*RINGDROP, "--data-dir", str(sharer), "serve"],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env(),
        )
    try:
        while "serving as" not in log.read_text():  # listening from here on
            if server.poll() is not None:
                raise SystemExit(f"ringdrop serve failed:\n{log.read_text()}")
            time.sleep(0.05)
        started = time.perf_counter()
        ringdrop(receiver, "get", ticket, "--dest", str(work / "out") + "/")
        get_s = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait()
    received = work / "out" / source.name
    if not same_tree(source, received):
        raise SystemExit("the received folder differs from the original")
    with Store(receiver, MIGRATIONS) as store:
        (tag,) = [t for t in store.tags() if t.format == "collection"]
        started = time.perf_counter()
        store.export_collection(tag.root, work / "export")
        export_s = time.perf_counter() - started
    return {
        "peak_child_rss_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
        "share_files_per_s": files / share_s,
        "get_files_per_s": files / get_s,
        "export_files_per_s": files / export_s,
        "share_s": share_s,
        "get_s": get_s,
        "export_s": export_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rd-small-") as tmp:
        source = Path(tmp) / "small"
        make_folder(source, args.files)
        runs = []
        for i in range(args.repeat):
            work = Path(tmp) / f"run{i}"
            runs.append(run_once(source, args.files, work))
            shutil.rmtree(work)
    best = {key: max(r[key] for r in runs) for key in runs[0] if key.endswith("per_s")}
    best.update({key: min(r[key] for r in runs) for key in runs[0] if "per_s" not in key})
    if args.json:
        print(json.dumps({"files": args.files, **best}))
        return
    print(f"{args.files} files of 1 to 4096 B, loopback, best of {args.repeat}:")
    for what in ("share", "get", "export"):
        print(f"  {what:7} {best[f'{what}_files_per_s']:8.0f} files/s  ({best[f'{what}_s']:.2f} s)")
    print(f"  peak RSS of a ringdrop process: {best['peak_child_rss_mib']:.0f} MiB")


if __name__ == "__main__":
    main()
