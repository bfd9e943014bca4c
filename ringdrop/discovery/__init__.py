"""Finding a peer by its key: this node's signed address record published on pkarr relays
(iroh's format, n0's `dns.iroh.link` by default, or a self-hosted `iroh-dns-server`), and
other peers' records looked up over HTTP and DNS."""

from ringdrop.discovery.publish import REPUBLISH_INTERVAL, Published, Publisher, Timestamps
from ringdrop.discovery.record import Record, dns_name, sign, verify_payload, z32_encode
from ringdrop.discovery.resolve import Lookup, Resolver, Services, relay_allowed

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
