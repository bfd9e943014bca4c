"""Discovery benchmark: time to the first content byte of `ringdrop get` with a ticket that names
only the sharer's key (found through its record) against one that names its address and relay,
and one that names its relay alone (the same path without the lookup).

    python bench/bench_discovery.py [--repeat 5] [--json]

On loopback: a real iroh-relay and a real iroh-dns-server (tests/relay_server.py,
tests/dns_server.py), `ringdrop share` + `ringdrop serve` as the sharer (publishing its record:
the relay only), and each `get` a fresh receiving data directory (so nothing is cached) run as a
process. Reported per ticket: the median and best of `get`'s own time to the first content byte
(its download clock: connecting, with the lookup, authenticating, the request's round trip) and
of the whole command's wall time, and the path that carried the bytes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cli_util import RINGDROP
from tests.dns_server import IrohDnsServer, require_dns_server
from tests.files import pseudo_random
from tests.relay_server import IrohRelay, require_iroh_relay


def run(repeat: int) -> dict[str, dict[str, object]]:
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch)
        data = tmp / "f.bin"
        data.write_bytes(pseudo_random(1024 * 1024, seed=1))
        with (
            IrohRelay(require_iroh_relay(), tmp / "relay") as relay,
            IrohDnsServer(require_dns_server(), tmp / "dns") as dns,
        ):
            env = {k: v for k, v in os.environ.items() if not k.startswith("RINGDROP_")}
            env.update(
                RINGDROP_ADDRESSES="127.0.0.1",
                RINGDROP_RELAY=relay.url,
                RINGDROP_STUN="disabled",
                PYTHONUNBUFFERED="1",
                **dns.env(),
            )
            sharer = [*RINGDROP, "--data-dir", str(tmp / "sharer")]
            tickets = {
                "address and relay": _ticket([*sharer, "share", str(data), "--open"], env),
                "relay only": _ticket(
                    [*sharer, "share", str(data), "--open", "--no-addresses"], env
                ),
                "key only (discovery)": _ticket(
                    [*sharer, "share", str(data), "--open", "--no-addresses", "--no-relay"], env
                ),
            }
            server = subprocess.Popen(
                [*sharer, "serve"], env=env, stdout=subprocess.PIPE, text=True
            )
            try:
                assert server.stdout is not None
                for line in server.stdout:
                    if line.startswith("record published"):
                        break
                for name, ticket in tickets.items():
                    results[name] = _gets(ticket, env, tmp, name, repeat)
            finally:
                server.terminate()
                server.wait(timeout=30)
    return results


def _ticket(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, check=True)
    ticket: str = json.loads(done.stdout)["ticket"]
    return ticket


def _gets(ticket: str, env: dict[str, str], tmp: Path, name: str, repeat: int) -> dict[str, object]:
    first_bytes, walls, paths = [], [], set()
    for i in range(repeat):
        where = tmp / f"{name.replace(' ', '-')}-{i}"
        start = time.perf_counter()
        done = subprocess.run(
            [*RINGDROP, "--data-dir", str(where), "get", ticket, "--dest", str(where / "out"),
             "--json"],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        walls.append(time.perf_counter() - start)
        shown = json.loads(done.stdout)
        first_bytes.append(float(shown["first_byte"]))
        paths.add(shown["path"])
    return {
        "first_byte_median": statistics.median(first_bytes),
        "first_byte_best": min(first_bytes),
        "wall_median": statistics.median(walls),
        "wall_best": min(walls),
        "paths": sorted(paths),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = run(args.repeat)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for name, r in results.items():
        paths = r["paths"]
        assert isinstance(paths, list)
        print(
            f"  {name}: first byte {r['first_byte_median']:.3f} s median "
            f"(best {r['first_byte_best']:.3f}), whole get {r['wall_median']:.2f} s median "
            f"(best {r['wall_best']:.2f}); path {', '.join(paths)}"
        )


if __name__ == "__main__":
    main()
