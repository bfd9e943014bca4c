"""The node's settings file in the data directory: the listening port, chosen once and kept so
that printed tickets stay valid across restarts; whether received content keeps a private copy
in the store (`keep_received`, default false: the store hands its copy over to the export)."""

from __future__ import annotations

import json
import os
import random
import socket
from dataclasses import asdict, dataclass
from pathlib import Path

from ringdrop.errors import StoreError

CONFIG_FILE = "config.json"
# Above the registered ports, below the usual ephemeral range, so the OS rarely takes ours.
_PORT_RANGE = (20_000, 32_000)


@dataclass(frozen=True)
class Config:
    port: int
    keep_received: bool = False
    """Keep a private copy of received content in the store, as `get --keep` does."""

    @classmethod
    def load_or_create(cls, data_dir: Path) -> Config:
        path = data_dir / CONFIG_FILE
        try:
            raw = json.loads(path.read_text())
            port = int(raw["port"])
            if not 0 < port < 65536:
                raise ValueError(port)
            keep = raw.get("keep_received", False)
            if not isinstance(keep, bool):
                raise ValueError(f"keep_received must be true or false, not {keep!r}")
            return cls(port=port, keep_received=keep)
        except FileNotFoundError:
            pass
        except (ValueError, KeyError, TypeError) as error:
            raise StoreError(
                f"{path} is damaged ({error!r}); fix it or delete it to choose a new port "
                "(tickets printed before then name the old port)."
            ) from error
        config = cls(port=_free_udp_port())
        config.save(data_dir)
        return config

    def save(self, data_dir: Path) -> None:
        path = data_dir / CONFIG_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(asdict(self), indent=1) + "\n")
        os.replace(temporary, path)


def _free_udp_port() -> int:
    for _ in range(50):
        port = random.randint(*_PORT_RANGE)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("0.0.0.0", port))  # noqa: S104 - only a probe, closed at once
            except OSError:
                continue
        return port
    raise StoreError("could not find a free UDP port to listen on")
