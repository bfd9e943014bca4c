"""Driving the installed `ringdrop` command in subprocesses, one data directory per node, with
tickets that name loopback only."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

_FOUND = shutil.which("ringdrop", path=str(Path(sys.executable).parent))
RINGDROP: list[str] = [_FOUND] if _FOUND else [sys.executable, "-m", "ringdrop.cli"]
TICKET = re.compile(r"rdrop:[a-z2-7]+")


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of every command: tickets offer only 127.0.0.1 and no relay or STUN
    server is used, so no test reaches anything but loopback, and no data directory is picked
    up from the caller."""
    env = {k: v for k, v in os.environ.items() if k != "RINGDROP_DATA_DIR"}
    env.update(RINGDROP_ADDRESSES="127.0.0.1", COLUMNS="200", PYTHONUNBUFFERED="1")
    env.update(RINGDROP_RELAY="disabled", RINGDROP_STUN="disabled")
    env.update(extra)
    return env


@dataclass
class Node:
    """One data directory, and the `ringdrop` commands run against it."""

    data_dir: Path
    cwd: Path

    def run(
        self, *args: str | Path, code: int = 0, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        """Runs `ringdrop --data-dir … ARGS`, checking that it exits with `code`."""
        done = subprocess.run(
            [*RINGDROP, "--data-dir", str(self.data_dir), *map(str, args)],
            capture_output=True,
            text=True,
            env=cli_env(),
            cwd=self.cwd,
            timeout=timeout,
            check=False,
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
        popen = subprocess.Popen(
            [*RINGDROP, "--data-dir", str(self.data_dir), *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            cwd=self.cwd,
        )
        return Process(popen)


@dataclass
class Process:
    """A running command whose output lines are collected as they come."""

    popen: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)
    _queue: queue.Queue[str] = field(default_factory=queue.Queue)

    def __post_init__(self) -> None:
        for stream in (self.popen.stdout, self.popen.stderr):
            threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

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
                if self.popen.poll() is not None and self._queue.empty():
                    break
                continue
            self.lines.append(line)
            if re.search(pattern, line):
                return line
        raise AssertionError(f"no line matched {pattern!r}; output so far:\n{''.join(self.lines)}")

    def stop(self, sig: int, timeout: float = 15) -> int:
        """Sends `sig` and waits for the exit code."""
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
        code = self.popen.wait(timeout)
        time.sleep(0.05)  # let the pump threads take the last lines
        while not self._queue.empty():
            self.lines.append(self._queue.get())
        return code


@contextlib.contextmanager
def serving(node: Node) -> Iterator[Process]:
    """`ringdrop serve` for `node` until the block ends, then SIGTERM (its exit code is then
    `popen.returncode`)."""
    process = node.spawn("serve")
    try:
        process.wait_for(r"^serving as ")
        yield process
    finally:
        process.stop(signal.SIGTERM)


def tree(folder: Path) -> dict[str, bytes]:
    """Every file below `folder` by its relative name, with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }
