"""Discovery benchmark: time to the first content byte of `ringdrop get` with a ticket that names
only the sharer's key (found through its record) against one that names its address and relay,
and one that names its relay alone (the same path without the lookup).

    sudo python bench/bench_discovery.py [--repeat 5] [--json]

Two network namespaces joined by a veth pair at MTU 1500 (tests/netlab.py): the sharer in one,
the receiver in the other. A real iroh-relay and a real iroh-dns-server (tests/relay_server.py,
tests/dns_server.py) run on the sharer's side, so that the receiver's lookup and its relay
connection cross the link. Both nodes have the settings a user of their own services would
give (the README's "Your own discovery service" and "Your own relay"): `RINGDROP_RELAY`,
`RINGDROP_DISCOVERY` and `RINGDROP_DISCOVERY_DNS`, STUN `disabled` (the namespaces have no
internet), and the addresses tickets name left to the machine. `ringdrop share` + `ringdrop
serve` as the sharer (publishing its record: the relay only), and each `get` a fresh receiving
data directory (so nothing is cached) run as a process. Reported per ticket: the median, best
and worst of `get`'s own time to the first content byte (its download clock: connecting, with
the lookup, authenticating, the request's round trip) and of the whole command's wall time,
and the path that carried the bytes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from installed import namespace_bench_args, summary, user_env  # noqa: E402

from tests.cli_util import RINGDROP  # noqa: E402
from tests.dns_server import IrohDnsServer, require_dns_server  # noqa: E402
from tests.files import pseudo_random  # noqa: E402
from tests.netlab import in_namespace, veth_pair  # noqa: E402
from tests.relay_server import IrohRelay, require_iroh_relay  # noqa: E402

PATH = "namespaces, veth MTU 1500"
RELAY_PORT = 3340  # iroh-relay's own default in --dev mode


def run(repeat: int) -> dict[str, object]:
    results: dict[str, object] = {"path": PATH, "rounds": repeat}
    with tempfile.TemporaryDirectory() as scratch, veth_pair(mtu=1500) as pair:
        tmp = Path(scratch)
        sharer_ns, receiver_ns = pair.a, pair.b
        data = tmp / "f.bin"
        data.write_bytes(pseudo_random(1024 * 1024, seed=1))
        with (
            IrohRelay(
                require_iroh_relay(), tmp / "relay", pair.a_ip, RELAY_PORT, netns=sharer_ns
            ) as relay,
            IrohDnsServer(require_dns_server(), tmp / "dns", pair.a_ip, netns=sharer_ns) as dns,
        ):
            env = user_env(RINGDROP_RELAY=relay.url, RINGDROP_STUN="disabled", **dns.env())
            sharer = [*RINGDROP, "--data-dir", str(tmp / "sharer")]
            share = in_namespace(sharer_ns, [*sharer, "share", str(data), "--open"])
            tickets = {
                "address and relay": _ticket(share, env),
                "relay only": _ticket([*share, "--no-addresses"], env),
                "key only (discovery)": _ticket([*share, "--no-addresses", "--no-relay"], env),
            }
            # Started through the lab, which kills it at teardown if it is still running.
            server = pair.popen(
                sharer_ns, [*sharer, "serve"], env=env, stdout=subprocess.PIPE, text=True
            )
            try:
                assert server.stdout is not None
                for line in server.stdout:
                    if line.startswith("record published"):
                        break
                else:
                    raise SystemExit("the sharer's serve ended before publishing its record")
                for name, ticket in tickets.items():
                    results[name] = _gets(ticket, env, tmp, receiver_ns, name, repeat)
            finally:
                server.terminate()
                server.wait(timeout=30)
    return results


def _ticket(command: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([*command, "--json"], env=env, capture_output=True, text=True, check=True)
    ticket: str = json.loads(done.stdout)["ticket"]
    return ticket


def _gets(
    ticket: str, env: dict[str, str], tmp: Path, ns: str, name: str, repeat: int
) -> dict[str, object]:
    first_bytes, walls, paths = [], [], set()
    for i in range(repeat):
        where = tmp / f"{name.replace(' ', '-')}-{i}"
        get = [*RINGDROP, "--data-dir", str(where), "get", ticket, "--dest", str(where / "out"),
               "--json"]  # fmt: skip
        start = time.perf_counter()
        done = subprocess.run(
            in_namespace(ns, get), env=env, capture_output=True, text=True, check=True
        )
        walls.append(time.perf_counter() - start)
        shown = json.loads(done.stdout)
        first_bytes.append(float(shown["first_byte"]))
        paths.add(shown["path"])
    return {
        "first_byte": summary(first_bytes),
        "wall": summary(walls),
        "paths": sorted(paths),
    }


def main() -> None:
    args = namespace_bench_args(__doc__.split("\n")[0], 5, ROOT)
    results = run(args.repeat)
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"{results['path']}, {results['rounds']} rounds; median (best-worst)")
    for name, r in results.items():
        if not isinstance(r, dict):
            continue
        first, wall = r["first_byte"], r["wall"]
        print(
            f"  {name}: first byte {first['median']:.3f} s ({first['best']:.3f}-"
            f"{first['worst']:.3f}), whole get {wall['median']:.2f} s ({wall['best']:.2f}-"
            f"{wall['worst']:.2f}); path {', '.join(r['paths'])}"
        )


if __name__ == "__main__":
    main()
