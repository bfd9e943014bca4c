"""A real server executable for tests (iroh-relay, iroh-dns-server): found where CI installs it,
run as a subprocess that logs to a file, ready once its log says so, killed with SIGKILL."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import ClassVar, Self

from tests.ci import skip_unless_ci

__all__ = ["Program", "ServerProcess", "free_port", "free_udp_port"]

_START_TIMEOUT = 30.0  # generous: two cores shared with other builds and tests
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class Program:
    """A server executable: where it is looked for, and how `.ci/run` installs it."""

    variable: str
    """The environment variable that may name it."""
    name: str
    version: str
    install: str

    def find(self) -> str | None:
        """The executable `$variable` names, else `name` on PATH, else the one `.ci/run`
        installed in the CI cache; None when there is none."""
        explicit = os.environ.get(self.variable)
        if explicit:
            return explicit if os.access(explicit, os.X_OK) else None
        on_path = shutil.which(self.name)
        if on_path:
            return on_path
        cache = Path(os.environ.get("RINGDROP_CI_CACHE") or Path.home() / ".cache" / "ringdrop-ci")
        cached = cache / f"{self.name}-{self.version}" / "bin" / self.name
        return str(cached) if os.access(cached, os.X_OK) else None

    def require(self) -> str:
        """The executable, or skip the test (fail it under CI, which must run these tests)."""
        binary = self.find()
        if binary is None:
            explicit = os.environ.get(self.variable)
            skip_unless_ci(
                f"{self.variable}={explicit} is not an executable"
                if explicit
                else f"{self.name} {self.version} not found: set {self.variable} or run "
                f"`{self.install}` (.ci/run does)"
            )
        return binary


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ServerProcess:
    """One server process on `host`, restartable; with `netns`, run in that network namespace
    (`ip netns exec`). Its configuration file and its log are in `workdir`. A subclass names the
    program, the log line that says it listens (`SERVING`), its command line and the
    environment it adds."""

    NAME: ClassVar[str]
    SERVING: ClassVar[re.Pattern[str]]

    def __init__(self, binary: str, workdir: Path, host: str, netns: str | None) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.binary = binary
        self.workdir = workdir
        self.host = host
        self.netns = netns
        self.config_path = workdir / f"{self.NAME}.toml"
        self.log_path = workdir / f"{self.NAME}.log"
        self._process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        raise NotImplementedError

    def process_env(self) -> dict[str, str]:
        """What the server's environment adds to this process's."""
        raise NotImplementedError

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and return once it listens; raise RuntimeError if it does not."""
        if self.running:
            return
        command = self.command()
        if self.netns is not None:
            command = ["ip", "netns", "exec", self.netns, *command]
        # Each start appends to the log; readiness is the next SERVING line after this offset.
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **self.process_env()},
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"{self.NAME} exited with status {self._process.returncode}:\n"
                    f"{self.log(offset)}"
                )
            if self.SERVING.search(self.log(offset)):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.NAME} did not start within {_START_TIMEOUT:g} s:\n{self.log()}")

    def stop(self) -> None:
        """Kill the server at once (SIGKILL: no goodbye to its clients, as in a crash)."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)

    def restart(self) -> None:
        """Kill the server and start it again on the same address."""
        self.stop()
        self.start()

    def log(self, offset: int = 0) -> str:
        """The server's output so far (from byte `offset`), without colour codes."""
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return _ANSI.sub("", log.read().decode("utf-8", "replace"))
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
