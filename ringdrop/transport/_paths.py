"""The path layer beneath QUIC: which way each datagram of a connection goes.

The QUIC library (aioquic or qh3) sees one peer at one fixed address and never migrates.
Beneath it, a `PathSet` per connection knows the ways to that peer — direct UDP addresses and
the relay, which forwards datagrams by the peer's key — and sends each datagram on the current
one. An `Endpoint` owns one UDP socket (and a relay connection, if any) for many connections:
it tells QUIC packets, path probes and STUN answers apart and routes each.

How a connection finds and keeps its path (the same rules on both sides):

- **Start.** Until a path has carried a datagram back, the first datagrams go to every dialled
  address and the relay at once; the first path the peer answers on becomes the current one.
  A LAN or same-machine peer answers directly first; a peer behind NAT answers through the relay.
- **Probes.** Once the peer's key is known on both sides (after authentication), each side pings
  the other's candidate addresses, exchanged over the authenticated QUIC connection, with its
  own path probes: small UDP datagrams sealed with NaCl's `crypto_box` between the two nodes'
  keys (Ed25519 keys converted to X25519), so only the peer can make or read one. Pinging the
  peer's public (STUN) address while it pings ours opens both NATs: UDP hole punching. A ping
  from an address not yet known makes it a candidate too (a peer-reflexive candidate, as in ICE).
  Pings are padded to the largest datagram the connection may send, so a path that answers
  carries full-size QUIC packets too (no black hole after a move).
- **Moving.** A direct path that answered a ping (validated both ways) replaces the relay, and
  one with less than half the round-trip time replaces another direct path. QUIC keeps its
  streams: it sees the same peer, only the round-trip time changes.
- **Falling back.** The current direct path is pinged every second; when it has gone quiet
  (three unanswered pings and no datagram), the connection goes back to the relay, or to
  another live direct path. When the peer's datagrams arrive on a different path while ours
  has gone quiet, we follow.

Nothing here trusts a datagram's source: QUIC packets are authenticated by QUIC, probes by the
box; a probe from a key without a connection here is dropped unanswered.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import TYPE_CHECKING, Literal, Protocol

import nacl.exceptions
import nacl.public
import nacl.signing

from ringdrop.identity import Identity
from ringdrop.transport import stun
from ringdrop.transport._udp import Address, UdpSocket, normalize

if TYPE_CHECKING:
    from ringdrop.transport.relay import RelayClient, RelayState

__all__ = [
    "MAGIC",
    "Direct",
    "Endpoint",
    "Path",
    "PathInfo",
    "PathSet",
    "Receiver",
    "Relayed",
]

_log = logging.getLogger("ringdrop.transport")

# Probes start with a byte that is neither STUN (0-3) nor QUIC (bit 0x40 set): RFC 9443's map.
MAGIC = b"\x0frdp"
_PING, _PONG = 1, 2
_TXID = 12
_KEY = 32
_HEADER = len(MAGIC) + _KEY
_MIN_PROBE = _HEADER + nacl.public.Box.NONCE_SIZE + 16 + 1 + _TXID
_BOXES = 1024  # peers' key-exchange results kept

PROBE_INTERVAL = 0.5
"""Seconds between pings to a candidate not yet answered."""
PROBE_TRIES = 10
"""Pings to a new candidate before it counts as unreachable (for now)."""
KEEPALIVE = 1.0
"""Seconds between pings on the current direct path: NAT mappings stay open, death shows."""
IDLE_KEEPALIVE = 5.0
"""Seconds between pings on other live direct paths."""
DEAD_PINGS = 3
"""Unanswered pings, with no datagram heard meanwhile, after which a live path is dead."""
RETRY_DEAD = 10.0
"""Seconds before a dead or unreachable candidate is tried again."""
FOLLOW_QUIET = 1.0
"""Seconds of silence on our path after which we follow the peer to the path it now uses."""
MAX_CANDIDATES = 16
_TICK = 0.2


@dataclass(frozen=True, slots=True)
class Direct:
    """A path straight to a UDP address."""

    address: Address

    def __str__(self) -> str:
        host, port = self.address
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True, slots=True)
class Relayed:
    """A path through the relay at `url`, to the node with key `peer_key`."""

    url: str
    peer_key: bytes

    def __str__(self) -> str:
        return self.url


Path = Direct | Relayed


@dataclass(frozen=True, slots=True)
class PathInfo:
    """How a connection reaches its peer, for people: `direct` or `relay`, and where."""

    kind: Literal["direct", "relay"]
    where: str

    def __str__(self) -> str:
        return f"{self.kind} {self.where}"


def info_of(path: Path) -> PathInfo:
    if isinstance(path, Direct):
        return PathInfo("direct", str(path))
    return PathInfo("relay", path.url)


class Receiver(Protocol):
    """A QUIC connection as the endpoint sees it."""

    paths: PathSet

    def receive(self, data: bytes) -> None: ...
    def flush(self) -> None: ...


Route = Callable[[bytes, Path], Receiver | None]


class _Codec:
    """Seals and opens path probes between this node's key and its peers'."""

    def __init__(self, identity: Identity) -> None:
        self.key = identity.peer_id.raw
        self._secret = identity.curve25519_key()
        self._boxes: dict[bytes, nacl.public.Box] = {}

    def _box(self, peer_key: bytes) -> nacl.public.Box | None:
        box = self._boxes.get(peer_key)
        if box is None:
            try:
                public = nacl.signing.VerifyKey(peer_key).to_curve25519_public_key()
            except (nacl.exceptions.CryptoError, ValueError):
                return None
            if len(self._boxes) >= _BOXES:  # bounded, whatever keys come and go
                del self._boxes[next(iter(self._boxes))]
            box = self._boxes[peer_key] = nacl.public.Box(self._secret, public)
        return box

    def seal(
        self, peer_key: bytes, kind: int, txid: bytes, observed: Address | None, size: int
    ) -> bytes:
        box = self._box(peer_key)
        assert box is not None, "peer keys are checked before probing"
        body = bytes([kind]) + txid + (_pack_address(observed) if observed else b"")
        # Padding inside the box: a probe of `size` bytes proves the path carries that size.
        padding = max(0, size - _HEADER - box.NONCE_SIZE - 16 - len(body))
        return MAGIC + self.key + bytes(box.encrypt(body + bytes(padding)))

    def open(self, data: bytes) -> tuple[bytes, int, bytes, Address | None] | None:
        """(sender key, kind, transaction id, observed address) of a genuine probe, else None."""
        if len(data) < _MIN_PROBE or not data.startswith(MAGIC):
            return None
        sender = data[len(MAGIC) : _HEADER]
        box = self._box(sender)
        if box is None:
            return None
        try:
            body = box.decrypt(data[_HEADER:])
        except nacl.exceptions.CryptoError:
            return None
        if len(body) < 1 + _TXID:
            return None
        kind, txid = body[0], body[1 : 1 + _TXID]
        if kind not in (_PING, _PONG):
            return None
        observed = _unpack_address(body[1 + _TXID :]) if kind == _PONG else None
        return sender, kind, txid, observed


def _pack_address(address: Address) -> bytes:
    ip = ip_address(address[0])
    return bytes([ip.version]) + ip.packed + address[1].to_bytes(2, "big")


def _unpack_address(raw: bytes) -> Address | None:
    if raw[:1] == b"\x04" and len(raw) >= 7:
        return str(ip_address(raw[1:5])), int.from_bytes(raw[5:7], "big")
    if raw[:1] == b"\x06" and len(raw) >= 19:
        return str(ip_address(raw[1:17])), int.from_bytes(raw[17:19], "big")
    return None


class Endpoint:
    """One UDP socket and at most one relay connection, shared by a node's connections.

    `route(datagram, path)` names the connection a QUIC datagram belongs to (or None to drop it).
    """

    def __init__(
        self,
        identity: Identity,
        sock: socket.socket,
        route: Route,
        on_error: Callable[[OSError], None] | None = None,
    ) -> None:
        self.udp = UdpSocket(sock, self._on_udp, on_error or self._on_udp_error)
        self.relay: RelayClient | None = None
        self._route = route
        self._codec = _Codec(identity)
        self._by_key: dict[bytes, set[PathSet]] = {}
        self._stun: dict[bytes, asyncio.Future[Address]] = {}

    def on_relay_datagrams(self, source: bytes, datagrams: list[bytes]) -> None:
        """The relay client's callback: QUIC datagrams from the node with key `source`."""
        if self.relay is None:
            return
        path = Relayed(self.relay.url, source)
        touched: dict[tuple[Receiver, Path], int] = {}
        for data in datagrams:
            if data[:1] and not data[0] & 0x40:
                continue  # probes and STUN go direct only: through a relay they prove nothing
            self._deliver(data, path, touched)
        self._done(touched)

    def on_relay_state(self, state: RelayState) -> None:
        """Connections still looking for a path resend their first datagrams through it."""
        if state == "connected":
            for sets in list(self._by_key.values()):
                for paths in list(sets):
                    paths.relay_up()

    def register(self, paths: PathSet, peer_key: bytes) -> None:
        self._by_key.setdefault(peer_key, set()).add(paths)

    def unregister(self, paths: PathSet) -> None:
        for key, sets in list(self._by_key.items()):
            sets.discard(paths)
            if not sets:
                del self._by_key[key]

    def send_relay(self, peer_key: bytes, datagrams: Sequence[bytes]) -> None:
        if self.relay is not None:
            self.relay.send(peer_key, datagrams)

    def send_probe(
        self, peer_key: bytes, address: Address, kind: int, txid: bytes, size: int
    ) -> None:
        observed = address if kind == _PONG else None
        self.udp.send([self._codec.seal(peer_key, kind, txid, observed, size)], address)

    async def reflexive_address(
        self, servers: Sequence[tuple[str, int]], timeout: float
    ) -> Address | None:
        """This socket's public address as STUN `servers` see it (the first to answer)."""
        if not servers:
            return None
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Address]] = []
        try:
            async with asyncio.timeout(timeout):
                for host, port in servers:
                    try:
                        infos = await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
                    except OSError:
                        continue
                    for info in infos:
                        if info[0] == socket.AF_INET6 and self.udp.family != socket.AF_INET6:
                            continue
                        txid, request = stun.binding_request()
                        future = self._stun[txid] = loop.create_future()
                        futures.append(future)
                        self.udp.send([request], normalize(info[4]))
                        break
                if not futures:
                    return None
                done, _ = await asyncio.wait(futures, return_when=asyncio.FIRST_COMPLETED)
                return next(iter(done)).result()
        except TimeoutError:
            return None
        finally:
            for txid in [t for t, f in self._stun.items() if f in futures]:
                del self._stun[txid]
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self.udp.close()

    def _on_udp(self, batch: list[tuple[bytes, Address]]) -> None:
        touched: dict[tuple[Receiver, Path], int] = {}
        path: Direct | None = None
        for data, address in batch:
            if data[: len(MAGIC)] == MAGIC:
                self._on_probe(data, address)
            elif stun.is_stun(data):
                self._on_stun(data)
            else:
                if path is None or path.address != address:
                    path = Direct(address)
                self._deliver(data, path, touched)
        self._done(touched)

    def _deliver(self, data: bytes, path: Path, touched: dict[tuple[Receiver, Path], int]) -> None:
        receiver = self._route(data, path)
        if receiver is not None:
            receiver.receive(data)
            key = (receiver, path)
            touched[key] = touched.get(key, 0) + len(data)

    @staticmethod
    def _done(touched: dict[tuple[Receiver, Path], int]) -> None:
        """After a burst: each connection hears which paths it came by, then sends its answer
        once (on the path it chose meanwhile)."""
        for (receiver, path), size in touched.items():
            receiver.paths.heard(path, size)
        for receiver in dict.fromkeys(receiver for receiver, _ in touched):
            receiver.flush()

    def _on_probe(self, data: bytes, address: Address) -> None:
        # No connection with the key the probe names: say nothing, and spend no key exchange
        # (nor a cached box) on a stranger's datagram.
        if not self._by_key.get(data[len(MAGIC) : _HEADER]):
            return
        opened = self._codec.open(data)
        if opened is None:
            return
        sender, kind, txid, _observed = opened
        sets = self._by_key[sender]
        if kind == _PING:
            self.send_probe(sender, address, _PONG, txid, len(data))
            for paths in sets:
                paths.pinged_from(address)
        else:
            for paths in sets:
                paths.ponged(txid, address)

    def _on_stun(self, data: bytes) -> None:
        txid = bytes(data[8:20])  # the transaction id, after type, length and magic cookie
        future = self._stun.get(txid)
        if future is None or future.done():
            return
        found = stun.parse_binding_response(data, txid)
        if found is not None:
            future.set_result(normalize(found))

    def _on_udp_error(self, error: OSError) -> None:
        _log.debug("UDP socket error: %s", error)


