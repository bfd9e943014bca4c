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

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_process import Program, ServerProcess, free_port, free_udp_port

__all__ = ["IROH_DNS_SERVER_VERSION", "ORIGIN", "IrohDnsServer", "iroh_dns", "require_dns_server"]

IROH_DNS_SERVER_VERSION = "1.4.1"
ORIGIN = "dns.test"


_PROGRAM = Program(
    "IROH_DNS_SERVER_BIN",
    "iroh-dns-server",
    IROH_DNS_SERVER_VERSION,
    f"cargo install iroh-dns-server --version {IROH_DNS_SERVER_VERSION} --locked",
)
find_dns_server = _PROGRAM.find
require_dns_server = _PROGRAM.require


_PORT_TRIES = 5


class IrohDnsServer(ServerProcess):
    """One iroh-dns-server on 127.0.0.1: HTTP (the pkarr relay) and DNS on free ports.

    With `netns`, it runs in that network namespace (`ip netns exec`) on `host`, one of its
    addresses, at the ports given (53 and 8080 by default: the namespace is the test's own)."""

    NAME = "iroh-dns-server"
    # Logged once both listeners are bound (iroh_dns_server::dns, after ::http).
    SERVING = re.compile(r"DNS server listening on")

    def __init__(
        self,
        binary: str,
        workdir: Path,
        host: str = "127.0.0.1",
        netns: str | None = None,
        http_port: int = 8080,
        dns_port: int = 53,
    ) -> None:
        super().__init__(binary, workdir, host, netns)
        (workdir / "home").mkdir(exist_ok=True)
        self._started = False
        self._configure(http_port, dns_port)

    def _configure(self, http_port: int, dns_port: int) -> None:
        host, workdir = self.host, self.workdir
        self.http_port = free_port() if self.netns is None else http_port
        self.dns_port = free_udp_port() if self.netns is None else dns_port
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

    def start(self) -> None:
        """As `ServerProcess.start`. On 127.0.0.1 a port found free may be taken before the
        server binds it (its DNS binds TCP as well as UDP, where another test's connection may
        sit): the first start then tries other ports, a few times. A restart keeps its ports."""
        for _ in range(_PORT_TRIES - 1):
            try:
                super().start()
                break
            except RuntimeError as error:
                if self._started or self.netns is not None or "already in use" not in str(error):
                    raise
                self._configure(self.http_port, self.dns_port)
        else:
            super().start()
        self._started = True

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

    def command(self) -> list[str]:
        return [self.binary, "--config", str(self.config_path)]

    def process_env(self) -> dict[str, str]:
        # It keeps state under $HOME/.local/share.
        return {"HOME": str(self.workdir / "home"), "RUST_LOG": "info"}


@pytest.fixture
def iroh_dns(tmp_path: Path) -> Iterator[IrohDnsServer]:
    """A real iroh-dns-server on 127.0.0.1, killed when the test ends."""
    with IrohDnsServer(require_dns_server(), tmp_path / "iroh-dns-server") as server:
        yield server
