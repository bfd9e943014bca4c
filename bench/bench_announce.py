"""A ring's news benchmark: from `ringdrop share FILE --ring R` on the owner's machine to the entry
in a serving member's inbox, with no ticket pasted.

    python bench/bench_announce.py [--repeat 10] [--json]

On loopback: a real iroh-dns-server (tests/dns_server.py), the owner's and the member's
`ringdrop serve` as processes, the member publishing its address so that the owner finds it by
key (as on a LAN), and each share a `ringdrop share` process. Reported: the time from starting
`ringdrop share` to the member's `serve` printing the entry (the share command's start-up,
hashing and commit; the owner's next look at its database, every 0.25 s; the lookup of the
member's key, the first round only, later ones being cached; the QUIC connection, the announce
request and the member's transaction), and the share command's own wall time, which the
announcement often beats (it goes out as soon as the share is committed, while the command is
still printing and exiting). Median, best and worst of `--repeat` rounds.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cli_util import RINGDROP
from tests.dns_server import IrohDnsServer, require_dns_server


class _Lines:
    """A process's output lines with the time each arrived, read on a thread."""

    def __init__(self, stream: IO[str]) -> None:
        self.queue: queue.Queue[tuple[float, str]] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.queue.put((time.monotonic(), line))

    def wait_for(self, text: str, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while True:
            at, line = self.queue.get(timeout=max(0.01, deadline - time.monotonic()))
            if text in line:
                return at


def run(repeat: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        with IrohDnsServer(require_dns_server(), tmp / "dns") as dns:
            env = {k: v for k, v in os.environ.items() if not k.startswith("RINGDROP_")}
            env.update(
                RINGDROP_ADDRESSES="127.0.0.1",
                RINGDROP_RELAY="disabled",
                RINGDROP_STUN="disabled",
                PYTHONUNBUFFERED="1",
                **dns.env(),
            )
            owner = [*RINGDROP, "--data-dir", str(tmp / "owner")]
            member = [*RINGDROP, "--data-dir", str(tmp / "member")]
            owner_id = _out([*owner, "id"], env)
            member_id = _out([*member, "id"], env)
            _out([*owner, "ring", "new", "family"], env)
            _out([*owner, "ring", "add", "family", member_id], env)
            _out([*member, "peer", "add", owner_id, "mum"], env)
            servers = [
                subprocess.Popen(
                    [*member, "serve", "--publish-addresses"],
                    env=env,
                    stdout=subprocess.PIPE,
                    text=True,
                ),
                subprocess.Popen([*owner, "serve"], env=env, stdout=subprocess.PIPE, text=True),
            ]
            try:
                assert servers[0].stdout is not None
                lines = _Lines(servers[0].stdout)
                lines.wait_for("record published")
                commands, arrivals = [], []
                for n in range(repeat):
                    path = tmp / f"note-{n}.txt"
                    path.write_text(f"note {n}\n")
                    started = time.monotonic()
                    _out([*owner, "share", str(path), "--ring", "family", "--json"], env)
                    shared = time.monotonic()
                    arrived = lines.wait_for(f": note-{n}.txt (")
                    commands.append(shared - started)
                    arrivals.append(arrived - started)
            finally:
                for server in servers:
                    server.terminate()
                    server.wait(timeout=30)
    return {
        "rounds": repeat,
        "share started to the member's inbox": _summary(arrivals),
        "share command alone": _summary(commands),
        "first round (the member's key looked up)": round(arrivals[0], 3),
    }


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 3),
        "best": round(min(values), 3),
        "worst": round(max(values), 3),
    }


def _out(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args.repeat)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for name, value in results.items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
