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

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.server_process import Program, ServerProcess, free_port

__all__ = [
    "IROH_RELAY_VERSION",
    "IrohRelay",
    "find_iroh_relay",
    "free_port",
    "iroh_relay",
    "require_iroh_relay",
]

IROH_RELAY_VERSION = "1.0.3"


_PROGRAM = Program(
    "IROH_RELAY_BIN",
    "iroh-relay",
    IROH_RELAY_VERSION,
    f"cargo install iroh-relay --version {IROH_RELAY_VERSION} --features server --locked",
)
find_iroh_relay = _PROGRAM.find
require_iroh_relay = _PROGRAM.require


class IrohRelay(ServerProcess):
    """One iroh-relay process on `host:port` (a free port by default), restartable there.

    With `netns`, the server runs in that network namespace (`ip netns exec`), `host` being
    one of its addresses; `port` must then be given. `config` is appended to the TOML file
    (for instance `access.denylist = ["<hex key>"]`).
    """

    NAME = "iroh-relay"
    # The line the server logs once its listener is bound (iroh_relay::server::http_server).
    SERVING = re.compile(r"relay: serving on (\S+)")

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
        super().__init__(binary, workdir, host, netns)
        self.port = port
        bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        # Dev mode serves plain HTTP and needs no TLS; QUIC address discovery (which would need
        # TLS) is off unless asked for, and metrics would take another port.
        self.config_path.write_text(
            f'http_bind_addr = "{bind}"\nenable_metrics = false\n'
            f"enable_quic_addr_discovery = false\n{config}\n"
        )

    @property
    def url(self) -> str:
        """The relay URL as a ticket would carry it."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def command(self) -> list[str]:
        return [self.binary, "--dev", "--config-path", str(self.config_path)]

    def process_env(self) -> dict[str, str]:
        return {"RUST_LOG": "warn,iroh_relay::server::http_server=info"}


@pytest.fixture
def iroh_relay(tmp_path: Path) -> Iterator[IrohRelay]:
    """A real iroh-relay on 127.0.0.1 (a free port), killed when the test ends; `.url`."""
    with IrohRelay(require_iroh_relay(), tmp_path / "iroh-relay") as relay:
        yield relay
