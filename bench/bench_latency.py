"""Latency benchmark: how soon a receiver has its first byte, and its whole file, with the
tickets a user gets by default, on a LAN and behind NATs; ringdrop against sendme (and
magic-wormhole's receive on the LAN, for reference), in one run.

    sudo python bench/bench_latency.py [--repeat 3] [--cases lan,nat-relay,nat-punched]
                                       [--only ringdrop,sendme,wormhole] [--code DIR ...]
                                       [--size-kib 1024] [--punch-mib 64] [--json]

Cases (tests/netlab.py; root needed):
- lan: two namespaces joined by a veth pair at MTU 1500, relaying and STUN disabled.
- nat-relay: the NAT lab with one side behind a symmetric NAT, a real iroh-relay and coturn in
  its "internet": only the relay carries the transfer.
- nat-punched: both sides behind port-preserving NATs: the transfer starts on the relay and the
  path layer punches through. Its file is --punch-mib MiB, so that the move to the punched path
  happens while bytes still flow.

The sender shares with its default ticket (no RINGDROP_ADDRESSES: what a user's `share` prints)
and serves; the receiver's command is timed from its start to its exit. Reported per run:
- `whole`: the receiving command, process start to exit;
- `first_write`: process start to the first content byte on its disk, seen by polling the
  receiver's directories every 2 ms for allocated blocks in any file but databases and keys
  (every contender first writes into a store or a temporary file of its own);
- ringdrop's own figures from `get --json`: `first_byte` (from the start of the download to
  the first content byte from the network) and `direct_after` (from that first byte to the
  move to a direct path, from the path changes `get` reports).
Every received copy is compared with the original. `--code DIR` adds the ringdrop of another
checkout (its PYTHONPATH), e.g. a worktree of main, measured in the same run for a before/after.
The machine is shared and noisy: compare the contenders within one run, and use --repeat.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import queue
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_network import Place as NetPlace  # noqa: E402
from bench_network import free_port, identical, make_file, wait_for_tcp  # noqa: E402
from installed import compile_bytecode, user_env  # noqa: E402

from tests.netlab import NatKind, NatLab, in_namespace, is_root, nat_lab, veth_pair  # noqa: E402
from tests.relay_server import IrohRelay, find_iroh_relay  # noqa: E402

KIB = 1024
MIB = KIB * KIB
CASES = ("lan", "nat-relay", "nat-punched")
CONTENDERS = ("ringdrop", "sendme", "wormhole")
TIMEOUT = 300.0
RELAY_PORT = 3340
_POLL = 0.002
# Files that every contender writes before content arrives: databases, keys, settings.
_NOT_CONTENT = (".db", ".db-wal", ".db-shm", ".redb", ".json", ".key", ".lock", "key", "lock")


@dataclass(frozen=True)
class Place:
    """A network namespace and the address others reach it at."""

    namespace: str
    ip: str


@dataclass(frozen=True)
class Setting:
    """Where the sender and the receiver run and what they use to find each other."""

    case: str
    sender: Place
    receiver: Place
    relay: str | None
    stun: str | None
    workdir: Path


@dataclass
class Run:
    whole: float
    first_write: float | None
    first_byte: float | None = None
    direct_after: float | None = None
    via: str = ""


@dataclass
class Result:
    case: str
    contender: str
    status: str
    runs: list[Run] = field(default_factory=list)

    def median(self, name: str) -> float | None:
        values = [getattr(r, name) for r in self.runs if getattr(r, name) is not None]
        return statistics.median(values) if values else None


class BenchError(Exception):
    pass


# -- watching a receiver --------------------------------------------------------------------------


class Watched:
    """A started command whose output lines are collected with the time each arrived, and
    whose first content write under `dirs` is timed from its start."""

    def __init__(
        self, place: Place, command: Sequence[str], *, env: dict[str, str], cwd: Path,
        dirs: Sequence[Path] = (),
    ) -> None:  # fmt: skip
        self.started = time.perf_counter()
        self.popen = subprocess.Popen(
            in_namespace(place.namespace, command),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            text=True,
            errors="replace",
            start_new_session=True,
        )
        self.stdout: list[tuple[float, str]] = []
        self.stderr: list[tuple[float, str]] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._threads = [
            threading.Thread(target=self._pump, args=(self.popen.stdout, self.stdout), daemon=True),
            threading.Thread(target=self._pump, args=(self.popen.stderr, self.stderr), daemon=True),
        ]
        self.first_write: float | None = None
        if dirs:
            self._threads.append(threading.Thread(target=self._watch, args=(dirs,), daemon=True))
        for thread in self._threads:
            thread.start()
        self.ended: float | None = None

    def _pump(self, stream: IO[str] | None, into: list[tuple[float, str]]) -> None:
        assert stream is not None
        for line in stream:
            into.append((time.perf_counter() - self.started, line))
            self._lines.put(line)
        self._lines.put(None)

    def _watch(self, dirs: Sequence[Path]) -> None:
        while self.popen.poll() is None:
            if any(_content_written(d) for d in dirs):
                self.first_write = time.perf_counter() - self.started
                return
            time.sleep(_POLL)

    def wait_for(self, text: str, timeout: float = 120) -> str:
        """The first line (stdout or stderr) holding `text`."""
        deadline = time.monotonic() + timeout
        for _, line in self.stdout + self.stderr:
            if text in line:
                return line
        ended = 0
        while (left := deadline - time.monotonic()) > 0:
            try:
                got = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if got is None:
                ended += 1
                if ended == 2:
                    break
                continue
            if text in got:
                return got
        raise BenchError(f"no line with {text!r}: {self.output()}")

    def wait(self, timeout: float = TIMEOUT) -> int:
        try:
            code = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise BenchError(f"still running after {timeout:g} s: {self.output()}") from None
        self.ended = time.perf_counter() - self.started
        for thread in self._threads:
            thread.join(5)
        return code

    def kill(self, sig: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(20)

    def output(self) -> str:
        lines = sorted(self.stdout + self.stderr)
        return "".join(line for _, line in lines[-20:])


def _content_written(top: Path) -> bool:
    """Whether any file under `top` but databases and keys has a block on disk."""
    stack = [top]
    while stack:
        try:
            entries = list(os.scandir(stack.pop()))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                elif not entry.name.endswith(_NOT_CONTENT) and entry.stat().st_blocks > 0:
                    return True
            except OSError:
                continue
    return False


def fresh(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def base_env(**extra: str) -> dict[str, str]:
    return user_env(**extra)


# -- contenders -----------------------------------------------------------------------------------


class Ringdrop:
    """`share --open` and `serve` on the sender, `get --json` on the receiver; the code of
    `code` (a checkout: this one by default)."""

    def __init__(self, code: Path, label: str) -> None:
        self.code = code
        self.name = label

    def missing(self) -> str | None:
        if not (self.code / "ringdrop").is_dir():
            return f"no ringdrop in {self.code}"
        compile_bytecode(self.code)
        return None

    def command(self, *args: str | Path) -> list[str]:
        return [sys.executable, "-m", "ringdrop.cli", *map(str, args)]

    def env(self, setting: Setting) -> dict[str, str]:
        return base_env(
            PYTHONPATH=str(self.code),
            RINGDROP_RELAY=setting.relay or "disabled",
            RINGDROP_STUN=setting.stun or "disabled",
        )

    def run(self, source: Path, setting: Setting, repeat: int) -> list[Run]:
        work = fresh(setting.workdir / self.name.replace("/", "_"))
        env = self.env(setting)
        sharer = ["--data-dir", str(work / "sharer")]
        shared = subprocess.run(
            in_namespace(
                setting.sender.namespace,
                self.command(*sharer, "share", source, "--open", "--json"),
            ),
            env=env, cwd=work, capture_output=True, text=True, timeout=TIMEOUT, check=False,
        )  # fmt: skip
        if shared.returncode != 0:
            raise BenchError(f"share failed: {shared.stderr}")
        ticket = json.loads(shared.stdout)["ticket"]
        serve = Watched(setting.sender, self.command(*sharer, "serve"), env=env, cwd=work)
        runs = []
        try:
            serve.wait_for("serving as", 60)
            if setting.relay:
                serve.wait_for(": connected", 60)
            for attempt in range(repeat):
                data_dir = work / f"receiver-{attempt}"
                dest = fresh(work / f"dest-{attempt}")
                get = Watched(
                    setting.receiver,
                    self.command("--data-dir", data_dir, "get", ticket, "--dest", dest, "--json"),
                    env=env,
                    cwd=work,
                    dirs=[data_dir / "partial", data_dir / "blobs", dest],
                )
                if get.wait() != 0:
                    raise BenchError(f"get failed: {get.output()}")
                if not identical(source, dest / source.name):
                    raise BenchError("the received copy differs from the original")
                shown = json.loads("".join(line for _, line in get.stdout))
                assert get.ended is not None
                runs.append(
                    Run(
                        get.ended,
                        get.first_write,
                        shown.get("first_byte"),
                        _direct_after(shown),
                        f"{shown.get('path')} {shown.get('via')}",
                    )
                )
                shutil.rmtree(data_dir)
                shutil.rmtree(dest)
        finally:
            serve.kill(signal.SIGTERM)
            shutil.rmtree(work, ignore_errors=True)
        return runs


def _direct_after(shown: dict[str, Any]) -> float | None:
    """Seconds from the first content byte to the first move to a direct path, from `get`'s
    path changes (None when it never moved, or its code does not report them)."""
    first = shown.get("first_byte")
    changes = shown.get("paths") or []
    direct = [c["at"] for c in changes if str(c.get("path", "")).startswith("direct")]
    relay = [c["at"] for c in changes if str(c.get("path", "")).startswith("relay")]
    if first is None or not direct or not relay or min(relay) > min(direct):
        return None
    return round(float(min(direct)) - float(first), 3)


class Sendme:
    """sendme (iroh): `send` of the file, `receive` of its default ticket."""

    name = "sendme"

    def __init__(self) -> None:
        default = Path.home() / ".cache/ringdrop-ci/sendme/bin/sendme"
        self.bin = Path(os.environ.get("SENDME_BIN", default))

    def missing(self) -> str | None:
        return None if self.bin.exists() else f"not installed: {self.bin}"

    def run(self, source: Path, setting: Setting, repeat: int) -> list[Run]:
        work = fresh(setting.workdir / self.name)
        relay = ["--relay", setting.relay or "disabled"]
        runs = []
        try:
            for attempt in range(repeat):
                send = Watched(
                    setting.sender,
                    [str(self.bin), "send", *relay, str(source)],
                    env=base_env(),
                    cwd=fresh(work / f"send-{attempt}"),
                )
                try:
                    line = send.wait_for("sendme receive ", 60)
                    ticket = line.split("sendme receive ", 1)[1].split()[0]
                    target = fresh(work / f"receive-{attempt}")
                    receive = Watched(
                        setting.receiver,
                        [str(self.bin), "receive", *relay, ticket],
                        env=base_env(),
                        cwd=target,
                        dirs=[target],
                    )
                    if receive.wait() != 0:
                        raise BenchError(f"receive failed: {receive.output()}")
                finally:
                    send.kill(signal.SIGINT)
                if not identical(source, target / source.name):
                    raise BenchError("the received copy differs from the original")
                assert receive.ended is not None
                runs.append(Run(receive.ended, receive.first_write))
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return runs


class Wormhole:
    """magic-wormhole with its own mailbox server and transit relay beside the sender."""

    name = "wormhole"

    def __init__(self) -> None:
        self.bin = Path(os.environ.get("WORMHOLE_VENV", "/tmp/wh-venv")) / "bin"

    def missing(self) -> str | None:
        needed = [self.bin / "wormhole", self.bin / "twist"]
        absent = [str(path) for path in needed if not path.exists()]
        return f"not installed: {', '.join(absent)}" if absent else None

    def run(self, source: Path, setting: Setting, repeat: int) -> list[Run]:
        work = fresh(setting.workdir / self.name)
        host = setting.sender.ip
        mailbox, transit = free_port(), free_port()
        servers = [
            Watched(
                setting.sender,
                [str(self.bin / "twist"), service, f"--port=tcp:{port}:interface={host}"],
                env=base_env(),
                cwd=work,
            )
            for service, port in (("wormhole-mailbox", mailbox), ("transitrelay", transit))
        ]
        runs = []
        try:
            wait_for_tcp(NetPlace(setting.receiver.namespace, ""), host, [mailbox, transit])
            common = [
                str(self.bin / "wormhole"),
                "--relay-url", f"ws://{host}:{mailbox}/v1",
                "--transit-helper", f"tcp:{host}:{transit}",
            ]  # fmt: skip
            for attempt in range(repeat):
                code = f"{attempt + 7}-ringdrop-latency"
                send = Watched(
                    setting.sender,
                    [*common, "send", "--hide-progress", "--code", code, str(source)],
                    env=base_env(),
                    cwd=work,
                )
                try:
                    send.wait_for("wormhole receive", 60)
                    out = fresh(work / f"received-{attempt}")
                    receive = Watched(
                        setting.receiver,
                        [*common, "receive", "--hide-progress", "--accept-file",
                         "-o", str(out / source.name), code],
                        env=base_env(),
                        cwd=work,
                        dirs=[out],
                    )  # fmt: skip
                    if receive.wait() != 0:
                        raise BenchError(f"receive failed: {receive.output()}")
                    send.wait(60)
                finally:
                    send.kill()
                if not identical(source, out / source.name):
                    raise BenchError("the received copy differs from the original")
                assert receive.ended is not None
                runs.append(Run(receive.ended, receive.first_write))
        finally:
            for server in servers:
                server.kill(signal.SIGTERM)
            shutil.rmtree(work, ignore_errors=True)
        return runs


Contender = Ringdrop | Sendme | Wormhole


# -- cases ----------------------------------------------------------------------------------------


@contextlib.contextmanager
def setting_for(case: str, workdir: Path) -> Iterator[Setting]:
    if case == "lan":
        with veth_pair(mtu=1500) as pair:
            yield Setting(
                case, Place(pair.a, pair.a_ip), Place(pair.b, pair.b_ip), None, None, workdir
            )
        return
    right: NatKind = "symmetric" if case == "nat-relay" else "port-preserving"
    with nat_lab("port-preserving", right) as lab, _relay(lab, workdir) as relay:
        stun = lab.start_stun()
        yield Setting(
            case,
            Place(lab.left.host, lab.left.host_ip),
            Place(lab.right.host, lab.right.host_ip),
            relay.url,
            f"{stun[0]}:{stun[1]}",
            workdir,
        )


@contextlib.contextmanager
def _relay(lab: NatLab, workdir: Path) -> Iterator[IrohRelay]:
    binary = find_iroh_relay()
    if binary is None:
        raise SystemExit("iroh-relay is not installed (see tests/relay_server.py)")
    with IrohRelay(
        binary, workdir / "relay", host=lab.service_ip, port=RELAY_PORT, netns=lab.internet
    ) as relay:
        yield relay


def measure(contender: Contender, source: Path, setting: Setting, repeat: int) -> Result:
    result = Result(setting.case, contender.name, "ok")
    if reason := contender.missing():
        result.status = reason
        return result
    if isinstance(contender, Wormhole) and setting.case != "lan":
        result.status = "LAN only (reference)"
        return result
    try:
        result.runs = contender.run(source, setting, repeat)
    except Exception as error:  # one contender failing must not cost the others' figures
        print(f"{contender.name} in {setting.case}: {error}", file=sys.stderr)
        result.status = f"failed: {str(error)[:200]}"
    return result


def _seconds(value: float | None) -> str:
    return "    -  " if value is None else f"{value:6.3f}s"


def print_table(results: list[Result], repeat: int) -> None:
    print(
        f"median of {repeat}; whole = process start to exit, first write = process start to "
        "the first content byte on disk; first byte and direct after: ringdrop's own clock"
    )
    for case in dict.fromkeys(r.case for r in results):
        print(f"\n{case}:")
        rows = [r for r in results if r.case == case]
        reference = next((r for r in rows if r.contender == "sendme" and r.runs), None)
        for r in rows:
            if not r.runs:
                print(f"  {r.contender:<24} {r.status}")
                continue
            whole = r.median("whole")
            versus = ""
            if reference is not None and r is not reference and whole:
                versus = f"  {whole / (reference.median('whole') or whole):.2f}x sendme"
            first_write, first_byte = r.median("first_write"), r.median("first_byte")
            print(
                f"  {r.contender:<24} whole {_seconds(whole)}  first write "
                f"{_seconds(first_write)}  first byte {_seconds(first_byte)}"
                f"  direct after {_seconds(r.median('direct_after'))}{versus}"
                f"  runs {[round(run.whole, 3) for run in r.runs]}"
                + (f"  via {r.runs[0].via}" if r.runs[0].via else "")
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per contender and case")
    parser.add_argument("--cases", default=",".join(CASES), help=f"of {', '.join(CASES)}")
    parser.add_argument("--only", help=f"comma-separated, of {', '.join(CONTENDERS)}")
    parser.add_argument(
        "--code", action="append", type=Path, default=[],
        help="another ringdrop checkout to measure too (repeatable)",
    )  # fmt: skip
    parser.add_argument("--size-kib", type=int, default=1024, help="the file (KiB)")
    parser.add_argument("--punch-mib", type=int, default=64, help="the file of nat-punched")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()
    if not is_root():
        raise SystemExit("the network namespaces need root")
    cases = [c for c in args.cases.split(",") if c]
    if unknown := set(cases) - set(CASES):
        parser.error(f"unknown cases: {', '.join(sorted(unknown))}")
    only = set(args.only.split(",")) if args.only else set(CONTENDERS)
    contenders: list[Contender] = []
    if "ringdrop" in only:
        contenders.append(Ringdrop(ROOT, "ringdrop"))
        contenders += [Ringdrop(code.resolve(), f"ringdrop@{code.name}") for code in args.code]
    if "sendme" in only:
        contenders.append(Sendme())
    if "wormhole" in only:
        contenders.append(Wormhole())
    results = []
    with tempfile.TemporaryDirectory(prefix="ringdrop-latency-") as tmp:
        workdir = Path(tmp)
        small = make_file(fresh(workdir / "small") / "file.bin", args.size_kib * KIB).path
        large = make_file(fresh(workdir / "large") / "file.bin", args.punch_mib * MIB).path
        for case in cases:
            source = large if case == "nat-punched" else small
            with setting_for(case, workdir / "runs") as setting:
                for contender in contenders:
                    results.append(measure(contender, source, setting, max(1, args.repeat)))
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    else:
        print_table(results, args.repeat)


if __name__ == "__main__":
    main()
