"""Serving under load: one node, many receivers at once, on loopback.

    python bench/bench_serve_load.py [--big-mib 256] [--big-receivers 32]
                                     [--small-shares 100] [--small-kib 64] [--processes 2]

A sharer node (the full `Node.serve` stack: gate, log writer, admission) in its own process
shares one big file and many small ones, all in the open ring. At the same moment, receivers
spread over `--processes` processes start: `--big-receivers` fetch the big share and one
receiver per small share fetches it. Each receiver is its own peer (a fresh key, a connection
of its own) and verifies everything against the root as it arrives (nothing is written to
disk, so the machine's disk is not what is measured). A receiver the server refuses (it caps
connections) tries again, as `ringdrop get` does.

Reports aggregate throughput (content bytes verified / wall time from start to the last
receiver done), the slowest receiver of each kind, connection attempts beyond the first, and
the sharer's peak RSS (VmHWM). Every receiver must end with its content intact, else it exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from ipaddress import ip_address
from pathlib import Path

import blake3
import nacl.signing

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ringdrop.bao import ChunkRanges, Decoder  # noqa: E402
from ringdrop.errors import TransferError  # noqa: E402
from ringdrop.identity import Identity, PeerId  # noqa: E402
from ringdrop.protocol import GetRequest  # noqa: E402
from ringdrop.ticket import Address  # noqa: E402
from ringdrop.transport import Limits, connect  # noqa: E402

MIB = 2**20
ATTEMPTS = 20


def make_file(path: Path, size: int, seed: int) -> None:
    xof = blake3.blake3(b"ringdrop serve load bench %d" % seed)
    with open(path, "wb") as f:
        for offset in range(0, size, 64 * MIB):
            f.write(xof.digest(length=min(64 * MIB, size - offset), seek=offset))


def peak_rss(pid: int | str = "self") -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


# -- the sharer -----------------------------------------------------------------------------------


async def run_sharer(data_dir: Path, receivers: int) -> None:
    from ringdrop.node import Node

    # Room for every receiver at once; the half-open and admission limits stay the defaults.
    limits = Limits(max_connections=receivers + 8, max_requests=receivers + 8)
    with Node(data_dir) as node:
        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        serving = asyncio.create_task(
            node.serve(host="127.0.0.1", ready=ready.set_result, limits=limits)
        )
        port = await ready
        print(json.dumps({"port": port, "peer_id": str(node.peer_id)}), flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        serving.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await serving
        print(json.dumps({"rss": peak_rss()}), flush=True)


# -- the receivers --------------------------------------------------------------------------------


async def receive_one(peer_id: PeerId, port: int, root: bytes, size: int) -> dict[str, object]:
    identity = Identity(nacl.signing.SigningKey.generate())
    address = Address(ip_address("127.0.0.1"), port)
    errors: list[str] = []
    for attempt in range(1, ATTEMPTS + 1):
        try:
            async with await connect(identity, peer_id, [address], timeout=30.0) as connection:
                header, body = await connection.request(GetRequest(root, ChunkRanges.all()))
                header.raise_for_status()
                decoder = Decoder(root, ChunkRanges.all())
                verified = 0
                async for piece in body:
                    verified += sum(len(leaf) for _, leaf in decoder.feed(piece))
                decoder.finish()
            break
        except TransferError as error:
            if attempt == ATTEMPTS:
                raise
            errors.append(str(error))
            await asyncio.sleep(min(2.0, 0.1 * 2**attempt))
    if verified != size:
        raise RuntimeError(f"verified {verified} bytes of {size}")
    return {"size": size, "done": time.time(), "attempts": attempt, "errors": errors}


async def run_receivers(jobs: list[list[object]], peer: str, port: int, start: float) -> None:
    peer_id = PeerId.parse(peer)
    await asyncio.sleep(max(0.0, start - time.time()))  # every process starts together
    results = await asyncio.gather(
        *(receive_one(peer_id, port, bytes.fromhex(str(r)), int(str(s))) for r, s, _ in jobs),
        return_exceptions=True,
    )
    out = []
    for (_, _, kind), result in zip(jobs, results, strict=True):
        if isinstance(result, BaseException):
            out.append({"kind": kind, "error": repr(result)})
        else:
            out.append({"kind": kind, **result})
    print(json.dumps({"results": out, "rss": peak_rss()}))


# -- the run --------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--big-mib", type=int, default=256)
    parser.add_argument("--big-receivers", type=int, default=32)
    parser.add_argument("--small-shares", type=int, default=100)
    parser.add_argument("--small-kib", type=int, default=64)
    parser.add_argument("--processes", type=int, default=2, help="receiver processes")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--role", choices=["sharer", "receivers"], help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "sharer":
        asyncio.run(run_sharer(Path(args.args[0]), int(args.args[1])))
        return
    if args.role == "receivers":
        jobs_file, peer, port, start = args.args
        jobs = json.loads(Path(jobs_file).read_text())
        asyncio.run(run_receivers(jobs, peer, int(port), float(start)))
        return
    report = run(args)
    if args.json:
        print(json.dumps(asdict(report)))
    else:
        print(
            f"{report.receivers} receivers ({args.big_receivers} x {args.big_mib} MiB, "
            f"{args.small_shares} x {args.small_kib} KiB) over loopback:\n"
            f"  {report.mb_per_s:.1f} MB/s aggregate, {report.bytes / MIB:.0f} MiB in "
            f"{report.seconds:.1f} s; slowest big {report.slowest_big_s:.1f} s, slowest "
            f"small {report.slowest_small_s:.1f} s; {report.extra_attempts} extra "
            f"connection attempts{''.join(f'{chr(10)}    {e}' for e in report.retry_reasons)}\n"
            f"  sharer peak RSS {report.sharer_rss / MIB:.1f} MiB; failures: "
            f"{report.failures or 'none'}"
        )
    if report.failures:
        sys.exit(1)


@dataclass(frozen=True)
class Report:
    receivers: int
    bytes: int
    seconds: float
    mb_per_s: float
    slowest_big_s: float
    slowest_small_s: float
    extra_attempts: int
    retry_reasons: list[str]
    sharer_rss: int
    receiver_rss: list[int]
    failures: list[str]


def run(args: argparse.Namespace) -> Report:
    from ringdrop.node import Node

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    script = str(Path(__file__).resolve())
    with tempfile.TemporaryDirectory(prefix="ringdrop-load-") as tmp:
        work = Path(tmp)
        jobs: list[list[object]] = []
        with Node(work / "sharer") as node:
            big = work / "big.bin"
            make_file(big, args.big_mib * MIB, 0)
            share = node.share(big, open=True)
            jobs += [[share.root.hex(), share.size, "big"]] * args.big_receivers
            for n in range(args.small_shares):
                small = work / f"small{n}.bin"
                make_file(small, args.small_kib * 1024 + n, n + 1)
                share = node.share(small, open=True)
                jobs.append([share.root.hex(), share.size, "small"])
        pipe = subprocess.PIPE
        command = [sys.executable, script, "--role", "sharer", str(work / "sharer"), str(len(jobs))]
        with subprocess.Popen(command, stdin=pipe, stdout=pipe, text=True, env=env) as sharer:
            assert sharer.stdin is not None
            assert sharer.stdout is not None
            hello = json.loads(sharer.stdout.readline())
            start = time.time() + 2.0  # time for the receiver processes to import
            receivers = []
            for index in range(args.processes):
                part = work / f"jobs{index}.json"
                part.write_text(json.dumps(jobs[index :: args.processes]))
                command = [
                    sys.executable,
                    script,
                    "--role",
                    "receivers",
                    str(part),
                    hello["peer_id"],
                    str(hello["port"]),
                    str(start),
                ]
                receivers.append(subprocess.Popen(command, stdout=pipe, text=True, env=env))
            outputs = [json.loads(r.communicate()[0]) for r in receivers]
            sharer.stdin.close()
            sharer_rss = json.loads(sharer.stdout.readline())["rss"]
    results = [result for output in outputs for result in output["results"]]
    failures = [r["error"] for r in results if "error" in r]
    done = [r for r in results if "error" not in r]
    end = max((float(r["done"]) for r in done), default=start)
    total = sum(int(r["size"]) for r in done)
    seconds = end - start

    def slowest(kind: str) -> float:
        return max((float(r["done"]) - start for r in done if r["kind"] == kind), default=0.0)

    return Report(
        receivers=len(results),
        bytes=total,
        seconds=seconds,
        mb_per_s=total / seconds / 1e6 if seconds > 0 else 0.0,
        slowest_big_s=slowest("big"),
        slowest_small_s=slowest("small"),
        extra_attempts=sum(int(r["attempts"]) - 1 for r in done),
        retry_reasons=sorted({str(e) for r in done for e in r["errors"]}),
        sharer_rss=sharer_rss,
        receiver_rss=[output["rss"] for output in outputs],
        failures=failures,
    )


if __name__ == "__main__":
    main()
