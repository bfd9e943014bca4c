"""A real `iroh-relay` server (iroh 1.0.3, built from crates.io) for tests: found, configured,
started in `--dev` mode (plain HTTP), stopped and restarted on the same port, on loopback or
inside a network namespace.

    with IrohRelay(binary, tmp_path) as relay:      # or the `iroh_relay` fixture
        client = RelayClient(relay.url, ...)
        relay.restart()

The binary comes from `$IROH_RELAY_BIN`, else `iroh-relay` on PATH, else the CI cache that
`.ci/run` fills with `cargo install iroh-relay --version 1.0.3 --features server --locked`.
Without it the tests that need it are skipped, except under CI (`CI=true`), where they fail:
CI must run them.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType

import pytest

from tests.ci import skip_unless_ci

__all__ = ["IROH_RELAY_VERSION", "IrohRelay", "find_iroh_relay", "iroh_relay", "require_iroh_relay"]

IROH_RELAY_VERSION = "1.0.3"

_START_TIMEOUT = 30.0  # generous: two cores shared with other builds and tests
# The line the server logs once its listener is bound (iroh_relay::server::http_server).
_SERVING = re.compile(r"relay: serving on (\S+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def find_iroh_relay() -> str | None:
    """The iroh-relay executable to use, or None when there is none."""
    explicit = os.environ.get("IROH_RELAY_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    on_path = shutil.which("iroh-relay")
    if on_path:
        return on_path
    cache = Path(os.environ.get("RINGDROP_CI_CACHE") or Path.home() / ".cache" / "ringdrop-ci")
    cached = cache / f"iroh-relay-{IROH_RELAY_VERSION}" / "bin" / "iroh-relay"
    return str(cached) if os.access(cached, os.X_OK) else None


def require_iroh_relay() -> str:
    """The executable, or skip the test (fail it under CI, which must run these tests)."""
    binary = find_iroh_relay()
    if binary is None:
        explicit = os.environ.get("IROH_RELAY_BIN")
        message = (
            f"IROH_RELAY_BIN={explicit} is not an executable"
            if explicit
            else (
                f"iroh-relay {IROH_RELAY_VERSION} not found: set IROH_RELAY_BIN or run "
                f"`cargo install iroh-relay --version {IROH_RELAY_VERSION} --features server "
                "--locked` (.ci/run does)"
            )
        )
        skip_unless_ci(message)
    return binary


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


class IrohRelay:
    """One iroh-relay process on `host:port` (a free port by default), restartable there.

    With `netns`, the server runs in that network namespace (`ip netns exec`), `host` being
    one of its addresses; `port` must then be given. `config` is appended to the TOML file
    (for instance `access.denylist = ["<hex key>"]`).
    """

    def __init__(
        self,
        binary: str,
        workdir: Path,
        host: str = "127.0.0.1",
        port: int | None = None,
        netns: str | None = None,
        config: str = "",
    ) -> None:
        if port is None:
            if netns is not None:
                raise ValueError("a relay in a network namespace needs an explicit port")
            port = free_port(host)
        self.binary = binary
        self.host = host
        self.port = port
        self.netns = netns
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "iroh-relay.toml"
        self.log_path = workdir / "iroh-relay.log"
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # Dev mode serves plain HTTP and needs no TLS; QUIC address discovery (which would need
        # TLS) is off unless asked for, and metrics would take another port.
        self.config_path.write_text(
            f'http_bind_addr = "{bind}"\nenable_metrics = false\n'
            f"enable_quic_addr_discovery = false\n{config}\n"
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The relay URL as a ticket would carry it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Start the server and return once it listens; raise RuntimeError if it does not."""
        if self.running:
            return
        command = [self.binary, "--dev", "--config-path", str(self.config_path)]
        if self.netns is not None:
            command = ["ip", "netns", "exec", self.netns, *command]
        # Each start appends to the log; readiness is the next "serving on" after this offset.
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {**os.environ, "RUST_LOG": "warn,iroh_relay::server::http_server=info"}
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"iroh-relay exited with status {self._process.returncode}:\n{self.log(offset)}"
                )
            if _SERVING.search(self.log(offset)):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"iroh-relay did not start within {_START_TIMEOUT:g} s:\n{self.log()}")

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

    def __enter__(self) -> IrohRelay:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


@pytest.fixture
def iroh_relay(tmp_path: Path) -> Iterator[IrohRelay]:
    """A real iroh-relay on 127.0.0.1 (a free port), killed when the test ends; `.url`."""
    with IrohRelay(require_iroh_relay(), tmp_path / "iroh-relay") as relay:
        yield relay
