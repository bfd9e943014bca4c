"""Transfer benchmark: a sharer and a receiver as two processes on loopback, one file.

    python bench/bench_transfer.py [--size-mib 1024] [--repeat 1] [--only NAME] [--json]

The sharer streams the file with the native Encoder; the receiver verifies it with Decoder.write
into a file and checks the result. Reports MB/s (from the receiver's connect to its last verified
byte) and each process's peak RSS (goal < 100 MiB), for every contender available here: ringdrop
on each installed QUIC library. A contender is a `Contender` (a name and a `run` that moves the
file once and returns a `Result`): add more to `contenders()`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterator
from dataclasses import asdict, dataclass
from ipaddress import ip_address
from pathlib import Path

import blake3
import nacl.signing

from ringdrop.bao import ChunkRanges, Decoder, Encoder, create_outboard
from ringdrop.identity import Identity, PeerId
from ringdrop.protocol import GetRequest, Request, ResponseHeader
from ringdrop.ticket import Address
from ringdrop.transport import BackendName, Reply, available_backends, connect, serve

MIB = 2**20
ROOT = Path(__file__).resolve().parent.parent
PIECE = 256 * 1024


@dataclass(frozen=True)
class Result:
    contender: str
    size: int
    seconds: float
    sender_rss: int
    receiver_rss: int

    @property
    def rate(self) -> float:
        return self.size / self.seconds / 1e6


class Contender(ABC):
    """One way of moving a file from one process to another on this machine."""

    name: str

    @abstractmethod
    def run(self, path: Path, size: int, workdir: Path) -> Result:
        """Transfer the file at `path` once; the received copy must be checked."""


class Ringdrop(Contender):
    def __init__(self, backend: BackendName, loss: float | None = None) -> None:
        self.backend = backend
        self.loss = loss
        relayed = "" if loss is None else f", relay {loss:.0%} loss"
        self.name = f"ringdrop ({backend}{relayed})"

    def run(self, path: Path, size: int, workdir: Path) -> Result:
        outboard = workdir / "outboard"
        root, _ = create_outboard(path, outboard)
        received = workdir / "received"
        received.unlink(missing_ok=True)
        role = [sys.executable, __file__, "--backend", self.backend, "--role"]
        sharer_command = [*role, "sharer", str(path), str(outboard), root.hex()]
        pipe = subprocess.PIPE
        with subprocess.Popen(sharer_command, stdin=pipe, stdout=pipe, text=True) as sharer:
            assert sharer.stdin is not None
            assert sharer.stdout is not None
            ready = json.loads(sharer.stdout.readline())
            with self._path(ready["port"]) as port:
                receiver_args = [str(received), root.hex(), str(port), ready["peer_id"]]
                receiver = subprocess.run(
                    [*role, "receiver", *receiver_args], capture_output=True, text=True, check=True
                )
            sharer.stdin.close()
            sender_rss = json.loads(sharer.stdout.readline())["rss"]
        got = json.loads(receiver.stdout)
        if blake3.blake3().update_mmap(received).digest() != root:
            raise SystemExit(f"{self.name}: the received file differs")
        return Result(self.name, size, got["seconds"], sender_rss, got["rss"])

    @contextlib.contextmanager
    def _path(self, port: int) -> Iterator[int]:
        """The port the receiver dials: the sharer's, or that of a relay in front of it that
        loses a share of the datagrams (a process of its own, from the tests, since this kernel
        has no netem; the same relay at 0 % loss measures what the relay itself costs)."""
        if self.loss is None:
            yield port
            return
        command = [sys.executable, "-m", "tests.node.relay", str(port), "--loss", str(self.loss)]
        pipe = subprocess.PIPE
        with subprocess.Popen(command, stdin=pipe, stdout=pipe, text=True, cwd=ROOT) as relay:
            assert relay.stdin is not None
            assert relay.stdout is not None
            yield int(json.loads(relay.stdout.readline())["port"])
            relay.stdin.close()


class Wormhole(Contender):
    """magic-wormhole with its own mailbox server and transit relay on 127.0.0.1; it picks a
    direct TCP path between the two processes. Install it apart (it is not a dependency):
    `python3 -m venv /tmp/wh-venv && /tmp/wh-venv/bin/pip install magic-wormhole
    magic-wormhole-mailbox-server magic-wormhole-transit-relay`, then point WORMHOLE_BIN at
    /tmp/wh-venv/bin (or put `wormhole` and `twist` on PATH)."""

    name = "magic-wormhole"

    def __init__(self, bin_dir: Path) -> None:
        self.bin = bin_dir

    @staticmethod
    def find() -> Wormhole | None:
        where = os.environ.get("WORMHOLE_BIN")
        wormhole = Path(where) / "wormhole" if where else shutil.which("wormhole")
        if wormhole is None or not Path(wormhole).exists():
            return None
        return Wormhole(Path(wormhole).parent)

    def run(self, path: Path, size: int, workdir: Path) -> Result:
        mailbox, relay = free_tcp_port(), free_tcp_port()
        servers = [
            subprocess.Popen(
                [str(self.bin / "twist"), *service, f"--port=tcp:{port}:interface=127.0.0.1"],
                cwd=workdir,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for service, port in ((["wormhole-mailbox"], mailbox), (["transitrelay"], relay))
        ]
        try:
            for port in (mailbox, relay):
                wait_for_tcp(port)
            common = [
                str(self.bin / "wormhole"),
                "--relay-url", f"ws://127.0.0.1:{mailbox}/v1",
                "--transit-helper", f"tcp:127.0.0.1:{relay}",
            ]  # fmt: skip
            code = "7-ringdrop-bench"
            received = workdir / "wormhole-received"
            received.unlink(missing_ok=True)
            sender = subprocess.Popen(
                [*common, "send", "--hide-progress", "--code", code, str(path)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            start = time.perf_counter()
            receiver = subprocess.Popen(
                [*common, "receive", "--hide-progress", "--accept-file", "-o", str(received), code],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            _, status, usage = os.wait4(receiver.pid, 0)
            seconds = time.perf_counter() - start
            receiver.returncode = os.waitstatus_to_exitcode(status)
            _, _, sender_usage = os.wait4(sender.pid, 0)
            sender.returncode = 0
        finally:
            for server in servers:
                server.terminate()
                server.wait()
        if (
            blake3.blake3(received.read_bytes()).digest()
            != blake3.blake3(path.read_bytes()).digest()
        ):
            raise SystemExit(f"{self.name}: the received file differs")
        return Result(
            self.name, size, seconds, sender_usage.ru_maxrss * 1024, usage.ru_maxrss * 1024
        )


def free_tcp_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_tcp(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout:g} s")


def contenders() -> list[Contender]:
    found: list[Contender] = [Ringdrop(backend) for backend in available_backends()]
    found += [Ringdrop(b, loss) for loss in (0.0, 0.01) for b in available_backends()]
    wormhole = Wormhole.find()
    if wormhole is not None:
        found.append(wormhole)
    return found


def peak_rss() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


async def run_sharer(backend: BackendName, data: str, outboard: str, root: bytes) -> None:
    identity = Identity(nacl.signing.SigningKey.generate())

    async def handler(peer: PeerId, request: Request) -> Reply:
        assert isinstance(request, GetRequest)
        encoder = Encoder(data, outboard, root, os.path.getsize(data), request.ranges)

        async def pieces() -> AsyncIterator[bytes]:
            while piece := encoder.read(PIECE):
                yield piece

        return Reply(ResponseHeader("allowed"), pieces())

    server = await serve(identity, 0, handler, host="127.0.0.1", backend=backend)
    print(json.dumps({"port": server.port, "peer_id": str(identity.peer_id)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.close()
    print(json.dumps({"rss": peak_rss()}), flush=True)


async def run_receiver(
    backend: BackendName, target: str, root: bytes, port: int, peer_id: PeerId
) -> None:
    identity = Identity(nacl.signing.SigningKey.generate())
    start = time.perf_counter()
    address = Address(ip_address("127.0.0.1"), port)
    async with await connect(identity, peer_id, [address], backend=backend) as connection:
        header, body = await connection.request(GetRequest(root, ChunkRanges.all()))
        header.raise_for_status()
        decoder = Decoder(root, ChunkRanges.all(), data=target)
        async for piece in body:
            decoder.write(piece)
        decoder.finish()
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "rss": peak_rss()}))


def make_file(path: Path, size: int) -> None:
    xof = blake3.blake3(b"ringdrop transfer bench")
    with open(path, "wb") as f:
        for offset in range(0, size, 64 * MIB):
            f.write(xof.digest(length=min(64 * MIB, size - offset), seek=offset))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender; best counts")
    parser.add_argument("--only", action="append", help="run only contenders with this name")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--role", choices=["sharer", "receiver"], help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="aioquic", help=argparse.SUPPRESS)
    parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "sharer":
        data, outboard, root = args.args
        asyncio.run(run_sharer(args.backend, data, outboard, bytes.fromhex(root)))
        return
    if args.role == "receiver":
        target, root, port, peer_id = args.args
        peer = PeerId.parse(peer_id)
        asyncio.run(run_receiver(args.backend, target, bytes.fromhex(root), int(port), peer))
        return
    size = args.size_mib * MIB
    results = []
    with tempfile.TemporaryDirectory(prefix="ringdrop-bench-") as tmp:
        path = Path(tmp) / "file"
        make_file(path, size)
        for contender in contenders():
            if args.only and contender.name not in args.only:
                continue
            runs = [contender.run(path, size, Path(tmp)) for _ in range(args.repeat)]
            results.append(min(runs, key=lambda result: result.seconds))
    if args.json:
        print(json.dumps([asdict(result) | {"mb_per_s": result.rate} for result in results]))
        return
    print(f"{args.size_mib} MiB over loopback, best of {args.repeat}:")
    for r in results:
        print(
            f"  {r.contender:<20} {r.rate:7.1f} MB/s  {r.seconds:6.2f} s  "
            f"RSS sender {r.sender_rss / MIB:5.1f} MiB, receiver {r.receiver_rss / MIB:5.1f} MiB"
        )


if __name__ == "__main__":
    main()
