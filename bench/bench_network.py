"""Network benchmark: ringdrop against magic-wormhole and sendme on a realistic path, in one run.

    sudo python bench/bench_network.py [--size-mib 256] [--files 10000] [--repeat 1]
                                       [--only ringdrop,wormhole,sendme] [--json] [--one-machine]
                                       [--baseline CHECKOUT] [--addresses]

Builds two network namespaces joined by a veth pair at MTU 1500 (tests/netlab.py; root needed),
runs each contender's sender in namespace a and its receiver in namespace b, and times the
receive (from starting the receiving command to its exit, the sender already waiting) for two
workloads: one file of --size-mib MiB, and a folder of --files files of 1 to 4096 bytes in 10
subfolders (--size-mib 0 or --files 0 skips one). Every received copy is compared byte for byte
with the original; a run that does not match is reported as failed, not timed.

Contenders (a missing one is reported as "not installed"):
- ringdrop: the CLI of this checkout: `share --open` then `serve` in a, `get` in b, with the
  ticket `share` prints by default, as a user would (relay and STUN disabled); --addresses makes
  it name only a's veth address (RINGDROP_ADDRESSES). It uses qh3 off loopback (a default
  dependency); "ringdrop-aioquic" is the same with qh3 hidden from the process.
  "ringdrop-baseline" is the CLI of another checkout (--baseline, e.g. main's), for before and
  after in the same rounds.
- wormhole: magic-wormhole with its own mailbox server and transit relay, both in namespace a,
  from the venv at $WORMHOLE_VENV (default /tmp/wh-venv: `python3 -m venv /tmp/wh-venv &&
  /tmp/wh-venv/bin/pip install magic-wormhole magic-wormhole-mailbox-server
  magic-wormhole-transit-relay`). It finds the direct TCP path. A folder travels as a zip.
- sendme: $SENDME_BIN (default ~/.cache/ringdrop-ci/sendme/bin/sendme, from `cargo install
  sendme --locked --root ~/.cache/ringdrop-ci/sendme`), relay disabled, address tickets.

--repeat N runs N rounds, each of every contender once, in an order rotated from round to round
(the machine is shared: interleaving spreads its noise over all). Reported per contender and
workload: the median seconds, MB/s and files/s over the rounds, with their spread (lowest and
highest); the CPU seconds (user + system) of the sending and of the receiving program, per GiB
moved; their peak RSS (each program runs as the child of a small go-between that reports its
rusage from wait4: see _MEASURE for why not straight from here); and the rate as a multiple of
wormhole's and sendme's in the same round (median over the rounds).
For ringdrop the sender is `serve` (started for each round, so its CPU is that one transfer's
and its start-up's); the time `share` took is reported apart (as "prepare", like the time the
others take to print their code or ticket), and so is the transfer's own clock: the time `get`
reports itself less its wait for the first byte (connecting, and with the default ticket today
a 2 s wait for loopback first), without interpreter start-up either.

--one-machine runs the same without namespaces (for the "both on one machine" case): ringdrop
with its default ticket (every interface address), wormhole's servers on 127.0.0.1.

The machine this runs on is shared and noisy: use --repeat 3 or more for figures.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import random
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import blake3

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from installed import compile_bytecode, user_env  # noqa: E402

from tests.netlab import in_namespace, is_root, veth_pair  # noqa: E402

MIB = 2**20
GIB = 2**30
TIMEOUT = 900.0  # the slowest receive we wait for, in seconds
SUBFOLDERS = 10
NAMES = ("ringdrop", "ringdrop-baseline", "ringdrop-aioquic", "wormhole", "sendme")


# -- workloads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Workload:
    kind: str  # "file" or "folder"
    path: Path
    size: int
    files: int

    @property
    def label(self) -> str:
        if self.kind == "file":
            return f"{self.size / MIB:g} MiB file"
        return f"{self.files} files, {self.size / MIB:.1f} MiB"


def make_file(path: Path, size: int) -> Workload:
    """Incompressible bytes (BLAKE3 in extendable-output mode), so no contender gains by
    compressing or deduplicating."""
    xof = blake3.blake3(b"ringdrop network bench")
    with open(path, "wb") as f:
        for offset in range(0, size, 8 * MIB):
            f.write(xof.digest(length=min(8 * MIB, size - offset), seek=offset))
    return Workload("file", path, size, 1)


def make_folder(path: Path, count: int) -> Workload:
    rng = random.Random(2)
    total = 0
    for index in range(count):
        folder = path / f"d{index % SUBFOLDERS}"
        folder.mkdir(parents=True, exist_ok=True)
        size = rng.randint(1, 4096)
        (folder / f"f{index:06d}.bin").write_bytes(rng.randbytes(size))
        total += size
    return Workload("folder", path, total, count)


def identical(original: Path, copy: Path) -> bool:
    """Whether `copy` has exactly the files of `original`, byte for byte."""
    if original.is_file():
        return copy.is_file() and _same_bytes(original, copy)
    if not copy.is_dir():
        return False
    mine = sorted(p.relative_to(original) for p in original.rglob("*") if p.is_file())
    theirs = sorted(p.relative_to(copy) for p in copy.rglob("*") if p.is_file())
    return mine == theirs and all(_same_bytes(original / p, copy / p) for p in mine)


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while block := fa.read(4 * MIB):
            if block != fb.read(len(block)):
                return False
    return True


# -- processes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Place:
    """Where a process runs: a network namespace, or this one (None)."""

    namespace: str | None
    ip: str

    def command(self, command: Sequence[str]) -> list[str]:
        return in_namespace(self.namespace, command) if self.namespace else list(command)


# Runs a program as its child and writes the child's peak RSS, wall time and CPU time (user and
# system, its own children included) to a file. Why a
# go-between: Linux starts a new process's peak RSS at what its parent's memory held when it
# forked (with vfork, as subprocess uses, at the parent's own peak), and exec keeps it, so a
# program spawned straight from this benchmark, which has held a large file's blocks, would
# report at least the benchmark's peak. This script forks (not vforks) the program from a bare
# interpreter of a few MiB, forwards SIGINT and SIGTERM to it, and reports its rusage.
_MEASURE = """
import os, signal, sys, time
out, argv = sys.argv[1], sys.argv[2:]
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
for sig in (signal.SIGINT, signal.SIGTERM):
    signal.signal(sig, lambda number, frame: os.kill(pid, number))
