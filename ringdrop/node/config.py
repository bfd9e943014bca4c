"""The node's settings: the file in the data directory (the listening port, chosen once and kept
so that printed tickets stay valid across restarts; the home relay last chosen; whether received
content keeps a private copy in the store, `keep_received`, default false: the store hands its
copy over to the export; whether `serve` publishes its addresses in its discovery record,
`publish_addresses`, default false; how much of the logs a serving node keeps, `log_keep_days`
and `log_keep_entries`, default 90 days and 100,000 entries each; whether it serves what it received
under a ring to the ring's other members, `serve_rings`, default true; its upload rate limit,
`limit_rate` in bytes a second, default none), the relay, STUN and
discovery servers, and which relays named by others (a ticket's, a record's) may be used: from
the command line, else the environment, else the defaults."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import re
import socket
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from ringdrop.access import Retention
from ringdrop.discovery import Services
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
# n0's pkarr relay and the DNS zone its server answers for (iroh's N0_DNS_PKARR_RELAY_PROD and
# N0_DNS_ENDPOINT_ORIGIN_PROD).
DEFAULT_DISCOVERY: tuple[str, ...] = ("https://dns.iroh.link/pkarr",)
DEFAULT_DNS_ORIGIN = "dns.iroh.link"
DISCOVERY_ENV = "RINGDROP_DISCOVERY"
DISCOVERY_DNS_ENV = "RINGDROP_DISCOVERY_DNS"
DNS_PORT = 53
RELAY_ENV = "RINGDROP_RELAY"
STUN_ENV = "RINGDROP_STUN"
RELAY_POLICY_ENV = "RINGDROP_RELAY_POLICY"
RelayPolicy = Literal["public", "any"]
RELAY_POLICIES: tuple[RelayPolicy, ...] = ("public", "any")
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
    publish_addresses: bool = False
    """Publish this node's addresses in its discovery record, not only its home relay."""
    log_keep_days: float = Retention.days
    """The access and upload logs keep no entry older than this many days…"""
    log_keep_entries: int = Retention.entries
    """…and each at most this many entries (a peer's repeated denials are one)."""
    serve_rings: bool = True
    """Serve content received under a ring to the ring's other members, where the ring's
    manifest lets members serve; false refuses for this node whatever the owner allows."""
    limit_rate: int | None = None
    """Upload bytes a second for all peers together; None: no limit."""

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
            publish = raw.get("publish_addresses", False)
            if not isinstance(publish, bool):
                raise ValueError(f"publish_addresses must be true or false, not {publish!r}")
            days = raw.get("log_keep_days", Retention.days)
            entries = raw.get("log_keep_entries", Retention.entries)
            if isinstance(days, bool) or not isinstance(days, int | float):
                raise ValueError(f"log_keep_days must be a number, not {days!r}")
            if isinstance(entries, bool) or not isinstance(entries, int):
                raise ValueError(f"log_keep_entries must be a whole number, not {entries!r}")
            Retention(days, entries)  # raises ValueError for values out of range
            serve_rings = raw.get("serve_rings", True)
            if not isinstance(serve_rings, bool):
                raise ValueError(f"serve_rings must be true or false, not {serve_rings!r}")
            limit = raw.get("limit_rate")
            if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                      or limit <= 0):  # fmt: skip
                raise ValueError(f"limit_rate must be a positive whole number, not {limit!r}")
            # Only a remembered choice: a bad value is forgotten, not an error.
            home_relay = raw.get("home_relay")
            relay = home_relay if isinstance(home_relay, str) else None
            return cls(
                port=port,
                home_relay=relay,
                keep_received=keep,
                publish_addresses=publish,
                log_keep_days=float(days),
                log_keep_entries=entries,
                serve_rings=serve_rings,
                limit_rate=limit,
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
    """The relay URLs to use: `given` if not None, else $RINGDROP_RELAY (comma-separated) if
    set and not empty, else `DEFAULT_RELAYS`; `disabled` alone gives none."""
    values, variable = _choose(given, RELAY_ENV, environ)
    if values is None:
        return DEFAULT_RELAYS
    enabled = _enabled(values, "relay", variable)
    return tuple(dict.fromkeys(relay_url(value, variable) for value in enabled))


def stun_servers_from(
    given: Iterable[str | StunServer] | None, environ: Mapping[str, str] | None = None
) -> tuple[StunServer, ...]:
    """The STUN servers to use, chosen like `relays_from` (`given`, else $RINGDROP_STUN)."""
    texts = (
        None if given is None else [v if isinstance(v, str) else _join_host_port(*v) for v in given]
    )
    values, variable = _choose(texts, STUN_ENV, environ)
    if values is None:
        values = list(DEFAULT_STUN)
    enabled = _enabled(values, "stun", variable)
    return tuple(dict.fromkeys(stun_server(value, variable) for value in enabled))


def discovery_from(
    given: Iterable[str] | None, environ: Mapping[str, str] | None = None
) -> Services:
    """Where to publish and look up records: the pkarr relays of `given` if not None, else
    $RINGDROP_DISCOVERY (comma-separated), else n0's; `disabled` alone turns discovery off.
    DNS lookups go to $RINGDROP_DISCOVERY_DNS (`ORIGIN`, or `ORIGIN@HOST:PORT` to ask that
    server directly; `disabled`), else to n0's zone when n0's relay is used, and nowhere when
    other relays are: a self-hosted service is not leaked to n0."""
    values, variable = _choose(given, DISCOVERY_ENV, environ)
    if values is None:
        pkarr = DEFAULT_DISCOVERY
    else:
        enabled = _enabled(values, "discovery", variable)
        pkarr = tuple(dict.fromkeys(_service_url(v, variable) for v in enabled))
        if not pkarr:
            return Services()
    dns_values, _ = _choose(None, DISCOVERY_DNS_ENV, environ)
    if dns_values is None:
        origin = DEFAULT_DNS_ORIGIN if pkarr == DEFAULT_DISCOVERY else None
        return Services(pkarr, origin)
    enabled = _enabled(dns_values, "discovery-dns", DISCOVERY_DNS_ENV)
    if len(enabled) > 1:
        raise _bad("discovery-dns", DISCOVERY_DNS_ENV, f"give one DNS origin, not {len(enabled)}.")
    if not enabled:
        return Services(pkarr)
    origin, at, server = enabled[0].partition("@")
    host, colon, port = server, "", ""
    if server.startswith("["):
        host, _, after = server[1:].partition("]")
        colon, port = after[:1], after[1:]
    elif server.count(":") == 1:
        host, colon, port = server.partition(":")
    problem = _host_problem(origin.rstrip(".")) or (_host_problem(host) if at else None)
    if problem is None and colon and not (port.isdigit() and 0 < int(port) < 65536):
        problem = f"its port {port!r} is not a number from 1 to 65535"
    if problem is not None:
        raise _bad(
            "discovery-dns",
            DISCOVERY_DNS_ENV,
            f"{enabled[0]!r} is not a DNS origin: {problem}. Give the zone, such as "
            f"dns.example.org, optionally @HOST:PORT of its server, or {DISABLED!r}.",
        )
    dns_server = (host, int(port) if colon else DNS_PORT) if at else None
    return Services(pkarr, origin.rstrip(".").lower(), dns_server)


def _service_url(text: str, variable: str | None) -> str:
    """A pkarr relay's base URL (http or https, a host, no user), without a trailing `/`."""
    url = text.strip()
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        parts = None
    if (
        parts is None
        or parts.scheme.lower() not in ("http", "https")
        or not parts.hostname
        or "@" in parts.netloc
        or parts.query
        or parts.fragment
    ):
        raise _bad(
            "discovery",
            variable,
            f"{url!r} is not a discovery service. Give the http:// or https:// URL of a pkarr "
            f"relay such as {DEFAULT_DISCOVERY[0]}, or {DISABLED!r} to turn discovery off.",
        )
    return url.rstrip("/")


def relay_url(text: str, variable: str | None = None) -> str:
    """`text` as a relay URL: scheme lower-cased, `/` added when it has no path; else a
    `SettingsError` that names the environment `variable` it came from, if one did."""
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
        raise _bad(
            "relay",
            variable,
            f"{error} Give an http:// or https:// URL such as https://relay.example.net/, or "
            f"{DISABLED!r} to turn relaying off.",
        ) from None


def relay_policy_from(given: str | None, environ: Mapping[str, str] | None = None) -> RelayPolicy:
    """Which relays named by others may be used: `given`, else $RINGDROP_RELAY_POLICY, else
    `public` (see `TicketRelay`)."""
    variable = None if given is not None else RELAY_POLICY_ENV
    text = (
        given
        if given is not None
        else (os.environ if environ is None else environ).get(RELAY_POLICY_ENV, "")
    )
    value = text.strip().lower() or "public"
    for policy in RELAY_POLICIES:
        if value == policy:
            return policy
    raise _bad(
        "relay-policy",
        variable,
        f"{text!r} is not a relay policy: give 'public' (relays named by a ticket are used only "
        "at public https:// addresses, the default) or 'any'.",
    )


@dataclass(frozen=True)
class TicketRelay:
    """What to do with the relay a ticket names: dial `url` (None: none, or refused), which
    must then resolve to public addresses if `public_only`; `refused` says why it is not used."""

    url: str | None
    public_only: bool = False
    refused: str | None = None

    @classmethod
    def of(cls, url: str | None, configured: Sequence[str], policy: RelayPolicy) -> TicketRelay:
        """A ticket's relay is dialled as named when it is one of the `configured` relays (the
        user chose those) or the policy is `any`; otherwise only if it is `https://` and at a
        public address — checked again when its name is resolved, so that a ticket cannot
        make this node connect to its own machine or network (a blind request forgery)."""
        if url is None or not configured:
            return cls(None)
        try:
            normal = relay_url(url)
        except SettingsError:
            return cls(None, refused=f"The ticket's relay {url!r} is not a relay URL.")
        if normal in configured or policy == "any":
            return cls(normal)
        parts = urlsplit(normal)
        why = None
        if parts.scheme != "https":
            why = "it is not an https:// URL"
        else:
            try:
                ip = ipaddress.ip_address(parts.hostname or "")
            except ValueError:
                ip = None
            if ip is not None and not ip.is_global:
                why = "it is not at a public address"
        if why is not None:
            return cls(
                None,
                refused=f"The ticket's relay {normal} was not used: {why}, and it is not one "
                "of the relays configured here.",
            )
        return cls(normal, public_only=True)


def stun_server(text: str, variable: str | None = None) -> StunServer:
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
        raise _bad(
            "stun",
            variable,
            f"{value!r} is not a STUN server: {problem}. Give HOST:PORT such as "
            f"stun.example.net:3478 or [2001:db8::1]:3478, or {DISABLED!r} to turn STUN off.",
        )
    return host, int(port_text) if port_text else STUN_PORT


def _choose(
    given: Iterable[str] | None, variable: str, environ: Mapping[str, str] | None
) -> tuple[list[str] | None, str | None]:
    """The raw values, None when neither `given` nor the variable sets them, and the variable
    they came from (None: `given`)."""
    if given is not None:
        return list(given), None
    text = (os.environ if environ is None else environ).get(variable, "")
    values = [item.strip() for item in text.split(",") if item.strip()]
    return (values or None), variable


def _enabled(values: list[str], setting: str, variable: str | None) -> list[str]:
    """`values` without the `disabled` switch: no values if it is the one value, else an error."""
    disabled = [value for value in values if value.strip().lower() == DISABLED]
    if not disabled:
        return values
    if len(values) > 1:
        raise _bad(
            setting,
            variable,
            f"{DISABLED!r} turns it off, so it must be the only value, not one of {len(values)}.",
        )
    return []


# How a message names a setting given by the caller; one from the environment is named by its
# variable. The CLI names the option instead (`ringdrop.cli.exits`).
_SETTING_WORDS = {
    "relay": "the relay setting",
    "stun": "the STUN setting",
    "discovery": "the discovery setting",
    "relay-policy": "the relay policy",
}


def _bad(setting: str, variable: str | None, problem: str) -> SettingsError:
    source = variable or _SETTING_WORDS[setting]
    return SettingsError(
        f"{source}: {problem}", setting=setting, variable=variable, problem=problem
    )


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
