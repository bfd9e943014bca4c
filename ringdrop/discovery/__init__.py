"""Finding a peer by its key: this node's signed address record published on pkarr relays
(iroh's format, n0's `dns.iroh.link` by default, or a self-hosted `iroh-dns-server`), and
other peers' records looked up over HTTP and DNS."""

import importlib
from typing import TYPE_CHECKING

from ringdrop.discovery.record import Record, dns_name, sign, verify_payload, z32_encode
from ringdrop.discovery.resolve import Lookup, Resolver, Services, relay_allowed

if TYPE_CHECKING:
    from ringdrop.discovery.publish import REPUBLISH_INTERVAL, Published, Publisher, Timestamps

# Publishing's names are imported when first used: only `serve` publishes, and a command that
# looks peers up (`get`) does not load it to start.
_PUBLISH = frozenset({"REPUBLISH_INTERVAL", "Published", "Publisher", "Timestamps"})

__all__ = [
    "REPUBLISH_INTERVAL",
    "Lookup",
    "Published",
    "Publisher",
    "Record",
    "Resolver",
    "Services",
    "Timestamps",
    "dns_name",
    "relay_allowed",
    "sign",
    "verify_payload",
    "z32_encode",
]


def __getattr__(name: str) -> object:
    if name not in _PUBLISH:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module("ringdrop.discovery.publish"), name)
    globals()[name] = value
    return value