_, status, usage = os.wait4(pid, 0)
seconds = time.perf_counter() - start
cpu = usage.ru_utime + usage.ru_stime
with open(out, "w") as f:
    f.write(f"{usage.ru_maxrss * 1024} {seconds} {cpu}")
code = os.waitstatus_to_exitcode(status)
sys.exit(code if code >= 0 else 128 - code)
"""


class Process:
    """A started program whose output (stdout and stderr merged) is collected line by line,
    with its own peak RSS, wall time and CPU time measured on exit (see _MEASURE)."""

    def __init__(
        self, place: Place, command: Sequence[str], *, env: dict[str, str], cwd: Path
    ) -> None:
        handle, report = tempfile.mkstemp(prefix="ringdrop-netbench-rss-")
        os.close(handle)
        self._report = Path(report)
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(
            place.command([sys.executable, "-S", "-c", _MEASURE, report, *command]),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            text=True,
            errors="replace",
            start_new_session=True,  # one process group to kill, whatever it started
        )
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._pump_thread = threading.Thread(target=self._pump, daemon=True)
        self._pump_thread.start()
        self.returncode: int | None = None
        self.rss = 0
        self.seconds = 0.0
        self.cpu = 0.0

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, pattern: str, timeout: float = 120) -> re.Match[str]:
        """The first output line matching `pattern`."""
        for line in self.lines:
            if found := re.search(pattern, line):
                return found
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                got = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if got is None:
                raise BenchError(f"exited before printing {pattern!r}", self.output())
            self.lines.append(got)
            if found := re.search(pattern, got):
                return found
        raise BenchError(f"printed no {pattern!r} in {timeout:g} s", self.output())

    def wait(self, timeout: float = TIMEOUT) -> int:
        """Waits for the exit (killing the program after `timeout`); records the program's
        wall time and peak RSS."""
        killer = threading.Timer(timeout, self._kill_group)
        killer.start()
        try:
            self.returncode = self.popen.wait()
        finally:
            killer.cancel()
        self._kill_group()  # anything it left behind
        self._pump_thread.join(5)  # the rest of its output
        with contextlib.suppress(OSError, ValueError):
            rss, seconds, cpu = self._report.read_text().split()
            self.rss, self.seconds, self.cpu = int(rss), float(seconds), float(cpu)
        self._report.unlink(missing_ok=True)
        return self.returncode

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20) -> int:
        """Sends `sig` (SIGINT and SIGTERM reach the program through the go-between, SIGKILL
        the whole group) and waits for the exit."""
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                if sig == signal.SIGKILL:
                    self._kill_group()
                else:
                    self.popen.send_signal(sig)
            self.wait(timeout)
        assert self.returncode is not None
        return self.returncode

    def _kill_group(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGKILL)

    def output(self, last: int = 20) -> str:
        """Its last `last` lines of output so far."""
        while True:
            try:
                line = self._queue.get_nowait()
            except queue.Empty:
                break
            if line is not None:
                self.lines.append(line)
        return "".join(self.lines[-last:])


class BenchError(Exception):
    def __init__(self, what: str, output: str = "") -> None:
        super().__init__(what)
        self.output = output


# -- contenders -----------------------------------------------------------------------------------


@dataclass
class Run:
    seconds: float
    sender_rss: int
    receiver_rss: int
    prepare_seconds: float = 0.0
    via: str = ""  # the path, where the receiver says which it took
    own_seconds: float | None = None  # the transfer time the receiver itself reports
    sender_cpu: float = 0.0
    receiver_cpu: float = 0.0


@dataclass
class Result:
    contender: str
    workload: str
    status: str  # "ok", "not installed: …", "failed: …"
    size: int = 0
    files: int = 0
    seconds: float = 0.0  # the median over the rounds
    prepare_seconds: float = 0.0
    sender_rss: int = 0
    receiver_rss: int = 0
    via: str = ""
    own_seconds: float | None = None
    sender_cpu: float = 0.0  # CPU seconds, medians
    receiver_cpu: float = 0.0
    runs: list[float] = field(default_factory=list)  # seconds, one per round, in round order

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def mb_per_s(self) -> float:
        return self.size / self.seconds / 1e6 if self.ok else 0.0

    @property
    def files_per_s(self) -> float:
        return self.files / self.seconds if self.ok else 0.0

    @property
    def spread(self) -> tuple[float, float]:
        """The lowest and highest MB/s (files/s for a folder) of the rounds."""
        amount = self.size / 1e6 if self.workload == "file" else self.files
        rates = [amount / seconds for seconds in self.runs] or [0.0]
        return min(rates), max(rates)

    def cpu_per_gib(self, cpu: float) -> float:
        return cpu / (self.size / GIB) if self.size else 0.0


@dataclass(frozen=True)
class Setting:
    """The two places and what a contender needs to know about the run."""

    sender: Place
    receiver: Place
    one_machine: bool
    workdir: Path
    addresses: bool = False  # ringdrop's ticket names only the sender's address


class Contender(ABC):
    name: str

    @abstractmethod
    def missing(self) -> str | None:
        """Why this contender cannot run here, or None."""

    @abstractmethod
    def run(self, workload: Workload, setting: Setting, repeat: int) -> list[Run]:
        """Moves the workload `repeat` times from sender to receiver, each copy verified."""


def base_env(**extra: str) -> dict[str, str]:
    return user_env(RINGDROP_DISCOVERY="disabled", **extra)


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def check_exit(process: Process, what: str) -> None:
    if process.returncode != 0:
        raise BenchError(f"{what} exited {process.returncode}", process.output())


class Ringdrop(Contender):
    """`share --open` + `serve` on the sender, `get` on the receiver, from `checkout`."""

    def __init__(self, hide_qh3: bool, checkout: Path = ROOT, name: str = "ringdrop") -> None:
        self.hide_qh3 = hide_qh3
        self.checkout = checkout
        self.name = name

    def missing(self) -> str | None:
        found = (self.checkout / "ringdrop" / "__init__.py").exists()
        if found:
            compile_bytecode(self.checkout)
        return None if found else f"not installed: no ringdrop in {self.checkout}"

    def command(self, *args: str | Path) -> list[str]:
        if not self.hide_qh3:
            return [sys.executable, "-m", "ringdrop.cli", *map(str, args)]
        # qh3 made invisible to the backend choice (importlib.util.find_spec) inside the one
        # ringdrop process, as in an install without qh3.
        prelude = (
            "import importlib.util as u, sys; real = u.find_spec; "
            "u.find_spec = lambda n, *a: None if n == 'qh3' else real(n, *a); "
            "sys.argv[0] = 'ringdrop'; from ringdrop.cli import main; sys.exit(main())"
        )
        return [sys.executable, "-c", prelude, *map(str, args)]

    def run(self, workload: Workload, setting: Setting, repeat: int) -> list[Run]:
        work = fresh(setting.workdir / self.name)
        env = base_env(
            PYTHONPATH=str(self.checkout), RINGDROP_RELAY="disabled", RINGDROP_STUN="disabled"
        )
        if setting.addresses and not setting.one_machine:
            env["RINGDROP_ADDRESSES"] = setting.sender.ip
        sharer = ["--data-dir", str(work / "sharer")]
        share = Process(
            setting.sender,
            self.command(*sharer, "share", workload.path, "--open", "--json"),
            env=env,
            cwd=work,
        )
        share.wait()
        check_exit(share, "share")
        found = re.search(r"rdrop:[a-z2-7]+", share.output(last=1000))
        if found is None:
            raise BenchError("share printed no ticket", share.output())
        ticket = found.group()
        serve = Process(setting.sender, self.command(*sharer, "serve"), env=env, cwd=work)
        runs = []
        try:
            serve.wait_for(r"serving as", timeout=60)
            for attempt in range(repeat):
                receiver_dir = work / f"receiver-{attempt}"
                dest = fresh(work / f"dest-{attempt}")
                get = Process(
                    setting.receiver,
                    self.command(
                        "--data-dir", receiver_dir, "get", ticket, "--dest", dest, "--json"
                    ),
                    env=env,
                    cwd=work,
                )
                get.wait()
                check_exit(get, "get")
                if not identical(workload.path, dest / workload.path.name):
                    raise BenchError("the received copy differs from the original")
                lines = get.output(last=1000).splitlines(keepends=True)
                start = next(i for i, line in enumerate(lines) if line.startswith("{"))
                got = json.loads("".join(lines[start:]))
                # `path`: "direct" or "relay", the route most bytes took; `via`: where.
                route = got.get("path") if got.get("path") in ("direct", "relay") else None
                via = f"{route} {got.get('via') or ''}".strip() if route else ""
                own = got["seconds"] - (got.get("first_byte") or 0.0)
                runs.append(Run(get.seconds, 0, get.rss, share.seconds, via, own, 0.0, get.cpu))
                shutil.rmtree(receiver_dir)
                shutil.rmtree(dest)
        finally:
            serve.stop(signal.SIGTERM)
            shutil.rmtree(work, ignore_errors=True)
        # One serve for all `repeat` transfers: its CPU is shared out evenly.
        return [
            Run(
                r.seconds,
                serve.rss,
                r.receiver_rss,
                r.prepare_seconds,
                r.via,
                r.own_seconds,
                serve.cpu / len(runs),
                r.receiver_cpu,
            )
            for r in runs
        ]


class Wormhole(Contender):
    """magic-wormhole 0.24 with its own mailbox server and transit relay on the sender side."""

    name = "wormhole"

    def __init__(self) -> None:
        self.bin = Path(os.environ.get("WORMHOLE_VENV", "/tmp/wh-venv")) / "bin"

    def missing(self) -> str | None:
        needed = [self.bin / "wormhole", self.bin / "twist"]
        absent = [str(path) for path in needed if not path.exists()]
        return f"not installed: {', '.join(absent)}" if absent else None

    def run(self, workload: Workload, setting: Setting, repeat: int) -> list[Run]:
        work = fresh(setting.workdir / self.name)
        host = setting.sender.ip
        mailbox, relay = free_port(), free_port()
        env = base_env()
        servers = [
            Process(
                setting.sender,
                [str(self.bin / "twist"), service, f"--port=tcp:{port}:interface={host}"],
                env=env,
                cwd=work,
            )
            for service, port in (("wormhole-mailbox", mailbox), ("transitrelay", relay))
        ]
        runs = []
        try:
            wait_for_tcp(setting.receiver, host, [mailbox, relay])
            common = [
                str(self.bin / "wormhole"),
                "--relay-url", f"ws://{host}:{mailbox}/v1",
                "--transit-helper", f"tcp:{host}:{relay}",
            ]  # fmt: skip
            for attempt in range(repeat):
                code = f"{attempt + 7}-ringdrop-bench"  # a fresh nameplate, whatever went before
                send = Process(
                    setting.sender,
                    [*common, "send", "--hide-progress", "--code", code, str(workload.path)],
                    env=env,
                    cwd=work,
                )
                try:
                    send.wait_for(r"wormhole receive|Wormhole code is")
                    prepare = time.perf_counter() - send.started
                    out = fresh(work / "received") / workload.path.name
                    accept = ["--accept-file", "-o"]
                    receive = Process(
                        setting.receiver,
                        [*common, "receive", "--hide-progress", *accept, str(out), code],
                        env=env,
                        cwd=work,
                    )
                    receive.wait()
                    check_exit(receive, "wormhole receive")
                    send.wait(60)
                finally:
                    send.stop(signal.SIGKILL)
                if not identical(workload.path, out):
                    raise BenchError("the received copy differs from the original")
                path = re.search(r"\(->(\S+?)\)", receive.output())
                via = path.group(1) if path else ""
                runs.append(
                    Run(
                        receive.seconds,
                        send.rss,
                        receive.rss,
                        prepare,
                        via,
                        sender_cpu=send.cpu,
                        receiver_cpu=receive.cpu,
                    )
                )
        finally:
            for server in servers:
                server.stop(signal.SIGTERM)
            shutil.rmtree(work, ignore_errors=True)
        return runs


class Sendme(Contender):
    """sendme (iroh) with the relay disabled and a ticket of direct addresses."""

    name = "sendme"

    def __init__(self) -> None:
        default = Path.home() / ".cache/ringdrop-ci/sendme/bin/sendme"
        self.bin = Path(os.environ.get("SENDME_BIN", default))

    def missing(self) -> str | None:
        return None if self.bin.exists() else f"not installed: {self.bin}"

    def run(self, workload: Workload, setting: Setting, repeat: int) -> list[Run]:
        work = fresh(setting.workdir / self.name)
        env = base_env()
        offline = ["--relay", "disabled"]
        runs = []
        try:
            for attempt in range(repeat):
                send = Process(
                    setting.sender,
                    [
                        str(self.bin),
                        "send",
                        *offline,
                        "--ticket-type",
                        "addresses",
                        str(workload.path),
                    ],
                    env=env,
                    cwd=fresh(work / f"send-{attempt}"),
                )
                try:
                    ticket = send.wait_for(r"sendme receive (blob\S+)").group(1)
                    prepare = time.perf_counter() - send.started
                    target = fresh(work / f"receive-{attempt}")
                    receive = Process(
                        setting.receiver,
                        [str(self.bin), "receive", *offline, ticket],
                        env=env,
                        cwd=target,
                    )
                    receive.wait()
                    check_exit(receive, "sendme receive")
                finally:
                    send.stop(signal.SIGINT)
                if not identical(workload.path, target / workload.path.name):
                    raise BenchError("the received copy differs from the original")
                runs.append(
                    Run(
                        receive.seconds,
                        send.rss,
                        receive.rss,
                        prepare,
                        sender_cpu=send.cpu,
                        receiver_cpu=receive.cpu,
                    )
                )
                shutil.rmtree(target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return runs


def free_port() -> int:
    """A TCP port free here; in a fresh namespace every port is free, so this one is too."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


