"""A connection's candidate direct paths as a sans-IO machine: which addresses may be tried, each
one's state (new, alive, dead) moved by one table, and the budgets that bound what a peer can
make this node send. Every input carries `now`; the output is the list of pings to send.

Where candidates come from: the address a client dialled (or a server's connection arrived
from), the CANDIDATES a peer offered over the authenticated connection, and addresses a valid
ping came from (peer-reflexive, as in ICE). A peer's word is not trusted with this node's
traffic: an offered address is refused when no other machine could be meant by it (loopback,
multicast, unspecified, IPv6 link-local without a zone) or when it is this node's own, and each
connection holds at most `MAX_CANDIDATES`, dead ones included, so a peer cannot cycle through
addresses. A candidate that never answers is pinged `PROBE_TRIES` times, then never again
(consent, RFC 7675: a path that stops answering is dead for good, and so are its pings). Pings to
addresses not yet validated are paced per connection (`PINGS_PER_SECOND`); an address known only
from a ping that came from it is sent at most `AMPLIFICATION` times what came from it (RFC 9000
§8.1's rule for unvalidated addresses).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum, auto
from types import MappingProxyType
from typing import Literal

from ringdrop.protocol import MAX_CANDIDATES
from ringdrop.transport._admission import TokenBucket

__all__ = [
    "AMPLIFICATION",
    "DEAD_PINGS",
    "IDLE_KEEPALIVE",
    "KEEPALIVE",
    "PINGS_PER_SECOND",
    "PROBE_INTERVAL",
    "PROBE_TRIES",
    "TRANSITIONS",
    "Candidate",
    "CandidateSet",
    "Origin",
    "State",
    "Trigger",
    "refusal",
]

Address = tuple[str, int]

PROBE_INTERVAL = 0.25
"""Seconds between pings to a candidate that has not answered yet."""
PROBE_TRIES = 8
"""Pings to a new candidate before it is dead for good: two seconds of trying, long enough
for both sides' pings to cross in the NATs between them."""
KEEPALIVE = 1.0
"""Seconds between pings on the current direct path: NAT mappings stay open, death shows."""
IDLE_KEEPALIVE = 5.0
"""Seconds between pings on the other live direct paths."""
DEAD_PINGS = 3
"""Unanswered keepalive pings, with no datagram heard meanwhile, after which consent is lost."""
PINGS_PER_SECOND = 20.0
"""Pings one connection sends to addresses not yet validated, at most, on average."""
AMPLIFICATION = 3
"""An address known only from a ping that came from it gets at most this many times the bytes
that came from it."""


class State(Enum):
    """Where a candidate stands. DEAD is never left."""

    NEW = auto()
    ALIVE = auto()
    DEAD = auto()


class Trigger(Enum):
    """What moves a candidate, as tickets/PROTOCOL.md's table writes it."""

    PING = "ping due, tries left"
    TRIES_SPENT = "ping due, no tries left"
    PONG = "pong from it"
    KEEPALIVE = "keepalive due"
    CONSENT_LOST = f"keepalive due, {DEAD_PINGS} unanswered, nothing heard"
    HEARD = "QUIC datagram from it"
    UNREACHABLE = "network refuses to send to it"


TRANSITIONS = MappingProxyType(
    {
        (State.NEW, Trigger.PING): State.NEW,
        (State.NEW, Trigger.TRIES_SPENT): State.DEAD,
        (State.NEW, Trigger.PONG): State.ALIVE,
        (State.ALIVE, Trigger.KEEPALIVE): State.ALIVE,
        (State.ALIVE, Trigger.CONSENT_LOST): State.DEAD,
        (State.ALIVE, Trigger.PONG): State.ALIVE,
        (State.ALIVE, Trigger.HEARD): State.ALIVE,
        (State.NEW, Trigger.UNREACHABLE): State.DEAD,
        (State.ALIVE, Trigger.UNREACHABLE): State.DEAD,
    }
)
"""Every transition a candidate makes; a trigger its state does not list changes nothing (a
late pong to a dead candidate, a datagram from a new one)."""

Origin = Literal["dialled", "offered", "learnt"]
"""How a candidate became known: dialled by this side (or where a server's connection came
from), offered in the peer's CANDIDATES, or learnt from a ping that came from it."""


