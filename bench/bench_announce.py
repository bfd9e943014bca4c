"""A ring's news benchmark: from `ringdrop share FILE --ring R` on the owner's machine to the entry
in a serving member's inbox, with no ticket pasted.

    sudo python bench/bench_announce.py [--repeat 10] [--json]

Two network namespaces joined by a veth pair at MTU 1500 (tests/netlab.py): the owner in one,
the member in the other, each with the settings a user would give: a private discovery service
(`RINGDROP_DISCOVERY` and `RINGDROP_DISCOVERY_DNS`, as in the README's "Your own discovery
service"), relay and STUN `disabled` (the namespaces have no internet), and the addresses
tickets name left to the machine. The discovery service, a real iroh-dns-server
(tests/dns_server.py), runs on the member's side, so that the owner's lookup crosses the link.
The owner's and the member's `ringdrop serve` run as processes, the member publishing its
address (`serve --publish-addresses`) so that the owner finds it by key, and each share is a
`ringdrop share` process. Reported: the time from starting `ringdrop share` to the member's
`serve` printing the entry (the share command's start-up, hashing and commit; the owner's next
look at its database, every 0.25 s; the lookup of the member's key, the first round only,
later ones being cached; the QUIC connection, the announce request and the member's
transaction), and the share command's own wall time, which the announcement often beats (it
goes out as soon as the share is committed, while the command is still printing and exiting).
Median, best and worst of `--repeat` rounds.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from installed import namespace_bench_args, summary, user_env  # noqa: E402

from tests.cli_util import RINGDROP  # noqa: E402
from tests.dns_server import IrohDnsServer, require_dns_server  # noqa: E402
from tests.netlab import in_namespace, veth_pair  # noqa: E402

PATH = "namespaces, veth MTU 1500"


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
    with tempfile.TemporaryDirectory() as scratch, veth_pair(mtu=1500) as pair:
        tmp = Path(scratch)
        owner_ns, member_ns = pair.a, pair.b
        dns_server = IrohDnsServer(require_dns_server(), tmp / "dns", pair.b_ip, netns=member_ns)
        with dns_server as dns:
            env = user_env(RINGDROP_RELAY="disabled", RINGDROP_STUN="disabled", **dns.env())

            def ringdrop(data: str, *args: str) -> list[str]:
                return [*RINGDROP, "--data-dir", str(tmp / data), *args]

            def out(ns: str, data: str, *args: str) -> str:
                command = in_namespace(ns, ringdrop(data, *args))
                done = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
                return done.stdout.strip()

            owner_id = out(owner_ns, "owner", "id")
            member_id = out(member_ns, "member", "id")
            out(owner_ns, "owner", "ring", "new", "family")
            out(owner_ns, "owner", "ring", "add", "family", member_id)
            out(member_ns, "member", "peer", "add", owner_id, "mum")
            # Started through the lab, which kills them at teardown if they are still running.
            member = pair.popen(
                member_ns,
                ringdrop("member", "serve", "--publish-addresses"),
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            owner = pair.popen(
                owner_ns, ringdrop("owner", "serve"), env=env, stdout=subprocess.PIPE, text=True
            )
            try:
                assert member.stdout is not None
                assert owner.stdout is not None
                lines = _Lines(member.stdout)
                lines.wait_for("record published")
                # The first round is timed from a serving owner, not one still starting.
                _Lines(owner.stdout).wait_for("serving as ")
                commands, arrivals = [], []
                for n in range(repeat):
                    path = tmp / f"note-{n}.txt"
                    path.write_text(f"note {n}\n")
                    started = time.monotonic()
                    out(owner_ns, "owner", "share", str(path), "--ring", "family", "--json")
                    shared = time.monotonic()
                    arrived = lines.wait_for(f": note-{n}.txt (")
                    commands.append(shared - started)
                    arrivals.append(arrived - started)
            finally:
                for server in (member, owner):
                    server.terminate()
                    server.wait(timeout=30)
    return {
        "path": PATH,
        "rounds": repeat,
        "share started to the member's inbox": summary(arrivals),
        "share command alone": summary(commands),
        "first round (the member's key looked up)": round(arrivals[0], 3),
    }


def main() -> None:
    args = namespace_bench_args(__doc__.split("\n\n")[0], 10, ROOT)
    results = run(args.repeat)
    if args.json:
        print(json.dumps(results, indent=1))
        return
    for name, value in results.items():
        print(f"{name}: {value}")


if __name__ == "__main__":
    main()
