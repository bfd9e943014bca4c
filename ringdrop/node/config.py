"""The node's settings: the file in the data directory (the listening port, chosen once and kept
so that printed tickets stay valid across restarts; the home relay last chosen; whether received
content keeps a private copy in the store, `keep_received`, default false: the store hands its
copy over to the export; how much of the logs a serving node keeps, `log_keep_days` and
`log_keep_entries`, default 90 days and 100,000 entries each), and the relay and STUN servers,
from the command line, else the environment, else the defaults."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ringdrop.access import Retention
from ringdrop.errors import InvalidTicketError, SettingsError, StoreError
from ringdrop.store.files import replace_atomically
from ringdrop.ticket import check_relay_url

# n0's public iroh relays (iroh 1.x defaults: North America east and west, Europe, Asia-Pacific).
DEFAULT_RELAYS = (
    "https://use1-1.relay.n0.iroh.link/",
    "https://usw1-1.relay.n0.iroh.link/",
    "https://euc1-1.relay.n0.iroh.link/",
    "https://aps1-1.relay.n0.iroh.link/",
)
DEFAULT_STUN = ("stun.l.google.com:19302", "stun.cloudflare.com:3478")
RELAY_ENV = "RINGDROP_RELAY"
STUN_ENV = "RINGDROP_STUN"
# The one value that turns relaying (or STUN) off.
DISABLED = "disabled"
STUN_PORT = 3478  # RFC 8489's default, when HOST:PORT leaves out the port

StunServer = tuple[str, int]
_HOST_NAME = re.compile(
    r"[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*\.?"
)

CONFIG_FILE = "config.json"
# Above the registered ports, below the usual ephemeral range, so the OS rarely takes ours.
_PORT_RANGE = (20_000, 32_000)


@dataclass(frozen=True)
class Config:
    """config.json: `port`, and `home_relay`, the relay URL chosen last (None before any)."""

    port: int
    home_relay: str | None = None
    keep_received: bool = False
    """Keep a private copy of received content in the store, as `get --keep` does."""
    log_keep_days: float = Retention.days
    """The access and upload logs keep no entry older than this many days…"""
    log_keep_entries: int = Retention.entries
    """…and each at most this many entries (a peer's repeated denials are one)."""

    @property
    def retention(self) -> Retention:
        return Retention(self.log_keep_days, self.log_keep_entries)

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
            days = raw.get("log_keep_days", Retention.days)
            entries = raw.get("log_keep_entries", Retention.entries)
            if isinstance(days, bool) or not isinstance(days, int | float):
                raise ValueError(f"log_keep_days must be a number, not {days!r}")
            if isinstance(entries, bool) or not isinstance(entries, int):
                raise ValueError(f"log_keep_entries must be a whole number, not {entries!r}")
            Retention(days, entries)  # raises ValueError for values out of range
            # Only a remembered choice: a bad value is forgotten, not an error.
            home_relay = raw.get("home_relay")
            relay = home_relay if isinstance(home_relay, str) else None
            return cls(
                port=port,
                home_relay=relay,
                keep_received=keep,
                log_keep_days=float(days),
                log_keep_entries=entries,
            )
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
        replace_atomically(
            data_dir / CONFIG_FILE, (json.dumps(asdict(self), indent=1) + "\n").encode()
        )


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


def relays_from(
    given: Iterable[str] | None, environ: Mapping[str, str] | None = None
) -> tuple[str, ...]:
    """The relay URLs to use: `given` (from --relay) if not None, else $RINGDROP_RELAY
    (comma-separated) if set and not empty, else `DEFAULT_RELAYS`; `disabled` alone gives none."""
    values, source = _choose(given, RELAY_ENV, "--relay", environ)
    if values is None:
        return DEFAULT_RELAYS
    return tuple(dict.fromkeys(relay_url(value, source) for value in _enabled(values, source)))


def stun_servers_from(
    given: Iterable[str | StunServer] | None, environ: Mapping[str, str] | None = None
) -> tuple[StunServer, ...]:
    """The STUN servers to use, chosen like `relays_from` (from --stun and $RINGDROP_STUN)."""
    texts = (
        None if given is None else [v if isinstance(v, str) else _join_host_port(*v) for v in given]
    )
    values, source = _choose(texts, STUN_ENV, "--stun", environ)
    if values is None:
        values = list(DEFAULT_STUN)
    return tuple(dict.fromkeys(stun_server(value, source) for value in _enabled(values, source)))


def relay_url(text: str, source: str = "--relay") -> str:
    """`text` as a relay URL: scheme lower-cased, `/` added when it has no path; else a
    `SettingsError` that names `source` (the option or variable it came from)."""
    url = text.strip()
    scheme, sep, rest = url.partition("://")
    url = scheme.lower() + sep + rest
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is not None and not (parts.path or parts.query or parts.fragment):
        url += "/"
    try:
        return check_relay_url(url)
    except InvalidTicketError as error:
        raise SettingsError(
            f"{source}: {error} Give an http:// or https:// URL such as "
            f"https://relay.example.net/, or {DISABLED!r} to turn relaying off."
        ) from None


def stun_server(text: str, source: str = "--stun") -> StunServer:
    """`HOST:PORT` (or `HOST`, for port 3478; an IPv6 address in brackets) as (host, port)."""
    value = text.strip()
    host, colon, port_text = value, "", ""
    if value.startswith("["):
        host, bracket, after = value[1:].partition("]")
        colon, port_text = after[:1], after[1:]
        if not bracket or colon not in ("", ":"):
            host = ""
    elif value.count(":") == 1:
        host, colon, port_text = value.partition(":")
    problem = _host_problem(host)
    valid_port = port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536
    if problem is None and colon and not valid_port:
        problem = f"its port {port_text!r} is not a number from 1 to 65535"
    if problem is not None:
        raise SettingsError(
            f"{source}: {value!r} is not a STUN server: {problem}. Give HOST:PORT such as "
            f"stun.example.net:3478 or [2001:db8::1]:3478, or {DISABLED!r} to turn STUN off."
        )
    return host, int(port_text) if port_text else STUN_PORT


def _choose(
    given: Iterable[str] | None, variable: str, option: str, environ: Mapping[str, str] | None
) -> tuple[list[str] | None, str]:
    """The raw values and where they came from; None when neither option nor variable is set."""
    if given is not None:
        return list(given), option
    text = (os.environ if environ is None else environ).get(variable, "")
    values = [item.strip() for item in text.split(",") if item.strip()]
    return (values or None), variable


def _enabled(values: list[str], source: str) -> list[str]:
    """`values` without the `disabled` switch: no values if it is the one value, else an error."""
    disabled = [value for value in values if value.strip().lower() == DISABLED]
    if not disabled:
        return values
    if len(values) > 1:
        raise SettingsError(
            f"{source}: {DISABLED!r} turns it off, so it must be the only value, not one of "
            f"{len(values)}."
        )
    return []


def _host_problem(host: str) -> str | None:
    if not host:
        return "it names no host"
    try:
        ipaddress.ip_address(host)
        return None
    except ValueError:
        pass
    if len(host) > 253 or not _HOST_NAME.fullmatch(host):
        return f"{host!r} is not a host name or IP address"
    return None


def _join_host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
