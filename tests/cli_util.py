"""Driving the `ringdrop` command, one data directory per node, with tickets that name loopback
only: most commands run in this process through `ringdrop.cli.main` (fast, and what they print is
the same), a few deliberately in a real process (`Node.run(..., process=True)`, `Node.spawn`): the
installed console script, `serve`, signals."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

from ringdrop.cli import main

_FOUND = shutil.which("ringdrop", path=str(Path(sys.executable).parent))
RINGDROP: list[str] = [_FOUND] if _FOUND else [sys.executable, "-m", "ringdrop.cli"]
TICKET = re.compile(r"rdrop:[a-z2-7]+")


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of every command: tickets offer only 127.0.0.1 and no relay or STUN
    server is used, so no test reaches anything but loopback, and no data directory is picked
    up from the caller."""
    env = {k: v for k, v in os.environ.items() if k != "RINGDROP_DATA_DIR"}
    env.update(RINGDROP_ADDRESSES="127.0.0.1", COLUMNS="200", PYTHONUNBUFFERED="1")
    env.update(RINGDROP_RELAY="disabled", RINGDROP_STUN="disabled", RINGDROP_DISCOVERY="disabled")
    env.update(extra)
    return env


def ringdrop(
    argv: Sequence[str | Path],
    *,
    cwd: Path,
    env: Mapping[str, str] | None = None,
    process: bool = False,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Runs `ringdrop ARGV` in `cwd` with `env` (default `cli_env()`) and returns what it printed
    and its exit code: in this process, or with `process` in a real one."""
    args = [*map(str, argv)]
    env = cli_env() if env is None else dict(env)
    if process:
        return subprocess.run(
            [*RINGDROP, *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=cwd,
            timeout=timeout,
            check=False,
        )
    return _in_process(args, cwd=cwd, env=env, timeout=timeout)


class _TimedOut(BaseException):
    """Raised in the command when its failsafe timeout passes (a BaseException, so that the
    CLI's error handling does not turn it into an exit code)."""


def _in_process(
    args: list[str], *, cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """`main(args)` as the interpreter would run it: SystemExit and uncaught exceptions become
    the exit code (an uncaught one printed with its traceback), output is captured as text.
    The environment, working directory, root logger and signal handlers are put back afterwards,
    and a command that changed the first two fails the test: they belong to the whole process."""
    out, err = io.StringIO(), io.StringIO()
    saved_env, saved_cwd = dict(os.environ), os.getcwd()
    root = logging.getLogger()
    saved_log = (root.level, root.handlers[:])
    saved_signals = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}

    def time_out(signum: int, frame: FrameType | None) -> None:
        raise _TimedOut

    saved_alarm = signal.signal(signal.SIGALRM, time_out)
    os.environ.clear()
    os.environ.update(env)
    os.chdir(cwd)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            signal.setitimer(signal.ITIMER_REAL, timeout)
            try:
                code = _exit_code(args)
            finally:
                signal.setitimer(signal.ITIMER_REAL, 0)
        leaked = {k for k in set(env) | set(os.environ) if env.get(k) != os.environ.get(k)}
        moved = Path.cwd() != cwd.resolve()
    except _TimedOut:
        raise AssertionError(
            f"`ringdrop {' '.join(args)}` still ran after {timeout} s\n"
            f"stdout: {out.getvalue()}\nstderr: {err.getvalue()}"
        ) from None
    finally:
        signal.signal(signal.SIGALRM, saved_alarm)
        for sig, handler in saved_signals.items():
            signal.signal(sig, handler)
        root.setLevel(saved_log[0])
        root.handlers[:] = saved_log[1]
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)
    assert not leaked, f"`ringdrop {' '.join(args)}` changed the environment: {sorted(leaked)}"
    assert not moved, f"`ringdrop {' '.join(args)}` changed the working directory"
    return subprocess.CompletedProcess(["ringdrop", *args], code, out.getvalue(), err.getvalue())


def _exit_code(args: list[str]) -> int:
    """What the process would exit with after `main(args)`."""
    try:
        returned = main(args)
    except SystemExit as exit:
        if exit.code is None or isinstance(exit.code, int):
            return exit.code or 0
        print(exit.code, file=sys.stderr)
        return 1
    except Exception:
        traceback.print_exc()
        return 1
    return int(returned)


@dataclass
class Node:
    """One data directory, and the `ringdrop` commands run against it (with `env` added to
    `cli_env()`)."""

    data_dir: Path
    cwd: Path
    env: dict[str, str] = field(default_factory=dict)

    def run(
        self, *args: str | Path, code: int = 0, process: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Runs `ringdrop --data-dir … ARGS` (in this process unless `process`), checking that
        it exits with `code`."""
        done = ringdrop(
            ["--data-dir", self.data_dir, *args],
            cwd=self.cwd,
            env=cli_env(**self.env),
            process=process,
            timeout=timeout,
        )
        assert done.returncode == code, (
            f"`ringdrop {' '.join(map(str, args))}` exited {done.returncode}, not {code}\n"
            f"stdout: {done.stdout}\nstderr: {done.stderr}"
        )
        return done

    def json(self, *args: str | Path, code: int = 0) -> object:
        return json.loads(self.run(*args, "--json", code=code).stdout)

    def peer_id(self) -> str:
        return self.run("id").stdout.strip()

    def share(self, path: Path, *options: str) -> str:
        """Shares `path` and returns its ticket."""
        found = TICKET.search(self.run("share", path, *options).stdout)
        assert found is not None
        return found.group()

    def spawn(self, *args: str | Path) -> Process:
        """Starts `ringdrop --data-dir … ARGS` in its own process, for a test to signal."""
        popen = subprocess.Popen(
            [*RINGDROP, "--data-dir", str(self.data_dir), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(**self.env),
            cwd=self.cwd,
        )
        return Process(popen)


@dataclass
class Process:
    """A running command whose output lines are collected as they come."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str] = field(default_factory=queue.Queue)
    _pumps: list[threading.Thread] = field(default_factory=list)

    def __post_init__(self) -> None:
        for stream in (self.popen.stdout, self.popen.stderr):
            pump = threading.Thread(target=self._pump, args=(stream,), daemon=True)
            pump.start()
            self._pumps.append(pump)

    def _pump(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        """The first output line (stdout or stderr) that matches `pattern`."""
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if re.search(pattern, line):
                return line
        while time.monotonic() < deadline:
            try:
                line = self._queue.get(timeout=0.1)
            except queue.Empty:
                if not any(pump.is_alive() for pump in self._pumps) and self._queue.empty():
                    break  # the output has ended
                continue
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matched {pattern!r}; output so far:\n{''.join(self.lines)}")

    def stop(self, sig: int, timeout: float = 15) -> int:
        """Sends `sig` and waits for the exit code. A process held with SIGSTOP is continued
        after the signal, so that it meets the signal first."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            self.popen.send_signal(signal.SIGCONT)
        code = self.popen.wait(timeout)
        for pump in self._pumps:  # they end at the end of the output
            pump.join(timeout)
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return code


@contextlib.contextmanager
def serve_process(node: Node) -> Iterator[Process]:
    """`ringdrop serve` for `node` until the block ends, then SIGTERM (its exit code is then
    `popen.returncode`)."""
    process = node.spawn("serve")
    try:
        process.wait_for(r"^serving as ")
        yield process
    finally:
        process.stop(signal.SIGTERM)