def refusal(host: str, own: Iterable[str] = ()) -> str | None:
    """Why a direct path to `host` may not be tried, or None: no other machine could be meant
    (loopback, multicast, unspecified, broadcast, reserved, IPv6 link-local without a zone)
    or it is one of this node's `own` addresses."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return "not an IP address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "a multicast or broadcast address"
    if ip.is_unspecified or ip in _THIS_NETWORK:
        return "an unspecified address"
    if ip.is_reserved:
        return "a reserved address"
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_link_local:
        return "a link-local address without a zone"
    if str(ip) in own:
        return "this node's own address"
    return None


_THIS_NETWORK = ipaddress.IPv4Network("0.0.0.0/8")


@dataclass
class Candidate:
    """One address of the peer and what is known of the path to it."""

    address: Address
    origin: Origin
    state: State = State.NEW
    tries: int = 0
    due: float = 0.0
    rtt: float | None = None
    unanswered: int = 0
    heard_at: float = 0.0
    received: int = 0
    """Probe bytes that came from the address (counted for learnt candidates)."""
    sent: int = 0
    """Bytes sent to the address while it was not validated."""

    def step(self, trigger: Trigger) -> bool:
        """Move by the table; whether the trigger applied in this state."""
        following = TRANSITIONS.get((self.state, trigger))
        if following is None:
            return False
        self.state = following
        return True

    @property
    def budget(self) -> int | None:
        """Bytes that may still go to a learnt, unvalidated address (None: no such limit)."""
        if self.origin != "learnt" or self.state is State.ALIVE:
            return None
        return AMPLIFICATION * self.received - self.sent


class CandidateSet:
    """One connection's candidates (see the module docstring). `probe_size` is the size of
    the pings it asks for, which counts against budgets.

    The caller feeds it (`offer`, `dialled`, `ping_from`, `pong`, `heard`) and asks `due(now,
    current)` for the pings to send; `allow()` starts pinging at all (a server waits for its
    peer's first allowed request, so that strangers cannot direct its pings)."""

    def __init__(self, probe_size: int, own: Iterable[str] = ()) -> None:
        self.probe_size = probe_size
        self.own = frozenset(own)
        self.allowed = False
        self._by_address: dict[Address, Candidate] = {}
        self._pace = TokenBucket(PINGS_PER_SECOND, PINGS_PER_SECOND / 2)
        self.refused = 0
        """Offered or learnt addresses turned away (refused, or over the cap)."""

    def get(self, address: Address) -> Candidate | None:
        return self._by_address.get(address)

    def allow(self) -> None:
        self.allowed = True

    def dialled(self, address: Address) -> None:
        """This side reached the peer at `address` (or the peer came from it): a candidate
        from the start, whatever its kind (loopback included: it is the path in use)."""
        self._add(address, "dialled", check=False)

    def offer(self, addresses: Iterable[Address]) -> None:
        """Addresses the peer says it may be reached at."""
        for address in addresses:
            self._add(address, "offered")

    def ping_from(self, address: Address, size: int, answered: int, now: float) -> None:
        """A ping of `size` bytes came from `address` and was answered with `answered` bytes.
        Known or not, the address now has a candidate (unless refused) that remembers both,
        and a new one is due for a ping at once (hole punching: the peer pings while it
        tries), as far as its budget allows."""
        candidate = self._add(address, "learnt")
        if candidate is None:
            return
        candidate.received += size
        if candidate.state is State.NEW:
            candidate.sent += answered
            candidate.due = now

    def pong(self, address: Address, rtt: float, now: float) -> Candidate | None:
        """A pong answering our ping to `address`, sent `rtt` seconds ago."""
        candidate = self._by_address.get(address)
        if candidate is None or not candidate.step(Trigger.PONG):
            return None
        candidate.rtt, candidate.unanswered, candidate.heard_at = rtt, 0, now
        return candidate

    def heard(self, address: Address, now: float) -> None:
        candidate = self._by_address.get(address)
        if candidate is not None and candidate.step(Trigger.HEARD):
            candidate.unanswered, candidate.heard_at = 0, now

    def alive(self) -> list[Candidate]:
        """Live candidates, shortest round trip first."""
        found = [c for c in self._by_address.values() if c.state is State.ALIVE]
        return sorted(found, key=lambda c: c.rtt if c.rtt is not None else float("inf"))

    def next_due(self) -> float | None:
        """When `due` next has something to do (None: never, unless fed)."""
        dues = [c.due for c in self._by_address.values() if c.state is not State.DEAD]
        if not self.allowed or not dues:
            return None
        return min(dues)

    def due(self, now: float, current: Address | None) -> tuple[list[Address], list[Candidate]]:
        """The addresses to ping now, and the candidates that have just died. `current` is the
        direct path in use, kept alive more often than the others."""
        pings: list[Address] = []
        died: list[Candidate] = []
        if not self.allowed:
            return pings, died
        for candidate in self._by_address.values():
            if candidate.state is State.DEAD or now < candidate.due:
                continue
            if candidate.state is State.NEW:
                self._probe(candidate, now, pings, died)
            else:
                self._keepalive(candidate, now, candidate.address == current, pings, died)
        return pings, died

    def _probe(
        self, candidate: Candidate, now: float, pings: list[Address], died: list[Candidate]
    ) -> None:
        if candidate.tries >= PROBE_TRIES:
            candidate.step(Trigger.TRIES_SPENT)
            died.append(candidate)
            return
        budget = candidate.budget
        if budget is not None and budget < self.probe_size:
            candidate.due = now + PROBE_INTERVAL  # it waits for its peer's next ping
            return
        if not self._pace.take(now):
            candidate.due = now + 1 / PINGS_PER_SECOND
            return
        candidate.step(Trigger.PING)
        candidate.tries += 1
        candidate.sent += self.probe_size
        candidate.due = now + PROBE_INTERVAL
        pings.append(candidate.address)

    def _keepalive(
        self, candidate: Candidate, now: float, current: bool, pings: list[Address],
        died: list[Candidate],
    ) -> None:  # fmt: skip
        interval = KEEPALIVE if current else IDLE_KEEPALIVE
        quiet = now - candidate.heard_at > KEEPALIVE * DEAD_PINGS
        if candidate.unanswered >= DEAD_PINGS and quiet:
            candidate.step(Trigger.CONSENT_LOST)
            died.append(candidate)
            return
        candidate.step(Trigger.KEEPALIVE)
        candidate.unanswered += 1
        candidate.due = now + interval
        pings.append(candidate.address)

    def _add(self, address: Address, origin: Origin, check: bool = True) -> Candidate | None:
        candidate = self._by_address.get(address)
        if candidate is not None:
            return candidate
        full = len(self._by_address) >= MAX_CANDIDATES
        if full or (check and refusal(address[0], self.own) is not None):
            self.refused += 1
            return None
        candidate = self._by_address[address] = Candidate(address, origin)
        return candidate