_WAIT_TCP = """
import socket, sys, time
deadline = time.monotonic() + 30
for port in map(int, sys.argv[2:]):
    while True:
        try:
            socket.create_connection((sys.argv[1], port), timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                sys.exit(f"nothing listens on {sys.argv[1]}:{port}")
            time.sleep(0.05)
"""


def wait_for_tcp(place: Place, host: str, ports: list[int]) -> None:
    """Waits until `host` accepts TCP connections on `ports`, seen from `place`."""
    command = place.command([sys.executable, "-c", _WAIT_TCP, host, *map(str, ports)])
    subprocess.run(command, check=True, timeout=60, capture_output=True)


def contenders(only: set[str] | None, baseline: Path | None) -> list[Contender]:
    found: list[Contender] = [Ringdrop(hide_qh3=False)]
    if baseline is not None:
        found.append(Ringdrop(hide_qh3=False, checkout=baseline, name="ringdrop-baseline"))
    qh3 = subprocess.run(
        [sys.executable, "-c", "import qh3"], capture_output=True, check=False
    ).returncode
    if qh3 == 0:
        found.append(Ringdrop(hide_qh3=True, name="ringdrop-aioquic"))
    found += [Wormhole(), Sendme()]
    return [c for c in found if only is None or c.name in only]