@dataclass
class _Candidate:
    address: Address
    state: Literal["new", "alive", "dead"] = "new"
    tries: int = 0
    next_ping: float = 0.0
    rtt: float | None = None
    unanswered: int = 0
    learnt: bool = False
    """Known only from a ping that came from it: not tried again once it has gone dead."""


class PathSet:
    """The ways to one connection's peer, and the one each datagram takes (see the module)."""

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        peer_key: bytes | None,
        probe_size: int,
        dialled: Iterable[Address] = (),
        relay_key: bytes | None = None,
        on_change: Callable[[PathInfo], object] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._peer_key: bytes | None = None
        # The key the peer is on the relay with: a server's is its node key, a client's a key
        # of the connection's own (see _client.py); learnt from the first datagram it relays.
        self._relay_key = relay_key
        self._probe_size = probe_size
        self._on_change = on_change
        self._dialled = list(dict.fromkeys(dialled))
        self._candidates: dict[Address, _Candidate] = {}
        self._pending: dict[bytes, tuple[Address, float]] = {}
        self._heard: dict[Path, float] = {}
        self._first: list[bytes] = []
        self._switched_at = 0.0
        self._task: asyncio.Task[None] | None = None
        self.current: Path | None = None
        self._traffic: dict[Path, int] = {}
        """Datagram bytes received per path, to tell which carried most of a transfer."""
        if peer_key is not None:
            self.set_peer(peer_key)

    @property
    def info(self) -> PathInfo | None:
        return None if self.current is None else info_of(self.current)

    def traffic(self) -> dict[PathInfo, int]:
        """Datagram bytes received so far, per path."""
        return {info_of(path): size for path, size in self._traffic.items()}

    def set_peer(self, peer_key: bytes) -> None:
        """The peer's key, once known: probes are sealed to it, and its pings accepted."""
        if self._peer_key is None:
            self._peer_key = peer_key
            self._endpoint.register(self, peer_key)

    def adopt(self, path: Path) -> None:
        """Use `path` from now on (a server's connection: the path its first packet came by)."""
        if isinstance(path, Direct):
            self._add(path.address)
        else:
            self._relay_key = path.peer_key
        self._switch(path)

    def start(self) -> None:
        """Begin probing candidates; needs the peer's key and a running loop."""
        if self._task is None and self._peer_key is not None:
            self._task = asyncio.get_running_loop().create_task(self._maintain())

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._endpoint.unregister(self)

    def add_candidates(self, addresses: Iterable[Address]) -> None:
        for address in addresses:
            self._add(address)

    def send(self, datagrams: list[bytes]) -> None:
        current = self.current
        if isinstance(current, Direct):
            self._endpoint.udp.send(datagrams, current.address)
        elif isinstance(current, Relayed):
            self._endpoint.send_relay(current.peer_key, datagrams)
        else:
            # No path yet: every way at once; the first to answer wins.
            if not self._first:
                self._first = list(datagrams)
            for address in self._spray_targets():
                self._endpoint.udp.send(datagrams, address)
            if (relay := self._relay_path()) is not None:
                self._endpoint.send_relay(relay.peer_key, datagrams)

    def relay_up(self) -> None:
        """The relay (re)connected: a connection still without a path tries it now."""
        if self.current is None and self._first and self._relay_key is not None:
            self._endpoint.send_relay(self._relay_key, self._first)

    def heard(self, path: Path, size: int) -> None:
        """A QUIC datagram arrived by `path`."""
        now = time.monotonic()
        self._traffic[path] = self._traffic.get(path, 0) + size
        self._heard[path] = now
        if isinstance(path, Relayed):
            self._relay_key = path.peer_key
        if isinstance(path, Direct) and (candidate := self._candidates.get(path.address)):
            candidate.unanswered = 0
        if self.current is None:
            if isinstance(path, Relayed) or self._known(path.address):
                self._switch(path)
        elif (
            path != self.current
            and self._known_path(path)
            and now - max(self._heard.get(self.current, 0.0), self._switched_at) > FOLLOW_QUIET
        ):
            # The peer moved (its view of our path died, or it found a better one): follow it
            # once our own path has gone quiet.
            self._switch(path)

    def pinged_from(self, address: Address) -> None:
        """The peer pinged us from `address`: ping it back once (hole punching: the peer keeps
        pinging while it tries). Once per ping received, not a schedule of pings, so that a
        replayed ping from a forged address earns that address no more than it sent."""
        known = address in self._candidates
        candidate = self._add(address)
        if candidate is None or candidate.state == "alive":
            return
        if not known:
            candidate.tries, candidate.learnt = PROBE_TRIES, True  # no schedule of its own
        self._ping(address, time.monotonic())

    def ponged(self, txid: bytes, address: Address) -> None:
        sent = self._pending.pop(txid, None)
        if sent is None or sent[0] != address:
            return  # not ours, a replay, or from elsewhere: proves nothing
        candidate = self._candidates.get(address)
        if candidate is None:
            return
        candidate.rtt = time.monotonic() - sent[1]
        candidate.state, candidate.unanswered = "alive", 0
        self._choose()

    # -- internals -----------------------------------------------------------------------------

    def _known(self, address: Address) -> bool:
        return address in self._dialled or address in self._candidates

    def _known_path(self, path: Path) -> bool:
        if isinstance(path, Relayed):
            return True
        candidate = self._candidates.get(path.address)
        return candidate is not None and candidate.state == "alive"

    def _add(self, address: Address) -> _Candidate | None:
        candidate = self._candidates.get(address)
        if candidate is None and len(self._candidates) < MAX_CANDIDATES:
            candidate = self._candidates[address] = _Candidate(address)
        return candidate

    def _spray_targets(self) -> list[Address]:
        targets = list(self._dialled)
        targets += [
            a for a, c in self._candidates.items() if c.state != "dead" and a not in targets
        ]
        return targets

    def _relay_path(self) -> Relayed | None:
        relay = self._endpoint.relay
        if relay is None or self._relay_key is None:
            return None
        if relay.state != "connected":
            return None
        return Relayed(relay.url, self._relay_key)

    def _switch(self, path: Path | None) -> None:
        if path == self.current:
            return
        self.current = path
        self._switched_at = time.monotonic()
        if path is not None:
            _log.info("Path to %s: %s", (self._peer_key or b"").hex()[:12], info_of(path))
            if self._on_change is not None:
                self._on_change(info_of(path))

    def _best_alive(self) -> _Candidate | None:
        """The live candidate with the shortest round trip, if any."""
        alive = [c for c in self._candidates.values() if c.state == "alive" and c.rtt is not None]
        return min(alive, key=lambda c: c.rtt or 0.0, default=None)

    def _choose(self) -> None:
        best = self._best_alive()
        if best is None:
            return
        current = self.current
        if not isinstance(current, Direct):
            self._switch(Direct(best.address))
            return
        mine = self._candidates.get(current.address)
        if (
            mine is None
            or mine.state != "alive"
            or mine.rtt is None
            or (best.address != current.address and (best.rtt or 0.0) < mine.rtt / 2)
        ):
            self._switch(Direct(best.address))

    def _fail_over(self) -> None:
        """The current direct path died: another live one, else the relay, else every way."""
        best = self._best_alive()
        if best is not None:
            self._switch(Direct(best.address))
        else:
            self._switch(self._relay_path())

    async def _maintain(self) -> None:
        while True:
            try:
                self._tick(time.monotonic())
            except Exception:
                _log.exception("Path maintenance failed")
            await asyncio.sleep(_TICK)

    def _tick(self, now: float) -> None:
        assert self._peer_key is not None
        for candidate in list(self._candidates.values()):
            if now < candidate.next_ping:
                continue
            if candidate.state == "dead":
                if candidate.learnt:
                    del self._candidates[candidate.address]
                    continue
                candidate.state, candidate.tries = "new", 0
            if candidate.state == "new":
                if candidate.tries >= PROBE_TRIES:
                    candidate.state, candidate.next_ping = "dead", now + RETRY_DEAD
                    continue
                candidate.tries += 1
                candidate.next_ping = now + PROBE_INTERVAL
            else:
                path = Direct(candidate.address)
                quiet = now - self._heard.get(path, 0.0) > KEEPALIVE * DEAD_PINGS
                if candidate.unanswered >= DEAD_PINGS and quiet:
                    _log.info("Direct path %s went quiet", path)
                    candidate.state, candidate.next_ping = "dead", now + RETRY_DEAD
                    candidate.unanswered = 0
                    if self.current == path:
                        self._fail_over()
                    continue
                candidate.unanswered += 1
                candidate.next_ping = now + (KEEPALIVE if self.current == path else IDLE_KEEPALIVE)
            self._ping(candidate.address, now)

    def _ping(self, address: Address, now: float) -> None:
        assert self._peer_key is not None
        txid = os.urandom(_TXID)
        self._pending[txid] = (address, now)
        if len(self._pending) > 4 * MAX_CANDIDATES:
            oldest = min(self._pending, key=lambda t: self._pending[t][1])
            del self._pending[oldest]
        with contextlib.suppress(OSError):
            self._endpoint.send_probe(self._peer_key, address, _PING, txid, self._probe_size)
