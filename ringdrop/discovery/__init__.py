"""Finding a peer by its key: this node's signed address record published on pkarr relays
(iroh's format, n0's `dns.iroh.link` by default, or a self-hosted `iroh-dns-server`), and
other peers' records looked up over HTTP and DNS."""

from typing import TYPE_CHECKING

from ringdrop._lazy import lazy_names
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


__getattr__ = lazy_names(__name__, dict.fromkeys(_PUBLISH, "ringdrop.discovery.publish"))