# -- running and reporting ------------------------------------------------------------------------


def measure(
    chosen: list[Contender], workload: Workload, setting: Setting, rounds: int
) -> list[Result]:
    """`rounds` rounds of one transfer per contender, the order rotated each round."""
    results = {
        c.name: Result(c.name, workload.kind, "ok", workload.size, workload.files) for c in chosen
    }
    runs: dict[str, list[Run]] = {c.name: [] for c in chosen}
    for contender in chosen:
        if reason := contender.missing():
            results[contender.name].status = reason
    for round_ in range(rounds):
        shift = round_ % len(chosen)
        for contender in chosen[shift:] + chosen[:shift]:
            result = results[contender.name]
            if not result.ok:
                continue
            try:
                runs[contender.name] += contender.run(workload, setting, 1)
            except Exception as error:  # one contender failing must not cost the others' figures
                detail = getattr(error, "output", "")
                print(
                    f"{contender.name} on the {workload.kind}: {error}\n{detail}", file=sys.stderr
                )
                result.status = f"failed: {error}"
    for name, result in results.items():
        if result.ok:
            summarize(result, runs[name])
    return list(results.values())


def summarize(result: Result, runs: list[Run]) -> None:
    result.seconds = statistics.median(run.seconds for run in runs)
    result.prepare_seconds = statistics.median(run.prepare_seconds for run in runs)
    result.sender_rss = max(run.sender_rss for run in runs)
    result.receiver_rss = max(run.receiver_rss for run in runs)
    result.sender_cpu = statistics.median(run.sender_cpu for run in runs)
    result.receiver_cpu = statistics.median(run.receiver_cpu for run in runs)
    result.via = runs[0].via
    own = [run.own_seconds for run in runs if run.own_seconds is not None]
    result.own_seconds = statistics.median(own) if own else None
    result.runs = [round(run.seconds, 3) for run in runs]


