"""The path layer beneath QUIC: which way each datagram of a connection goes.

The QUIC library (aioquic or qh3) sees one peer at one fixed address and never migrates.
Beneath it, a `PathSet` per connection knows the ways to that peer — direct UDP addresses and
the relay, which forwards datagrams by the peer's key — and sends each datagram on the current
one. An `Endpoint` owns one UDP socket (and a relay connection, if any) for many connections:
it tells QUIC packets, path probes and STUN answers apart and routes each.

How a connection finds and keeps its path (the same rules on both sides):

- **Start.** A connection starts on one way: a client makes one QUIC connection per way it
  races (each address, the relay; see _client.py) and keeps the first whose handshake proves
  the sharer's key; a server's connection starts on the way its first packet came.
- **Probes.** Once the peer's key is known on both sides (after authentication) and, on a
  server, once the peer has made an allowed request, each side pings the other's candidate
  addresses (_candidates.py: what may be tried, how often, for how long), exchanged over the
  authenticated QUIC connection, with its own path probes: small UDP datagrams sealed with
  NaCl's `crypto_box` between the two nodes' keys (Ed25519 keys converted to X25519), so only
  the peer can make or read one. Pinging the peer's public (STUN) address while it pings ours
  opens both NATs: UDP hole punching. A ping from an address not yet known makes it a candidate
  too (a peer-reflexive candidate, as in ICE). Pings are padded to the largest datagram the
  connection may send, so a path that answers carries full-size QUIC packets too (no black
  hole after a move).
- **Moving.** A direct path that answered a ping (validated both ways) replaces the relay, and
  one with less than half the round-trip time replaces another direct path. QUIC keeps its
  streams: it sees the same peer, only the round-trip time changes.
- **Falling back.** The current direct path is pinged every second; when it has gone quiet
  (three unanswered pings and no datagram), it is dead for good and the connection goes back
  to the relay, or to another live direct path (with neither, it stays where it is and QUIC's
  own timeout decides). When the peer's datagrams arrive on a different live path while ours
  has gone quiet, we follow.

Nothing here trusts a datagram's source: QUIC packets are authenticated by QUIC, probes by the
box; a probe from a key without a connection here is dropped unopened. A ping is answered with
a pong of its own size, at most `PONGS_PER_SECOND` a second per source host, and only if it is
at least a pong's size; so an answer never outgrows the datagram that asked for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from ipaddress import ip_address
from typing import TYPE_CHECKING, Literal, Protocol

import nacl.exceptions
import nacl.public
import nacl.signing

from ringdrop.identity import Identity
from ringdrop.transport import stun
from ringdrop.transport._admission import PerSource
from ringdrop.transport._candidates import Candidate, CandidateSet, State, Trigger
from ringdrop.transport._udp import Address, Burst, UdpSocket, normalize, split

if TYPE_CHECKING:
    from ringdrop.transport.relay import RelayClient, RelayState

__all__ = [
    "MAGIC",
    "MIN_PING",
    "PONGS_PER_SECOND",
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
_SEAL = nacl.public.Box.NONCE_SIZE + 16
_MIN_PROBE = _HEADER + _SEAL + 1 + _TXID
MIN_PING = _MIN_PROBE + 19
"""The smallest ping answered: the size of the largest pong (one carrying an IPv6 address)."""
PONGS_PER_SECOND = 10.0
"""Pings answered per second from one source host (see `_admission.host_key`), at most."""
FOLLOW_QUIET = 1.0
"""Seconds of silence on our path after which we follow the peer to the path it now uses."""
# Errors that say a datagram was lost, not that its destination cannot be reached: a full
# queue, or a datagram larger than the path (qh3's own path-MTU probes meet this on IPv6).
_LOST = frozenset({errno.EMSGSIZE, errno.ENOBUFS, errno.EAGAIN, errno.EINTR})


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

    def receive(self, datagrams: list[bytes]) -> None: ...
    def receive_coalesced(self, buffer: bytes, segment: int) -> None: ...
    def flush(self) -> None: ...


Route = Callable[[bytes, Path], Receiver | None]


class _Codec:
    """Seals and opens path probes between this node's key and its peers'. Boxes are kept for
    the keys it is told of only (`know`), so probes under other keys cost no key exchange and
    no memory."""

    def __init__(self, identity: Identity) -> None:
        self.key = identity.peer_id.raw
        self._secret = identity.curve25519_key()
        self._boxes: dict[bytes, nacl.public.Box] = {}

    def know(self, peer_key: bytes) -> bool:
        """Keep the box for `peer_key`; False if it is not an Ed25519 key."""
        if peer_key not in self._boxes:
            try:
                public = nacl.signing.VerifyKey(peer_key).to_curve25519_public_key()
            except (nacl.exceptions.CryptoError, ValueError):
                return False
            self._boxes[peer_key] = nacl.public.Box(self._secret, public)
        return True

    def forget(self, peer_key: bytes) -> None:
        self._boxes.pop(peer_key, None)

    def seal(
        self, peer_key: bytes, kind: int, txid: bytes, observed: Address | None, size: int
    ) -> bytes:
        box = self._boxes[peer_key]
        body = bytes([kind]) + txid + (_pack_address(observed) if observed else b"")
        # Padding inside the box: a probe of `size` bytes proves the path carries that size.
        padding = max(0, size - _HEADER - _SEAL - len(body))
        return MAGIC + self.key + bytes(box.encrypt(body + bytes(padding)))

    def open(self, data: bytes) -> tuple[bytes, int, bytes, Address | None] | None:
        """(sender key, kind, transaction id, observed address) of a genuine probe from a known
        key, else None."""
        if len(data) < _MIN_PROBE or not data.startswith(MAGIC):
            return None
        sender = data[len(MAGIC) : _HEADER]
        box = self._boxes.get(sender)
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


# First bytes of QUIC v1's short-header packets: fixed bit set, long-header bit clear (RFC 9000
# § 17.3). Every other packet of a connection under way has one; probes and STUN never do.
_SHORT_HEADER = bytes(range(0x40, 0x80))
_CID_LENGTH = 8  # the connection ids both QUIC libraries choose for themselves


def _one_connection(data: bytes, segment: int) -> bool:
    """Whether every datagram in a coalesced buffer is a short-header QUIC packet for the same
    connection id, so that the first one routes them all. Anything else in it (a probe, STUN,
    a handshake packet, another connection's packets, a last datagram too short for a header)
    sends the buffer down the path of single datagrams. Checked by strides: the first bytes of
    all datagrams, then each byte of the id, in C, not in a loop per datagram."""
    firsts = data[::segment]
    if firsts.translate(None, _SHORT_HEADER):
        return False
    count = len(firsts)
    return all(data[at::segment] == data[at : at + 1] * count for at in range(1, 1 + _CID_LENGTH))


class _Delivery:
    """What one burst brings each connection: consecutive datagrams for one connection by one
    path are handed over as one batch, in order; `heard` counts the bytes per (connection,
    path)."""

    def __init__(self) -> None:
        self.heard: dict[tuple[Receiver, Path], int] = {}
        self._run: list[bytes] = []
        self._owner: tuple[Receiver, Path] | None = None

    def datagram(self, receiver: Receiver, path: Path, data: bytes) -> None:
        key = (receiver, path)
        if key != self._owner:
            self.hand_over()
            self._owner = key
        self._run.append(data)
        self.heard[key] = self.heard.get(key, 0) + len(data)

    def coalesced(self, receiver: Receiver, path: Path, buffer: bytes, segment: int) -> None:
        self.hand_over()
        receiver.receive_coalesced(buffer, segment)
        key = (receiver, path)
        self.heard[key] = self.heard.get(key, 0) + len(buffer)

    def hand_over(self) -> None:
        """The pending run of single datagrams goes to its connection."""
        if self._run and self._owner is not None:
            run, self._run = self._run, []
            self._owner[0].receive(run)


class Endpoint:
    """One UDP socket and at most one relay connection, shared by a node's connections.

    `route(datagram, path)` names the connection a QUIC datagram belongs to (or None to drop it).
    A send that the network refuses concerns its destination only: the connections using that
    address hear of it (`PathSet.unreachable`). `on_error` hears the socket's other errors (a
    connected socket's "connection refused"). `own_ips` are this node's interface addresses,
    which no peer may name as its candidates.
    """

    def __init__(
        self,
        identity: Identity,
        sock: socket.socket,
        route: Route,
        on_error: Callable[[OSError], None] | None = None,
        own_ips: frozenset[str] = frozenset(),
    ) -> None:
        self.udp = UdpSocket(sock, self._on_udp, self._on_udp_error)
        # Kept: the socket can no longer say once it is closed.
        self.port = self.udp.port
        self.relay: RelayClient | None = None
        self.own_ips = own_ips
        self._route = route
        self._on_error = on_error
        self._codec = _Codec(identity)
        self.loop = asyncio.get_running_loop()
        self._by_key: dict[bytes, set[PathSet]] = {}
        self._paths: set[PathSet] = set()
        self._stun: dict[bytes, asyncio.Future[Address]] = {}
        self._sending_to: Address | None = None
        self._pongs = PerSource(PONGS_PER_SECOND, PONGS_PER_SECOND)
        self.pongs_withheld = 0
        """Pings left unanswered: too small, or over their source's rate."""

    def on_relay_datagrams(self, source: bytes, datagrams: list[bytes]) -> None:
        """The relay client's callback: QUIC datagrams from the node with key `source`."""
        if self.relay is None:
            return
        path = Relayed(self.relay.url, source)
        delivery = _Delivery()
        for data in datagrams:
            if data[:1] and not data[0] & 0x40:
                continue  # probes and STUN go direct only: through a relay they prove nothing
            self._deliver(data, path, delivery)
        self._done(delivery)

    def on_relay_state(self, state: RelayState) -> None:
        """Connections still waiting for their first answer resend their first datagrams, or
        hear that the relay will not carry them."""
        refused = self.relay.refused if self.relay is not None else None
        for paths in list(self._paths):
            if state == "connected":
                paths.relay_up()
            elif refused is not None:
                paths.relay_refused(str(refused))

    def add(self, paths: PathSet) -> None:
        self._paths.add(paths)

    def register(self, paths: PathSet, peer_key: bytes) -> bool:
        """Probes under `peer_key` are opened and answered from now on."""
        if not self._codec.know(peer_key):
            return False
        self._by_key.setdefault(peer_key, set()).add(paths)
        return True

    def unregister(self, paths: PathSet) -> None:
        self._paths.discard(paths)
        for key, sets in list(self._by_key.items()):
            sets.discard(paths)
            if not sets:
                del self._by_key[key]
                self._codec.forget(key)

    def send_direct(self, datagrams: Sequence[bytes], address: Address) -> None:
        """Send to `address`; a refusal by the network is that address's business."""
        self._sending_to = address
        try:
            self.udp.send(datagrams, address)
        finally:
            self._sending_to = None

    def send_relay(self, peer_key: bytes, datagrams: Sequence[bytes]) -> None:
        if self.relay is not None:
            self.relay.send(peer_key, datagrams)

    def send_probe(
        self, peer_key: bytes, address: Address, kind: int, txid: bytes, size: int
    ) -> None:
        observed = address if kind == _PONG else None
        self.send_direct([self._codec.seal(peer_key, kind, txid, observed, size)], address)

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
                        self.send_direct([request], normalize(info[4]))
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

    def _on_udp(self, burst: Burst) -> None:
        delivery = _Delivery()
        path: Direct | None = None
        for data, segment, address in burst:
            if path is None or path.address != address:
                path = Direct(address)
            if segment and len(data) > segment and _one_connection(data, segment):
                # Routed by its first datagram, handed over whole: one call into QUIC for
                # dozens of packets.
                receiver = self._route(data[:segment], path)
                if receiver is not None:
                    delivery.coalesced(receiver, path, data, segment)
                continue
            for datagram in split(data, segment):
                if datagram[: len(MAGIC)] == MAGIC:
                    self._on_probe(datagram, address)
                elif stun.is_stun(datagram):
                    self._on_stun(datagram)
                else:
                    self._deliver(datagram, path, delivery)
        self._done(delivery)

    def _deliver(self, data: bytes, path: Path, delivery: _Delivery) -> None:
        receiver = self._route(data, path)
        if receiver is not None:
            delivery.datagram(receiver, path, data)

    @staticmethod
    def _done(delivery: _Delivery) -> None:
        """After a burst: each connection gets what is left for it, hears which paths it came
        by, then sends its answer once (on the path it chose meanwhile)."""
        delivery.hand_over()
        for (receiver, path), size in delivery.heard.items():
            receiver.paths.heard(path, size)
        for receiver in dict.fromkeys(receiver for receiver, _ in delivery.heard):
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
        sets = self._by_key.get(sender)
        if not sets:
            return  # no connection with this key here: say nothing
        if kind == _PONG:
            for paths in list(sets):
                paths.ponged(txid, address)
            return
        # A pong is as large as its ping: a path that carried the one carries the other, and
        # a ping replayed from a forged address earns that address no more than it sent.
        if len(data) < MIN_PING or not self._pongs.take(address[0], self.loop.time()):
            self.pongs_withheld += 1
            return
        self.send_probe(sender, address, _PONG, txid, len(data))
        for paths in list(sets):
            paths.pinged_from(address, len(data), len(data))

    def _on_stun(self, data: bytes) -> None:
        txid = bytes(data[8:20])  # the transaction id, after type, length and magic cookie
        future = self._stun.get(txid)
        if future is None or future.done():
            return
        found = stun.parse_binding_response(data, txid)
        if found is not None:
            future.set_result(normalize(found))

    def _on_udp_error(self, error: OSError) -> None:
        address = self._sending_to
        if address is not None:
            if error.errno not in _LOST:
                _log.debug("Cannot send to %s: %s", Direct(address), error)
                for paths in list(self._paths):
                    paths.unreachable(address, error)
        elif self._on_error is not None:
            self._on_error(error)
        else:
            _log.debug("UDP socket error: %s", error)


class PathSet:
    """The ways to one connection's peer, and the one each datagram takes (see the module).

    It starts on `way`. `relay_key` is the key the peer is on the relay with (a server's is its
    node key; a client's is one of the connection's own, learnt from the first datagram it
    relays). `on_change` hears every move; `on_unreachable` hears why the way this connection
    started on failed before anything came back by it (the network refused it, or the relay).
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        way: Path,
        peer_key: bytes | None,
        probe_size: int,
        relay_key: bytes | None = None,
        on_change: Callable[[PathInfo], object] | None = None,
        on_unreachable: Callable[[str], object] | None = None,
    ) -> None:
        self._endpoint = endpoint
        self._loop = endpoint.loop
        self._peer_key: bytes | None = None
        self._relay_key = way.peer_key if isinstance(way, Relayed) else relay_key
        self._probe_size = probe_size
        self._on_change = on_change
        self._on_unreachable = on_unreachable
        self.candidates = CandidateSet(probe_size, endpoint.own_ips)
        self._pending: dict[bytes, tuple[Address, float]] = {}
        self._heard: dict[Path, float] = {}
        self._first: list[bytes] = []
        self._answered = False
        self._switched_at = self._loop.time()
        self._timer: asyncio.TimerHandle | None = None
        self._started = False
        self._closed = False
        self.current: Path = way
        self._traffic: dict[Path, int] = {}
        """Datagram bytes received per path, to tell which carried most of a transfer."""
        endpoint.add(self)
        if isinstance(way, Direct):
            self.candidates.dialled(way.address)
        if peer_key is not None:
            self.set_peer(peer_key)

    @property
    def info(self) -> PathInfo:
        return info_of(self.current)

    def traffic(self) -> dict[PathInfo, int]:
        """Datagram bytes received so far, per path."""
        return {info_of(path): size for path, size in self._traffic.items()}

    def set_peer(self, peer_key: bytes) -> None:
        """The peer's key, once known: probes are sealed to it, and its pings answered."""
        if self._peer_key is None and self._endpoint.register(self, peer_key):
            self._peer_key = peer_key

    def start(self) -> None:
        """Keep candidates alive and probe them; needs the peer's key. Pinging waits for
        `allow_probing`."""
        if not self._started and self._peer_key is not None and not self._closed:
            self._started = True
            self._service()

    def allow_probing(self) -> None:
        """The peer may now direct this side's pings: its candidates are pinged."""
        self.candidates.allow()
        self._service()

    def close(self) -> None:
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._endpoint.unregister(self)

    def add_candidates(self, addresses: Sequence[Address]) -> None:
        """Addresses the peer offered (refused ones are dropped, see _candidates.py)."""
        self.candidates.offer(addresses)
        self._service()

    def send(self, datagrams: list[bytes]) -> None:
        current = self.current
        if isinstance(current, Direct):
            self._endpoint.send_direct(datagrams, current.address)
            return
        if not self._answered and not self._first:
            self._first = list(datagrams)  # resent if the relay connects only later
        self._endpoint.send_relay(current.peer_key, datagrams)

    def relay_up(self) -> None:
        """The relay (re)connected: a connection on it that has heard nothing yet resends."""
        if not self._answered and self._first and isinstance(self.current, Relayed):
            self._endpoint.send_relay(self.current.peer_key, self._first)

    def heard(self, path: Path, size: int) -> None:
        """A QUIC datagram arrived by `path`."""
        now = self._loop.time()
        self._answered, self._first = True, []
        self._traffic[path] = self._traffic.get(path, 0) + size
        self._heard[path] = now
        if isinstance(path, Relayed):
            self._relay_key = path.peer_key
        else:
            self.candidates.heard(path.address, now)
        current = self.current
        if (
            path != current
            and self._live(path)
            and now - max(self._heard.get(current, 0.0), self._switched_at) > FOLLOW_QUIET
        ):
            # The peer moved (its view of our path died, or it found a better one): follow it
            # once our own path has gone quiet.
            self._switch(path)

    def pinged_from(self, address: Address, size: int, answered: int) -> None:
        """The peer pinged us from `address` (a ping of `size` bytes, answered with
        `answered`): an address to ping back, within what it sent (see _candidates.py)."""
        self.candidates.ping_from(address, size, answered, self._loop.time())
        self._service()

    def ponged(self, txid: bytes, address: Address) -> None:
        sent = self._pending.pop(txid, None)
        if sent is None or sent[0] != address:
            return  # not ours, a replay, or from elsewhere: proves nothing
        now = self._loop.time()
        if self.candidates.pong(address, now - sent[1], now) is not None:
            self._choose()

    def unreachable(self, address: Address, error: OSError) -> None:
        """The network refused a datagram to `address`: it is no way to the peer."""
        candidate = self.candidates.get(address)
        if candidate is not None and candidate.step(Trigger.UNREACHABLE):
            self._died(candidate)
        if self.current == Direct(address):
            self._first_way_failed(f"the network refused it: {error.strerror or error}")

    def relay_refused(self, reason: str) -> None:
        """The relay will not carry us (it denied us, or may not be used)."""
        if isinstance(self.current, Relayed):
            self._first_way_failed(reason)

    # -- internals -----------------------------------------------------------------------------

    def _first_way_failed(self, reason: str) -> None:
        if not self._answered and self._on_unreachable is not None:
            self._on_unreachable(reason)

    def _live(self, path: Path) -> bool:
        if isinstance(path, Relayed):
            return self._endpoint.relay is not None and path.url == self._endpoint.relay.url
        candidate = self.candidates.get(path.address)
        return candidate is not None and candidate.state is State.ALIVE

    def _relay_path(self) -> Relayed | None:
        relay = self._endpoint.relay
        if relay is None or self._relay_key is None or relay.state != "connected":
            return None
        return Relayed(relay.url, self._relay_key)

    def _switch(self, path: Path) -> None:
        if path == self.current:
            return
        self.current = path
        self._switched_at = self._loop.time()
        _log.info("Path to %s: %s", (self._peer_key or b"").hex()[:12], info_of(path))
        if self._on_change is not None:
            self._on_change(info_of(path))

    def _choose(self) -> None:
        alive = self.candidates.alive()
        if not alive:
            return
        best, current = alive[0], self.current
        if not isinstance(current, Direct):
            self._switch(Direct(best.address))
            return
        mine = self.candidates.get(current.address)
        if (
            mine is None
            or mine.state is not State.ALIVE
            or mine.rtt is None
            or (best.address != current.address and (best.rtt or 0.0) < mine.rtt / 2)
        ):
            self._switch(Direct(best.address))

    def _died(self, candidate: Candidate) -> None:
        """A candidate lost consent (or the network refused it): if it was the path in use,
        another live one, else the relay, else stay (QUIC's own timeout decides)."""
        if self.current != Direct(candidate.address):
            return
        _log.info("Direct path %s went quiet", self.current)
        alive = self.candidates.alive()
        fallback: Path | None = Direct(alive[0].address) if alive else self._relay_path()
        if fallback is not None:
            self._switch(fallback)

    def _service(self) -> None:
        """Send the pings due now, note the candidates that died, and wake up for the next."""
        if not self._started or self._closed:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        now = self._loop.time()
        current = self.current.address if isinstance(self.current, Direct) else None
        try:
            pings, died = self.candidates.due(now, current)
            for address in pings:
                self._ping(address, now)
            for candidate in died:
                self._died(candidate)
        except Exception:
            _log.exception("Path maintenance failed")
        due = self.candidates.next_due()
        if due is not None and not self._closed:
            self._timer = self._loop.call_at(max(due, now + 0.01), self._service)

    def _ping(self, address: Address, now: float) -> None:
        assert self._peer_key is not None
        txid = os.urandom(_TXID)
        self._pending[txid] = (address, now)
        if len(self._pending) > 64:
            oldest = min(self._pending, key=lambda t: self._pending[t][1])
            del self._pending[oldest]
        with contextlib.suppress(OSError, KeyError):
            self._endpoint.send_probe(self._peer_key, address, _PING, txid, self._probe_size)
