"""NAT-lab benchmark: time to first byte and throughput through the relay, over a punched direct
path, and with no NAT at all, for the same file, in one run.

    sudo python bench/bench_nat.py [--size-mib 256] [--repeat 1] [--json]

Builds tests/netlab.py's NAT lab three times: both hosts on the "internet" bridge (no NAT: the
plain LAN path), both behind port-preserving NATs (the transfer starts on the relay, the path
layer punches a hole and moves), and one side behind a symmetric NAT (the relay carries it all).
A real iroh-relay and a real STUN server (coturn) run in the lab's internet namespace. The sharer
is `ringdrop share` + `serve` in the left host, the receiver `ringdrop get --json` in the right
one; each copy is compared with the original. Reported per case: `get`'s own time, its time to
the first content byte, MB/s, the path that carried most bytes and the bytes per kind of path.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.cli_util import RINGDROP
from tests.files import pseudo_random
from tests.netlab import NatKind, NatLab, in_namespace, nat_lab
from tests.relay_server import IrohRelay, require_iroh_relay

CASES: dict[str, tuple[NatKind, NatKind]] = {
    "no NAT (LAN path)": ("none", "none"),
    "punched (2 port-preserving NATs)": ("port-preserving", "port-preserving"),
    "relay (one symmetric NAT)": ("port-preserving", "symmetric"),
}


def env(lab: NatLab, relay: IrohRelay, host_ip: str, stun: tuple[str, int]) -> dict[str, str]:
    out = {k: v for k, v in os.environ.items() if not k.startswith("RINGDROP_")}
    out.update(
        RINGDROP_ADDRESSES=host_ip,
        RINGDROP_RELAY=relay.url,
        RINGDROP_STUN=f"{stun[0]}:{stun[1]}",
        RINGDROP_DISCOVERY="disabled",
    )
    return out


def run_case(left: NatKind, right: NatKind, data: Path, repeat: int) -> dict[str, object]:
    best: dict[str, object] | None = None
    with tempfile.TemporaryDirectory() as scratch, nat_lab(left, right) as lab:
        tmp = Path(scratch)
        stun = lab.start_stun()
        with IrohRelay(
            require_iroh_relay(), tmp / "relay", host=lab.service_ip, port=3340, netns=lab.internet
        ) as relay:
            sharer_env = env(lab, relay, lab.left.host_ip, stun)
            shared = subprocess.run(
                [*RINGDROP, "--data-dir", str(tmp / "l"), "share", str(data), "--open", "--json"],
                env=sharer_env, capture_output=True, text=True, check=True,
            )  # fmt: skip
            ticket = json.loads(shared.stdout)["ticket"]
            server = lab.popen(
                lab.left.host,
                [*RINGDROP, "--data-dir", str(tmp / "l"), "serve"],
                env=sharer_env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            assert server.stdout is not None
            for line in server.stdout:  # until its home relay is connected
                if line.startswith("relay "):
                    break
            for attempt in range(repeat):
                out = tmp / f"out{attempt}"
                done = subprocess.run(
                    in_namespace(
                        lab.right.host,
                        [
                            *RINGDROP,
                            "--data-dir",
                            str(tmp / f"r{attempt}"),
                            "get",
                            ticket,
                            "--dest",
                            str(out) + "/",
                            "--json",
                        ],
                    ),
                    env=env(lab, relay, lab.right.host_ip, stun),
                    capture_output=True,
                    text=True,
                    timeout=900,
                )
                if done.returncode != 0:
                    return {"status": f"failed: {done.stderr.strip()[-300:]}"}
                if (out / data.name).read_bytes() != data.read_bytes():
                    return {"status": "failed: the copy differs"}
                shown = json.loads(done.stdout)
                result = {
                    "status": "ok",
                    "seconds": shown["seconds"],
                    "first_byte": shown["first_byte"],
                    "mb_per_s": data.stat().st_size / shown["seconds"] / 1e6,
                    "path": shown["path"],
                    "via": shown["via"],
                    "traffic": shown["traffic"],
                }
                if best is None or float(result["seconds"]) < float(best["seconds"]):  # type: ignore[arg-type]
                    best = result
            server.terminate()
            server.wait(timeout=30)
    assert best is not None
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = Path(scratch) / "file.bin"
        data.write_bytes(pseudo_random(args.size_mib * 1024 * 1024, seed=args.size_mib))
        results = {}
        for name, (left, right) in CASES.items():
            started = time.monotonic()
            results[name] = run_case(left, right, data, args.repeat)
            results[name]["wall"] = round(time.monotonic() - started, 1)
    if args.json:
        print(json.dumps({"size_mib": args.size_mib, "results": results}, indent=2))
        return
    print(f"{args.size_mib} MiB, best of {args.repeat}")
    for name, r in results.items():
        if r["status"] != "ok":
            print(f"  {name}: {r['status']}")
            continue
        traffic = ", ".join(f"{k} {v / 1e6:.0f} MB" for k, v in r["traffic"].items())  # type: ignore[attr-defined]
        print(
            f"  {name}: {r['mb_per_s']:.1f} MB/s, {r['seconds']:.2f} s, first byte after "
            f"{r['first_byte']:.3f} s; mostly {r['path']} ({traffic})"
        )


if __name__ == "__main__":
    main()
