"""The client of an iroh relay (the `iroh-relay` server of iroh 1.x): one authenticated WebSocket
to a relay server that forwards QUIC datagrams between nodes addressed by their Ed25519 keys.

    client = RelayClient(url, identity, on_datagrams=lambda source_key, datagrams: ...)
    client.start()                        # connects, and reconnects, in a background task
    await client.wait_connected(10)
    client.send(peer_key, [datagram, ...])  # never blocks; best effort, like UDP

The wire protocol, read from n0-computer/iroh v1.0.3 (`iroh-relay/src/protos/*.rs`, `http.rs`):

- `GET /relay` upgraded to a WebSocket (http → ws, https → wss), offering the subprotocols
  `iroh-relay-v2, iroh-relay-v1`; the server picks one. No permessage-deflate.
- Each binary message is one frame: a QUIC varint frame type, then its payload. A frame is
  at most 64 KiB with its type byte when sent (a datagram of up to `MAX_DATAGRAM` bytes), and
  its payload at most 64 KiB when received.
- Handshake (postcard encodings): the server sends ServerChallenge (0: 16 bytes); we answer
  ClientAuth (1: our 32-byte key, then the 64-byte signature with its postcard length 0x40) over
  `blake3.derive_key("iroh-relay handshake v1 challenge signature", challenge)`, so a malicious
  relay cannot obtain our signature over a message of its choosing; the server answers
  ServerConfirmsAuth (2) or ServerDeniesAuth (3: a postcard string).
- Then datagram frames addressed by key, with an ECN byte: single (4 out, 6 in) or batched
  (5 out, 7 in: a u16 BE segment size, then datagrams of that size, the last may be shorter),
  EndpointGone (8), Ping (9) which must be answered by Pong (10) with the same 8 bytes or the
  server drops us, Health (11, v1 only), Restarting (12: reconnect in / try for, u32 BE ms),
  Status (13, v2 only).

Throughput: Python pays per WebSocket message, not per byte, so the writer drains everything
queued since it last ran and packs runs of equal-size datagrams to one peer into batch frames
of up to 64 KiB (about 44 full QUIC packets). The server forwards a batch as one frame, and the
reader splits it with slicing only. Through a local iroh-relay, sender and receiver in two
processes on a busy 2-core machine: about 75 MB/s when every `send` carries one 1200-1452-byte
datagram, about 185 MB/s when they come in bursts of 4 or more (as a QUIC flush gives them).

The frames are encoded and decoded, with their size limits, by `_relay_codec` (sans-IO); this
module is the connection that carries them. Anything the server sends is validated before use,
and a bad frame is counted and skipped; only a broken handshake, or a message over 128 KiB
(refused by the WebSocket library), costs the connection, which is then made again. A relay
that denies this node's authentication is not asked again (it would only say the same), and
neither is one that `public_only` refuses.

`public_only` is for a relay named by someone else (a ticket): it must then resolve to public
(global unicast) addresses only, and the connection goes to the address that was checked, so
that neither the name nor a redirect can point it at this machine or its network.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import ssl
from collections import deque
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

# websockets is imported when a relay is first dialled: most transfers never need one.
if TYPE_CHECKING:
    from websockets.asyncio.client import ClientConnection

from ringdrop.errors import ProtocolError, TransferError
from ringdrop.identity import Identity
from ringdrop.transport import _relay_codec as codec
from ringdrop.transport._relay_codec import MAX_DATAGRAM, MAX_PAYLOAD, V1, V2, Datagrams, decode

__all__ = [
    "MAX_DATAGRAM",
    "MAX_PAYLOAD",
    "RelayClient",
    "RelayState",
    "choose_home_relay",
    "relay_latency",
]

_log = logging.getLogger("ringdrop.transport")

RelayState = Literal["connecting", "connected", "disconnected", "closed"]

_SUBPROTOCOLS = [V2, V1]  # our preference first, as iroh's client
_RELAY_PATH = "/relay"
_PROBE_PATH = "/ping"
_KEY = codec.KEY_BYTES

# Beyond this many bytes waiting for the WebSocket, datagrams are dropped as a congested router
# would: QUIC sees loss and slows down, instead of latency growing without bound.
QUEUE_LIMIT = 4 * 1024 * 1024

_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 10.0
_OPEN_TIMEOUT = 10.0
# The server pings us after 15-20 s without a frame from us (and drops us if the pong is not back
# within 5 s), so a live server is never silent for longer. Past that we ping it ourselves, and
# give up on a connection still silent at the deadline: a dead TCP path would otherwise hang until
# the kernel's retransmission timeout, many minutes.
_KEEPALIVE_IDLE = 25.0
_KEEPALIVE_DEAD = 35.0
# Restarting's numbers come from the server: bounded so that a hostile one cannot park us.
_RESTART_WAIT_MAX = 60.0
# Junk from a server is logged at WARNING this many times per connection, then at DEBUG.
_WARN_LIMIT = 3


class _RefusedError(TransferError):
    """The relay denied our authentication: retrying soon will not change its mind."""


class _ViolationError(TransferError):
    """The server does not speak the iroh relay protocol (or not a version we know)."""


class _NotPublicError(TransferError):
    """A relay that must be on a public address is not."""


class RelayClient:
    """A connection to one relay server, kept up until `close`; see the module docstring.

    `on_datagrams(source_key, datagrams)` runs on the event loop for every datagram frame
    received (a batch already split); `on_state(state)` on every change of `state`. Both should
    return quickly. Counters for tests and status lines: `dropped` (datagrams not sent: queue
    full or not connected), `invalid_frames` (frames from the server that were skipped),
    `pings_answered`. `displaced` is true while another connection with the same key has taken
    over: sending works, nothing is received. `holder` says who else could hold the key, for the
    log that says so (a node's key: another process of the node; a rendezvous key, whose seed is
    public: anyone). `keepalive` is (idle, dead): after how many seconds of silence the relay is
    pinged, and after how many it is given up.
    """

    def __init__(
        self,
        url: str,
        identity: Identity,
        on_datagrams: Callable[[bytes, list[bytes]], None],
        on_state: Callable[[RelayState], None] | None = None,
        *,
        public_only: bool = False,
        holder: str = "another process with this node's key",
        keepalive: tuple[float, float] = (_KEEPALIVE_IDLE, _KEEPALIVE_DEAD),
    ) -> None:
        self.url = url
        self._holder = holder
        self._keepalive_idle, self._keepalive_dead = keepalive
        self._public_only = public_only
        self._ws_url = _websocket_url(url)
        # iroh's relay names are absolute (use1-1.relay.n0.iroh.link.): the dot is right for
        # DNS but not in TLS's server name, which certificates are checked against.
        host = urlsplit(url).hostname or ""
        self._tls_name = host.rstrip(".") if self._ws_url.startswith("wss:") else None
        self._identity = identity
        self._public_key = identity.peer_id.raw
        self._on_datagrams = on_datagrams
        self._on_state = on_state
        self.state: RelayState = "disconnected"
        self.protocol: str | None = None
        self.dropped = 0
        self.invalid_frames = 0
        self.pings_answered = 0
        self.displaced = False
        self.last_error: str | None = None
        self.refused: TransferError | None = None
        """Why the relay will not be asked again (denied, or not public), once it is so."""
        self._fatal: TransferError | None = None
        self._queue: deque[tuple[bytes, bytes]] = deque()
        self._queued = 0
        self._control: deque[bytes] = deque()
        self._wakeup = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._waiters: list[asyncio.Future[None]] = []
        self._warnings = 0
        self._last_rx = 0.0
        self._restart: tuple[float, float] | None = None  # announced: (wait, try for), seconds

    # -- public API ---------------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting in a background task of the running loop (once)."""
        if self._task is None and self.state != "closed":
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"relay {self.url}"
            )

    async def wait_connected(self, timeout: float) -> None:
        """Return once connected; raise `TransferError` on denial, a server that does not speak
        the protocol, `close`, or when `timeout` seconds pass first."""
        try:
            async with asyncio.timeout(timeout):
                while self.state != "connected":
                    if self.state == "closed":
                        raise TransferError(f"The relay client for {self.url} is closed.")
                    if self._fatal is not None:
                        raise TransferError(str(self._fatal))
                    waiter = asyncio.get_running_loop().create_future()
                    self._waiters.append(waiter)
                    await waiter
        except TimeoutError:
            detail = f" (last error: {self.last_error})" if self.last_error else ""
            raise TransferError(
                f"Could not connect to the relay {self.url} within {timeout:g} s{detail}."
            ) from None

    def send(self, peer_key: bytes, datagrams: Sequence[bytes]) -> None:
        """Queue `datagrams` for the peer whose Ed25519 key is `peer_key`; never blocks.

        Best effort like UDP: dropped while not connected and beyond `QUEUE_LIMIT` bytes
        waiting. A datagram longer than `MAX_DATAGRAM` is a caller's bug (ValueError).
        """
        if len(peer_key) != _KEY:
            raise ValueError(f"a peer key is {_KEY} bytes, not {len(peer_key)}")
        if self.state != "connected":
            self.dropped += len(datagrams)
            return
        room = QUEUE_LIMIT - self._queued
        queue = self._queue
        for datagram in datagrams:
            size = len(datagram)
            if size > MAX_DATAGRAM:
                self._queued = QUEUE_LIMIT - room
                raise ValueError(f"a relayed datagram is at most {MAX_DATAGRAM} bytes")
            if size > room:
                self.dropped += 1
            elif size:
                room -= size
                queue.append((peer_key, datagram))
        self._queued = QUEUE_LIMIT - room
        if queue:
            self._wakeup.set()

    @property
    def running(self) -> bool:
        """Whether it is connected or still trying to be (false once closed or refused)."""
        return self._task is not None and not self._task.done()

    @property
    def queued_bytes(self) -> int:
        """Bytes of datagrams waiting to be written to the relay."""
        return self._queued

    async def close(self) -> None:
        """Disconnect and stop reconnecting; idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._set_state("closed")

    # -- the connection loop ------------------------------------------------------------------

    async def _run(self) -> None:
        delay = _BACKOFF_FIRST
        quick_until = 0.0
        loop = asyncio.get_running_loop()
        import websockets

        while True:
            self._set_state("connecting")
            wait: float | None = None
            try:
                ws = await self._connect()
            except (_RefusedError, _NotPublicError) as error:
                # Asking again would get the same answer: stop here.
                self.refused = error
                self._fail(str(error), fatal=error)
                self._set_state("disconnected")
                return
            except _ViolationError as error:
                self._fail(str(error), fatal=error)
            except ssl.SSLCertVerificationError as error:  # an impostor, or a misconfiguration
                message = (
                    f"The relay {self.url} has an invalid TLS certificate ({error.verify_message})."
                )
                self._fail(message, fatal=TransferError(message))
            except (OSError, TimeoutError, websockets.exceptions.WebSocketException) as error:
                self._fail(f"cannot reach it: {_describe(error)}")
            except Exception as error:  # a surprise must not end the task that reconnects
                _log.exception("relay %s: unexpected failure while connecting", self.url)
                self._fail(f"unexpected failure: {_describe(error)}")
            else:
                delay = _BACKOFF_FIRST
                self._restart = None
                try:
                    await self._session(ws)
                except Exception as error:  # as above: log it, reconnect
                    _log.exception("relay %s: unexpected failure", self.url)
                    self.last_error = f"unexpected failure: {_describe(error)}"
                finally:
                    self._queue.clear()
                    self._queued = 0
                    self._control.clear()
                    await ws.close()
                _log.info("relay %s disconnected: %s", self.url, self.last_error)
                if self._restart is not None:
                    wait, try_for = self._restart
                    quick_until = loop.time() + wait + try_for
            self._set_state("disconnected")
            if wait is None:
                wait = delay * random.uniform(0.8, 1.2)
                if loop.time() >= quick_until:
                    delay = min(delay * 2, _BACKOFF_MAX)
            await asyncio.sleep(wait)

    def _fail(self, message: str, fatal: TransferError | None = None) -> None:
        self.last_error = message
        self._fatal = fatal
        _log.debug("relay %s: connection attempt failed: %s", self.url, message)
        self._wake_waiters()

    async def _connect(self) -> ClientConnection:
        """Open the WebSocket and authenticate; the connection is ready for datagrams."""
        import websockets
        from websockets.typing import Subprotocol

        tls: dict[str, Any] = {"server_hostname": self._tls_name} if self._tls_name else {}
        if self._public_only:
            tls |= {"host": await self._public_address(), "proxy": None}
        ws = await websockets.connect(
            self._ws_url,
            subprotocols=[Subprotocol(name) for name in _SUBPROTOCOLS],
            compression=None,
            open_timeout=_OPEN_TIMEOUT,
            ping_interval=None,  # the relay protocol has its own ping, which the server answers
            close_timeout=2,
            max_size=2 * MAX_PAYLOAD,  # a larger frame is junk; refused by the library
            max_queue=64,
            write_limit=256 * 1024,
            user_agent_header="ringdrop",
            **tls,
        )
        try:
            async with asyncio.timeout(_OPEN_TIMEOUT):
                await self._handshake(ws)
        except BaseException:
            await ws.close()
            raise
        return ws

    async def _public_address(self) -> str:
        """The relay's address, checked to be public, to connect to instead of its name."""
        parts = urlsplit(self.url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "https" else 80)
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            if not ipaddress.ip_address(address.partition("%")[0]).is_global:
                raise _NotPublicError(
                    f"The relay {self.url} is not used: it is at {address}, not a public "
                    "address, and it is not one of the relays configured here."
                )
        if not addresses:
            raise OSError(f"{host} has no address")
        return addresses[0]

    async def _handshake(self, ws: ClientConnection) -> None:
        if ws.subprotocol not in (V1, V2):
            raise _ViolationError(
                f"The server at {self.url} is not an iroh relay: it chose the WebSocket "
                f"subprotocol {ws.subprotocol!r}, not one of {V2} or {V1}."
            )
        frame = await self._handshake_frame(ws)
        if isinstance(frame, codec.Challenge):
            signature = self._identity.sign(codec.signed_message(frame))
            await ws.send(codec.client_auth(self._public_key, signature))
            frame = await self._handshake_frame(ws)
        if isinstance(frame, codec.DeniesAuth):
            raise _RefusedError(f"The relay {self.url} refused this node ({frame.reason}).")
        if not isinstance(frame, codec.ConfirmsAuth):
            raise self._garbled("a second challenge instead of a verdict")
        self.protocol = ws.subprotocol

    async def _handshake_frame(
        self, ws: ClientConnection
    ) -> codec.Challenge | codec.ConfirmsAuth | codec.DeniesAuth:
        message = await ws.recv()
        if isinstance(message, str):
            raise self._garbled("a text message")
        try:
            return codec.decode_handshake(message)
        except ProtocolError as error:
            raise self._garbled(str(error)) from None

    def _garbled(self, what: str) -> _ViolationError:
        return _ViolationError(
            f"The server at {self.url} does not speak the iroh relay protocol: during the "
            f"handshake it sent {what}."
        )

    async def _session(self, ws: ClientConnection) -> None:
        """Carry datagrams until the connection ends or the server announces a restart."""
        self._fatal = None
        self.last_error = None
        self._warnings = 0
        self.displaced = False
        loop = asyncio.get_running_loop()
        self._last_rx = loop.time()
        _log.info("relay %s connected (%s)", self.url, self.protocol)
        self._set_state("connected")
        # Whichever of the three ends first (closed connection, restart notice, silence, or a
        # bug) ends the session: none of them is any use without the others.
        tasks = [
            loop.create_task(self._read_loop(ws)),
            loop.create_task(self._write_loop(ws)),
            loop.create_task(self._keepalive(ws)),
        ]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            outcomes = await asyncio.gather(*tasks, return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, Exception):
                raise outcome  # a bug: _run logs it and reconnects

    async def _read_loop(self, ws: ClientConnection) -> None:
        import websockets

        loop = asyncio.get_running_loop()
        try:
            while True:
                message = await ws.recv()
                self._last_rx = loop.time()
                if isinstance(message, str):
                    self._invalid("a text message")
                else:
                    self._on_frame(message)
                    if self._restart is not None:
                        self.last_error = "the relay announced a restart"
                        return
        except websockets.exceptions.ConnectionClosed as error:
            self.last_error = self.last_error or f"connection closed ({_describe(error)})"

    async def _write_loop(self, ws: ClientConnection) -> None:
        import websockets

        try:
            while True:
                await self._wakeup.wait()
                # One pass of the loop lets every sender of this burst queue its datagrams, so
                # that they leave in as few frames as possible.
                await asyncio.sleep(0)
                self._wakeup.clear()
                control, queue = self._control, self._queue
                while control or queue:
                    await ws.send(control.popleft() if control else self._next_frame())
        except websockets.exceptions.ConnectionClosed as error:
            self.last_error = f"connection closed while sending ({_describe(error)})"

    async def _keepalive(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(self._keepalive_idle / 3)
            silent = loop.time() - self._last_rx
            if silent > self._keepalive_dead:
                self.last_error = f"the relay was silent for {silent:.0f} s"
                await ws.close()  # ends the read loop
                return
            if silent > self._keepalive_idle:
                self._queue_control(codec.ping(random.randbytes(8)))

    def _queue_control(self, frame: bytes) -> None:
        self._control.append(frame)
        self._wakeup.set()

    def _next_frame(self) -> bytes:
        """Take the next run of datagrams to one peer, equal in size but for a shorter last one,
        off the queue as one frame of at most 64 KiB."""
        frame, taken = codec.next_datagrams(self._queue)
        self._queued -= taken
        return frame

    # -- frames from the server ---------------------------------------------------------------

    def _on_frame(self, message: bytes) -> None:
        try:
            frame = decode(message, self.protocol)
        except ProtocolError as error:
            # Skipped, not fatal: a newer server's additions must not cost us the connection.
            self._invalid(str(error))
            return
        if isinstance(frame, Datagrams):
            if not frame.datagrams:
                return  # no datagram in it: nothing to deliver
            try:
                self._on_datagrams(frame.source, frame.datagrams)
            except Exception:
                _log.exception("relay %s: the datagram handler failed", self.url)
        elif isinstance(frame, codec.Ping):
            self._queue_control(codec.pong(frame))
            self.pings_answered += 1
        elif isinstance(frame, codec.EndpointGone):
            _log.debug("relay %s: peer %s is gone", self.url, frame.key.hex()[:16])
        elif isinstance(frame, codec.Restarting):
            wait = min(frame.wait, _RESTART_WAIT_MAX)
            _log.info("relay %s is restarting: reconnecting in %.1f s", self.url, wait)
            self._restart = (wait, min(frame.try_for, _RESTART_WAIT_MAX))
        elif isinstance(frame, codec.Status):
            self._on_status(frame.code)
        elif isinstance(frame, codec.Health):
            _log.warning("relay %s reports a problem: %s", self.url, frame.problem)
        # A Pong needs nothing: any frame at all proves the connection alive (see _keepalive).

    def _on_status(self, code: int) -> None:
        if code == 1:
            # The server keeps the newest connection of a key active and stacks the older
            # ones, promoting one again (status 0) when the newest leaves. Reconnecting would
            # only take the key back from the other process, which would take it back ...
            self.displaced = True
            _log.warning(
                "relay %s: %s connected; nothing is received here until it leaves",
                self.url,
                self._holder,
            )
        elif code == 0:
            if self.displaced:
                _log.info("relay %s: receiving again", self.url)
            self.displaced = False
        else:
            _log.debug("relay %s: unknown status %d", self.url, code)

    def _invalid(self, what: str) -> None:
        self.invalid_frames += 1
        self._warnings += 1
        level = logging.WARNING if self._warnings <= _WARN_LIMIT else logging.DEBUG
        _log.log(level, "relay %s sent %s; skipped", self.url, what)

    # -- state --------------------------------------------------------------------------------

    def _set_state(self, state: RelayState) -> None:
        if state == self.state:
            return
        self.state = state
        self._wake_waiters()
        if self._on_state is not None:
            try:
                self._on_state(state)
            except Exception:
                _log.exception("relay %s: the state handler failed", self.url)

    def _wake_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def __repr__(self) -> str:
        return f"RelayClient({self.url!r}, {self.state})"


def _websocket_url(url: str) -> str:
    """The relay's WebSocket address: same host, path `/relay`, ws or wss for http or https."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "ws": "ws", "https": "wss", "wss": "wss"}.get(parts.scheme)
    if scheme is None or not parts.hostname:
        raise ValueError(f"not a relay URL (http:// or https://, with a host): {url!r}")
    _ = parts.port  # raises ValueError for a port that is not one
    return f"{scheme}://{parts.netloc}{_RELAY_PATH}"


def _describe(error: BaseException) -> str:
    return str(error) or type(error).__name__


async def relay_latency(url: str, timeout: float) -> float | None:
    """Seconds for one HTTP(S) request to the relay's probe path `/ping` on an open connection,
    or None if it does not answer 200 within `timeout`."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    tls = parts.scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        return None
    host_header = parts.netloc.rpartition("@")[2]
    request = (
        f"GET {_PROBE_PATH} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: ringdrop\r\n"
        "Connection: close\r\n\r\n"
    ).encode("ascii", "replace")
    loop = asyncio.get_running_loop()
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection(
                parts.hostname,
                port,
                ssl=ssl.create_default_context() if tls else None,
                server_hostname=parts.hostname.rstrip(".") if tls else None,
            )
            started = loop.time()
            writer.write(request)
            status = await reader.readline()
            elapsed = loop.time() - started
    except (OSError, TimeoutError, ValueError, UnicodeError):
        return None
    finally:
        if writer is not None:
            writer.transport.abort()  # nothing more to say, and no waiting for a TLS goodbye
    fields = status.split(None, 2)
    if len(fields) < 2 or not fields[0].startswith(b"HTTP/") or fields[1] != b"200":
        return None
    return elapsed


async def choose_home_relay(urls: Sequence[str], timeout: float = 3.0) -> str | None:
    """The relay among `urls` with the lowest probe latency (all probed at once), or None when
    none answers within `timeout`."""
    latencies = await asyncio.gather(*(relay_latency(url, timeout) for url in urls))
    answered = [(latency, index) for index, latency in enumerate(latencies) if latency is not None]
    if not answered:
        return None
    _log.debug(
        "relay latencies: %s",
        ", ".join(f"{urls[i]} {latency * 1000:.0f} ms" for latency, i in answered),
    )
    return urls[min(answered)[1]]