def ratios(result: Result, results: list[Result]) -> dict[str, float | None]:
    """The rate of `result` as a multiple of wormhole's and sendme's on the same workload: the
    median over the rounds of the ratio within each round."""
    out: dict[str, float | None] = {}
    for other in ("wormhole", "sendme"):
        them = [r for r in results if r.contender == other and r.workload == result.workload]
        theirs = them[0] if them and them[0].ok else None
        if theirs is None or not result.ok:
            out[f"vs_{other}"] = None
            continue
        rounds = zip(theirs.runs, result.runs, strict=False)
        out[f"vs_{other}"] = statistics.median(t / mine for t, mine in rounds)
    return out


@contextlib.contextmanager
def places(one_machine: bool) -> Iterator[tuple[Place, Place, str]]:
    if one_machine:
        here = Place(None, "127.0.0.1")
        yield here, here, "one machine"
        return
    if not is_root():
        raise SystemExit("the namespace pair needs root (or run with --one-machine)")
    with veth_pair(mtu=1500) as pair:
        yield Place(pair.a, pair.a_ip), Place(pair.b, pair.b_ip), "veth pair, MTU 1500"


def print_table(results: list[Result], path: str, rounds: int) -> None:
    print(
        f"{path}; median of {rounds} interleaved round(s) [lowest-highest]; receive wall time, "
        "command start to exit; CPU seconds per GiB, sender / receiver"
    )
    for workload in dict.fromkeys(r.workload for r in results):
        print(f"\n{workload}:")
        for r in (r for r in results if r.workload == workload):
            if not r.ok:
                print(f"  {r.contender:<18} {r.status}")
                continue
            low, high = r.spread
            if r.workload == "file":
                rate = f"{r.mb_per_s:6.1f} MB/s [{low:.0f}-{high:.0f}]"
            else:
                rate = f"{r.files_per_s:6.0f} files/s [{low:.0f}-{high:.0f}]"
            vs = ratios(r, results)
            versus = "  ".join(
                f"{v:.2f}x {k[3:]}" for k, v in vs.items() if v is not None and k[3:] != r.contender
            )
            own = ""
            if r.own_seconds:
                amount = r.size / 1e6 / r.own_seconds if r.workload == "file" else 0.0
                own = f"  (own clock {r.own_seconds:.2f} s" + (
                    f", {amount:.0f} MB/s)" if amount else ")"
                )
            cpu = f"{r.cpu_per_gib(r.sender_cpu):5.2f} / {r.cpu_per_gib(r.receiver_cpu):5.2f}"
            print(
                f"  {r.contender:<18} {r.seconds:6.2f} s {rate}  CPU {cpu} s/GiB  "
                f"RSS {r.sender_rss / MIB:4.0f} / {r.receiver_rss / MIB:4.0f} MiB"
                f"  (prepare {r.prepare_seconds:.2f} s)  {versus}"
                + (f"  via {r.via}" if r.via else "")
                + own
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256, help="the file's size (0: skip)")
    parser.add_argument("--files", type=int, default=10000, help="files in the folder (0: skip)")
    parser.add_argument("--repeat", type=int, default=1, help="interleaved rounds; medians count")
    parser.add_argument("--only", help=f"comma-separated, of: {','.join(NAMES)}")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--one-machine", action="store_true", help="no namespaces")
    parser.add_argument(
        "--baseline", type=Path, help="another checkout, run as ringdrop-baseline (before/after)"
    )
    parser.add_argument(
        "--addresses", action="store_true", help="ringdrop's ticket names the sender's address only"
    )
    args = parser.parse_args()
    only = set(args.only.split(",")) if args.only else None
    if only and (unknown := only - set(NAMES)):
        parser.error(
            f"unknown contenders: {', '.join(sorted(unknown))} (known: {', '.join(NAMES)})"
        )
    rounds = max(1, args.repeat)
    chosen = contenders(only, args.baseline.resolve() if args.baseline else None)
    results: list[Result] = []
    with (
        tempfile.TemporaryDirectory(prefix="ringdrop-netbench-") as tmp,
        places(args.one_machine) as (sender, receiver, path),
    ):
        workdir = Path(tmp)
        workloads = []
        if args.size_mib > 0:
            workloads.append(make_file(workdir / "file.bin", args.size_mib * MIB))
        if args.files > 0:
            workloads.append(make_folder(workdir / "folder", args.files))
        setting = Setting(sender, receiver, args.one_machine, workdir / "runs", args.addresses)
        for workload in workloads:
            results += measure(chosen, workload, setting, rounds)
    if args.json:
        out = [
            asdict(r)
            | {
                "mb_per_s": r.mb_per_s,
                "files_per_s": r.files_per_s,
                "spread": r.spread,
                "sender_cpu_per_gib": r.cpu_per_gib(r.sender_cpu),
                "receiver_cpu_per_gib": r.cpu_per_gib(r.receiver_cpu),
            }
            | ratios(r, results)
            for r in results
        ]
        print(json.dumps({"path": path, "rounds": rounds, "results": out}, indent=2))
    else:
        print_table(results, path, rounds)


if __name__ == "__main__":
    main()
