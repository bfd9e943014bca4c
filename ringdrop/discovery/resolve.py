"""Looking a peer up by its key: `GET <pkarr relay>/<z32 key>` on every configured pkarr relay
and a DNS TXT query for `_iroh.<z32 key>.<origin>`, at once, bounded in time and size; the
newest signed record wins, and what was found is kept for the record's TTL.

A DNS answer is not signed (DNS carries the record's text, not its signature), so it is used
only when no pkarr relay gave a signed record. Either way a record is only a hint: the QUIC
handshake still proves the key, so a forged record can cost a failed dial, never a transfer.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from ringdrop.discovery.record import (
    DEFAULT_TTL,
    MAX_PAYLOAD,
    Record,
    dns_name,
    parse_txt,
    verify_payload,
    z32_encode,
)
from ringdrop.errors import DiscoveryError, InvalidRecordError
from ringdrop.identity import PeerId

# httpx and dnspython are imported where they are used: they take about 0.1 s to load, and a
# command that looks up no key (most `get`s: their tickets name addresses) must not wait for it.
if TYPE_CHECKING:
    import httpx

__all__ = ["LOOKUP_TIMEOUT", "Lookup", "Resolver", "Services", "relay_allowed"]

_log = logging.getLogger("ringdrop.discovery")

LOOKUP_TIMEOUT = 5.0
"""A lookup's whole time, every service at once."""
GRACE = 0.5
"""Once one signed record is in, how long the other pkarr relays may still offer a newer one
(the DNS answer, unsigned, is not waited for once such a record would be chosen over it)."""
MAX_TXT_RECORDS = 64
"""TXT strings read from one DNS answer."""
MAX_TTL = 3600
"""However long a record asks to be kept, it is asked for again after this many seconds."""
_CACHED_PEERS = 256


@dataclass(frozen=True)
class Services:
    """Where records are published and looked up: pkarr relay base URLs (`…/pkarr`), and the
    DNS origin under which a DNS server answers for them, optionally with the server to ask
    directly instead of this machine's resolver (host, port)."""

    pkarr: tuple[str, ...] = ()
    dns_origin: str | None = None
    dns_server: tuple[str, int] | None = None

    @property
    def enabled(self) -> bool:
        return bool(self.pkarr) or self.dns_origin is not None

    def where(self) -> str:
        places = list(self.pkarr)
        if self.dns_origin is not None:
            places.append(f"DNS {self.dns_origin}")
        return ", ".join(places) or "nowhere"


@dataclass(frozen=True)
class Lookup:
    """A lookup's outcome: the record to use, if any, and a line for each service that gave
    none or one that was refused."""

    record: Record | None
    problems: tuple[str, ...] = ()

    def error(self, peer_id: PeerId) -> DiscoveryError:
        reasons = "; ".join(self.problems) or "no service answered"
        return DiscoveryError(
            f"Could not find {peer_id.short()}… by its key ({reasons}).", peer=str(peer_id)
        )


def relay_allowed(url: str, configured: Iterable[str]) -> bool:
    """Whether a relay URL that came from a record may be dialled: one of this node's own
    relays always; any other only over https and named by a host that is not a loopback,
    private or link-local address, so that a record cannot send this node to plain-text
    relays or into its own network."""
    if url in configured:
        return True
    parts = urlsplit(url)
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme != "https" or not host or host == "localhost" or host.endswith(".localhost"):
        return False
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return True
    return ip.is_global


def _sort(
    task: asyncio.Task[Record | None],
    where: str,
    signed: list[Record],
    unsigned: list[Record],
    problems: list[str],
) -> None:
    """Puts what the lookup `task` at `where` found into `signed` (pkarr), `unsigned` (DNS) or
    `problems`."""
    try:
        found = task.result()
    except DiscoveryError as error:
        problems.append(f"{where}: {error}")
        if isinstance(error, InvalidRecordError):
            _log.warning("ignored the record from %s: %s", where, error)
        return
    if found is None:
        problems.append(f"{where}: no record")
    elif where.startswith("DNS "):
        unsigned.append(found)
    else:
        signed.append(found)


