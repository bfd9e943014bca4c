"""A real `iroh-dns-server` 1.4.1 (n0's pkarr relay and DNS server, built from crates.io) for
tests: configured by a file (HTTP and DNS on loopback, no rate limit, no mainline DHT, its
database in the test's folder, under a temporary HOME), started, killed, restarted.

    with IrohDnsServer(binary, tmp_path) as server:     # or the `iroh_dns` fixture
        server.pkarr_url    # http://127.0.0.1:PORT/pkarr, for RINGDROP_DISCOVERY
        server.dns_setting  # dns.test@127.0.0.1:PORT, for RINGDROP_DISCOVERY_DNS

The binary comes from `$IROH_DNS_SERVER_BIN`, else `iroh-dns-server` on PATH, else the CI cache
that `.ci/run` fills with `cargo install iroh-dns-server --version 1.4.1 --locked`. Without it
the tests that need it are skipped, except under CI (`CI=true`), where they fail.
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
from tests.relay_server import free_port

__all__ = ["IROH_DNS_SERVER_VERSION", "ORIGIN", "IrohDnsServer", "iroh_dns", "require_dns_server"]

IROH_DNS_SERVER_VERSION = "1.4.1"
ORIGIN = "dns.test"
_START_TIMEOUT = 30.0
# Logged once both listeners are bound (iroh_dns_server::dns, after ::http).
_SERVING = re.compile(r"DNS server listening on")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def find_dns_server() -> str | None:
    explicit = os.environ.get("IROH_DNS_SERVER_BIN")
    if explicit:
        return explicit if os.access(explicit, os.X_OK) else None
    on_path = shutil.which("iroh-dns-server")
    if on_path:
        return on_path
    cache = Path(os.environ.get("RINGDROP_CI_CACHE") or Path.home() / ".cache" / "ringdrop-ci")
    cached = cache / f"iroh-dns-server-{IROH_DNS_SERVER_VERSION}" / "bin" / "iroh-dns-server"
    return str(cached) if os.access(cached, os.X_OK) else None


def require_dns_server() -> str:
    """The executable, or skip the test (fail it under CI, which must run these tests)."""
    binary = find_dns_server()
    if binary is None:
        message = (
            f"iroh-dns-server {IROH_DNS_SERVER_VERSION} not found: set IROH_DNS_SERVER_BIN or "
            f"run `cargo install iroh-dns-server --version {IROH_DNS_SERVER_VERSION} --locked` "
            "(.ci/run does)"
        )
        skip_unless_ci(message)
    return binary


class IrohDnsServer:
    """One iroh-dns-server on 127.0.0.1: HTTP (the pkarr relay) and DNS on free ports.

    With `netns`, it runs in that network namespace (`ip netns exec`) on `host`, one of its
    addresses, at the ports given (53 and 8080 by default: the namespace is the test's own)."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        host: str = "127.0.0.1",
        netns: str | None = None,
        http_port: int = 8080,
        dns_port: int = 53,
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.host = host
        self.netns = netns
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "home").mkdir(exist_ok=True)
        self.http_port = free_port() if netns is None else http_port
        self.dns_port = _free_udp_port() if netns is None else dns_port
        self.config_path = workdir / "iroh-dns-server.toml"
        self.log_path = workdir / "iroh-dns-server.log"
        self.config_path.write_text(
            'pkarr_put_rate_limit = "disabled"\n'
            f'data_dir = "{workdir / "data"}"\n\n'
            f'[http]\nport = {self.http_port}\nbind_addr = "{host}"\n\n'
            f'[dns]\nport = {self.dns_port}\nbind_addr = "{host}"\n'
            f'default_soa = "ns1.{ORIGIN} hostmaster.{ORIGIN} 0 10800 3600 604800 3600"\n'
            f'default_ttl = 30\norigins = ["{ORIGIN}.", "."]\n\n'
            "[metrics]\ndisabled = true\n\n"
            "[mainline]\nenabled = false\n"
        )
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pkarr_url(self) -> str:
        return f"http://{self.host}:{self.http_port}/pkarr"

    @property
    def dns_setting(self) -> str:
        """The value of RINGDROP_DISCOVERY_DNS that asks this server directly."""
        return f"{ORIGIN}@{self.host}:{self.dns_port}"

    def env(self) -> dict[str, str]:
        """The discovery settings of a node that uses this server (and nothing else)."""
        return {"RINGDROP_DISCOVERY": self.pkarr_url, "RINGDROP_DISCOVERY_DNS": self.dns_setting}

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        if self.running:
            return
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        env = {
            **os.environ,
            "HOME": str(self.workdir / "home"),  # it keeps state under $HOME/.local/share
            "RUST_LOG": "info",
        }
        with self.log_path.open("ab") as log:
            command = [self.binary, "--config", str(self.config_path)]
            if self.netns is not None:
                command = ["ip", "netns", "exec", self.netns, *command]
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
                    f"iroh-dns-server exited with status {self._process.returncode}:\n"
                    f"{self.log(offset)}"
                )
            if _SERVING.search(self.log(offset)):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"iroh-dns-server did not start within {_START_TIMEOUT:g} s")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)

    def log(self, offset: int = 0) -> str:
        try:
            with self.log_path.open("rb") as log:
                log.seek(offset)
                return _ANSI.sub("", log.read().decode("utf-8", "replace"))
        except FileNotFoundError:
            return ""

    def __enter__(self) -> IrohDnsServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def iroh_dns(tmp_path: Path) -> Iterator[IrohDnsServer]:
    """A real iroh-dns-server on 127.0.0.1, killed when the test ends."""
    with IrohDnsServer(require_dns_server(), tmp_path / "iroh-dns-server") as server:
        yield server