class Resolver:
    """Looks peers up on `services`, remembering what it found for the record's TTL.

    `allow_relay(url)` says whether a relay a record names may be dialled: the node passes the
    policy it applies to a ticket's relay; by default, `relay_allowed` with `relays` (this
    node's own relays). A lookup takes at most `timeout`, and at most `grace` more once a signed
    record is in. One resolver serves one event loop at a time; its cache is bounded (the peers
    looked up last)."""

    def __init__(
        self,
        services: Services,
        *,
        relays: Sequence[str] = (),
        allow_relay: Callable[[str], bool] | None = None,
        timeout: float = LOOKUP_TIMEOUT,
        grace: float = GRACE,
    ) -> None:
        self.services = services
        configured = tuple(relays)
        self._allow_relay = allow_relay or (lambda url: relay_allowed(url, configured))
        self._timeout = timeout
        self._grace = grace
        # peer -> (record, monotonic time it expires); expired entries still hold the newest
        # timestamp seen, so that an older record is recognised as such.
        self._cache: OrderedDict[PeerId, tuple[Record, float]] = OrderedDict()

    def cached(self, peer_id: PeerId) -> Record | None:
        """The record found for `peer_id` whose TTL has not run out, if any."""
        entry = self._cache.get(peer_id)
        if entry is None or entry[1] <= time.monotonic():
            return None
        return entry[0]

    def forget(self, peer_id: PeerId) -> None:
        self._cache.pop(peer_id, None)

    async def lookup(self, peer_id: PeerId) -> Lookup:
        """Asks every service at once; the newest signed record (else the DNS answer)."""
        import httpx

        pending: set[asyncio.Task[Record | None]] = set()
        sources: dict[asyncio.Task[Record | None], str] = {}
        async with httpx.AsyncClient(
            timeout=self._timeout, follow_redirects=False, headers={"User-Agent": "ringdrop"}
        ) as client:
            for url in self.services.pkarr:
                task = asyncio.create_task(self._pkarr(client, url, peer_id))
                pending.add(task)
                sources[task] = url
            if self.services.dns_origin is not None:
                task = asyncio.create_task(self._dns(peer_id))
                pending.add(task)
                sources[task] = f"DNS {self.services.dns_origin}"
            signed: list[Record] = []
            unsigned: list[Record] = []
            problems: list[str] = []
            deadline = asyncio.get_running_loop().time() + self._timeout
            moot = False
            try:
                while pending:
                    left = deadline - asyncio.get_running_loop().time()
                    if signed:
                        moot = self._dns_moot(peer_id, signed, [sources[t] for t in pending])
                        if moot:
                            break
                        left = min(left, self._grace)
                    if left <= 0:
                        break
                    done, pending = await asyncio.wait(
                        pending, timeout=left, return_when=asyncio.FIRST_COMPLETED
                    )
                    if not done:
                        break
                    for task in done:
                        _sort(task, sources[task], signed, unsigned, problems)
            finally:
                for task in pending:
                    task.cancel()
                    why = "not waited for: a signed record was in" if moot else "no answer in time"
                    problems.append(f"{sources[task]}: {why}")
                for task in pending:
                    with contextlib.suppress(BaseException):
                        await task
        return self._choose(peer_id, signed, unsigned, problems)

    def _dns_moot(self, peer_id: PeerId, signed: list[Record], waiting: list[str]) -> bool:
        """Whether only DNS is still to answer and a signed record in hand would be chosen over
        its unsigned answer: one not older than a record seen before, naming no relay this
        node may not dial."""
        newest_seen = self._cache[peer_id][0].timestamp if peer_id in self._cache else 0
        return all(w.startswith("DNS ") for w in waiting) and any(
            r.timestamp >= newest_seen and (r.relay is None or self._allow_relay(r.relay))
            for r in signed
        )

    def _choose(
        self, peer_id: PeerId, signed: list[Record], unsigned: list[Record], problems: list[str]
    ) -> Lookup:
        newest_seen = self._cache[peer_id][0].timestamp if peer_id in self._cache else 0
        fresh = [r for r in signed if r.timestamp >= newest_seen]
        if len(fresh) < len(signed):
            stale = "a record older than one already seen; ignored"
            problems.append(stale)
            _log.warning("%s for %s", stale, peer_id.short())
        candidates = sorted(fresh, key=lambda r: r.timestamp, reverse=True) + unsigned
        for record in candidates:
            usable = self._usable(record, problems)
            if not usable.empty:
                self._remember(usable, signed=record in fresh)
                return Lookup(usable, tuple(problems))
        return Lookup(None, tuple(problems))

    def _usable(self, record: Record, problems: list[str]) -> Record:
        """`record` without a relay this node may not dial."""
        if record.relay is None or self._allow_relay(record.relay):
            return record
        problems.append(
            f"the record names the relay {record.relay}, which the relay policy here does not "
            "allow (not https on a public host, nor one of this node's relays); not used"
        )
        _log.warning("%s", problems[-1])
        return replace(record, relay=None)

    def _remember(self, record: Record, *, signed: bool) -> None:
        ttl = min(max(record.ttl, 1), MAX_TTL)
        kept = self._cache.get(record.peer_id)
        if not signed and kept is not None:
            # An unsigned answer has no timestamp: keep the newest signed one's for comparison.
            record = replace(record, timestamp=kept[0].timestamp)
        self._cache[record.peer_id] = (record, time.monotonic() + ttl)
        self._cache.move_to_end(record.peer_id)
        while len(self._cache) > _CACHED_PEERS:
            self._cache.popitem(last=False)

    async def _pkarr(self, client: httpx.AsyncClient, base: str, peer_id: PeerId) -> Record | None:
        import httpx

        url = f"{base.rstrip('/')}/{z32_encode(peer_id.raw)}"
        try:
            async with client.stream("GET", url) as response:
                if response.status_code == 404:
                    return None
                if response.status_code != 200:
                    raise DiscoveryError(f"HTTP status {response.status_code}")
                body = bytearray()
                async for piece in response.aiter_raw():
                    body += piece
                    if len(body) > MAX_PAYLOAD:
                        raise InvalidRecordError(
                            f"the record is larger than the {MAX_PAYLOAD} bytes a record may have"
                        )
        except httpx.HTTPError as error:
            raise DiscoveryError(_http_problem(error)) from None
        return verify_payload(peer_id, bytes(body))

    async def _dns(self, peer_id: PeerId) -> Record | None:
        import dns.asyncresolver
        import dns.exception
        import dns.rdatatype
        import dns.resolver

        origin = self.services.dns_origin
        assert origin is not None
        server = self.services.dns_server
        resolver = dns.asyncresolver.Resolver(configure=server is None)
        if server is not None:
            resolver.nameservers = [server[0]]
            resolver.port = server[1]
        name = dns_name(peer_id, origin)
        try:
            answer = await resolver.resolve(
                name, dns.rdatatype.TXT, lifetime=self._timeout, raise_on_no_answer=False
            )
        except dns.resolver.NXDOMAIN:
            return None
        except dns.exception.DNSException as error:
            raise DiscoveryError(f"the DNS query failed ({error})") from None
        strings = [b"".join(txt.strings) for txt in answer][:MAX_TXT_RECORDS]
        if not strings:
            return None
        ttl = answer.rrset.ttl if answer.rrset is not None else DEFAULT_TTL
        relay, addresses = parse_txt(strings)
        return Record(peer_id, relay, addresses, 0, ttl)


def _http_problem(error: httpx.HTTPError) -> str:
    import httpx

    if isinstance(error, httpx.TimeoutException):
        return "no answer in time"
    return f"the request failed ({type(error).__name__}: {error})"
