"""The QUIC libraries behind the transport: aioquic (always there) and qh3 (used if installed).

Both offer the same sans-IO `QuicConnection`; they differ in how a connection is configured,
how the peer's certificate and a stream's send backlog are read, and in their event classes.
Everything that differs lives here, so the rest of the transport speaks to `QuicLike`.
"""

from __future__ import annotations

import datetime
import importlib.util
import ipaddress
import ssl
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol

from ringdrop.identity import Identity
from ringdrop.protocol import ALPN

# cryptography's X.509 and key classes are imported where they are used: a receiver starting
# `ringdrop get` needs them only once a handshake has completed, and they take long to load.
if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from qh3._hazmat import QuicConnectionCore

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendName",
    "NetworkAddress",
    "QuicLike",
    "Settings",
    "TlsIdentity",
    "available_backends",
    "backend_for",
    "is_loopback",
    "load_backend",
]

BackendName = Literal["aioquic", "qh3"]
BACKENDS: tuple[BackendName, ...] = ("aioquic", "qh3")

# (host, port), or for IPv6 (host, port, flow info, scope id)
NetworkAddress = tuple[str, int] | tuple[str, int, int, int]


class QuicLike(Protocol):
    """The part of a sans-IO QUIC connection (aioquic's or qh3's) that the transport uses."""

    host_cid: bytes

    def connect(self, addr: NetworkAddress, now: float) -> None: ...
    def receive_datagram(self, data: bytes, addr: NetworkAddress, now: float) -> None: ...
    def datagrams_to_send(self, now: float) -> list[tuple[bytes, NetworkAddress]]: ...
    def get_timer(self) -> float | None: ...
    def handle_timer(self, now: float) -> None: ...
    def next_event(self) -> object: ...
    def get_next_available_stream_id(self, is_unidirectional: bool = False) -> int: ...
    def send_stream_data(self, stream_id: int, data: bytes, end_stream: bool = False) -> None: ...
    def reset_stream(self, stream_id: int, error_code: int) -> None: ...
    def stop_stream(self, stream_id: int, error_code: int) -> None: ...
    def close(
        self, error_code: int = 0, frame_type: int | None = None, reason_phrase: str = ""
    ) -> None: ...


@dataclass(frozen=True, slots=True)
class TlsIdentity:
    """A server's TLS credentials: a self-signed certificate over its identity key."""

    certificate: x509.Certificate
    key: Ed25519PrivateKey

    @classmethod
    def of(cls, identity: Identity) -> TlsIdentity:
        """The certificate is self-signed: what the client checks is its key, not a CA."""
        from cryptography import x509
        from cryptography.x509.oid import NameOID

        key = identity.tls_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(identity.peer_id))])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(int.from_bytes(identity.peer_id.raw[:16], "big") >> 1)
            .not_valid_before(datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC))
            .not_valid_after(datetime.datetime(9999, 12, 31, tzinfo=datetime.UTC))
            .sign(key, None)
        )
        return cls(certificate, key)

    def pkcs8(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


@dataclass(frozen=True, slots=True)
class Settings:
    """What the transport tunes per connection."""

    datagram_size: int
    max_data: int
    max_stream_data: int
    idle_timeout: float


class Backend(ABC):
    """One QUIC library."""

    name: ClassVar[BackendName]
    events: ModuleType

    @abstractmethod
    def client(self, settings: Settings) -> QuicLike:
        """A client connection that accepts any certificate: the caller checks its key."""

    @abstractmethod
    def server(
        self,
        settings: Settings,
        tls: TlsIdentity,
        original_cid: bytes,
        retry_cid: bytes | None = None,
    ) -> QuicLike:
        """A server connection for a client's first Initial packet; `retry_cid` is the source
        connection id of the Retry the client answered, if it had to answer one."""

    def has_path(self, quic: QuicLike) -> bool:
        """Whether the connection knows where its peer is, so that it can send it anything.

        aioquic learns the path from the first well-formed packet; until then any attempt to
        send (a CONNECTION_CLOSE included) fails with an IndexError.
        """
        return True

    @abstractmethod
    def peer_key(self, quic: QuicLike) -> bytes | None:
        """The raw Ed25519 key of the server's certificate, after the handshake."""

    def receive(
        self, quic: QuicLike, datagrams: list[bytes], addr: NetworkAddress, now: float
    ) -> None:
        """Feed datagrams that came one way, in order; `drain` then makes their events
        `quic.next_event`'s."""
        for data in datagrams:
            quic.receive_datagram(data, addr, now)

    def receive_coalesced(
        self, quic: QuicLike, buffer: bytes, segment: int, addr: NetworkAddress, now: float
    ) -> None:
        """Feed the datagrams of a buffer the kernel coalesced (each `segment` bytes, the last
        maybe shorter)."""
        self.receive(
            quic, [buffer[at : at + segment] for at in range(0, len(buffer), segment)], addr, now
        )

    def handle_timer(self, quic: QuicLike, now: float) -> None:
        """The connection's timer is due; `drain` then makes its events `next_event`'s."""
        quic.handle_timer(now)

    def holds(self, quic: QuicLike) -> bool:
        """Whether the library keeps what it received to itself until `drain`, and with it
        the peer's flow control credit: only then can a receiver slow its peer down by not
        draining, instead of by dropping datagrams."""
        return False

    def drain(self, quic: QuicLike) -> None:
        """Make the events of what was received and of timers `quic.next_event`'s."""
        return None  # aioquic makes them so as it receives

    def transmit(self, quic: QuicLike, now: float) -> list[bytes]:
        """The datagrams the connection wants sent now (all to its one peer address)."""
        return [data for data, _ in quic.datagrams_to_send(now)]

    @abstractmethod
    def buffered_bytes(self, quic: QuicLike, stream_id: int) -> int:
        """Bytes the library holds for a stream: at least those not yet sent once."""


_ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")


def _raw_ed25519(key: object) -> bytes | None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if not isinstance(key, Ed25519PublicKey):
        return None
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


class _Aioquic(Backend):
    name = "aioquic"

    def __init__(self) -> None:
        from aioquic.quic import events
        from aioquic.quic.configuration import QuicConfiguration
        from aioquic.quic.connection import QuicConnection

        self.events = events
        self._configuration = QuicConfiguration
        self._connection = QuicConnection

    def client(self, settings: Settings) -> QuicLike:
        configuration = self._configuration(is_client=True, **_options(settings))
        quic: QuicLike = self._connection(configuration=configuration)
        return quic

    def server(
        self,
        settings: Settings,
        tls: TlsIdentity,
        original_cid: bytes,
        retry_cid: bytes | None = None,
    ) -> QuicLike:
        configuration = self._configuration(
            is_client=False, certificate=tls.certificate, private_key=tls.key, **_options(settings)
        )
        quic: QuicLike = self._connection(
            configuration=configuration,
            original_destination_connection_id=original_cid,
            retry_source_connection_id=retry_cid,
        )
        return quic

    def has_path(self, quic: QuicLike) -> bool:
        return bool(getattr(quic, "_network_paths", True))

    def peer_key(self, quic: QuicLike) -> bytes | None:
        # aioquic has no public accessor; its TLS context keeps the certificate it verified
        # the CertificateVerify signature with (the attribute exists since aioquic 0.9).
        from cryptography import x509

        certificate = getattr(getattr(quic, "tls", None), "_peer_certificate", None)
        if not isinstance(certificate, x509.Certificate):
            return None
        return _raw_ed25519(certificate.public_key())

    def buffered_bytes(self, quic: QuicLike, stream_id: int) -> int:
        # No public accessor either. aioquic's congestion window grows without bound on a
        # lossless path, so the sender's whole buffer (unsent and unacknowledged) is what
        # memory has to be bounded by.
        stream = getattr(quic, "_streams", {}).get(stream_id)
        if stream is None:
            return 0
        return len(stream.sender._buffer)


class _Qh3(Backend):
    """qh3 runs its packet loop in Rust and takes datagrams in batches, but its Python wrapper
    (`QuicConnection`) still works per datagram: an address check, a header parse, a slice per
    datagram for its logger, even with no logger. Once the handshake is done, batches and timer
    ticks go to the wrapper's core directly, and what the wrapper does after each call (turning
    the core's events into its own, `_drain_core`) is done when the link drains; the handshake,
    with its retries, version changes and keys, stays with the wrapper. Where a qh3 lacks those
    parts, everything goes through the wrapper's public calls."""

    name = "qh3"

    def __init__(self) -> None:
        from qh3._hazmat import (
            Certificate,
            Ed25519PrivateKey,
            QuicConnectionCore,
            X25519KeyExchange,
        )
        from qh3.quic import events
        from qh3.quic.configuration import QuicConfiguration
        from qh3.quic.connection import QuicConnection
        from qh3.tls import SignatureAlgorithm

        self.events = events
        self._configuration = QuicConfiguration
        self._connection = QuicConnection
        self._ed25519 = SignatureAlgorithm.ED25519
        self._certificate = Certificate
        self._key = Ed25519PrivateKey
        self._direct = hasattr(QuicConnection, "_drain_core") and all(
            hasattr(QuicConnectionCore, name)
            for name in ("receive_many_datagrams", "receive_gro_buffer", "poll_transmit")
        )
        # The first key exchange sets up qh3's crypto library: some 20 ms of CPU that would
        # otherwise fall in the first handshake, here paid where the library is loaded (on a
        # thread, while the node starts).
        X25519KeyExchange()

    def client(self, settings: Settings) -> QuicLike:
        # qh3 leaves EdDSA out of what a client offers unless asked.
        configuration = self._configuration(
            is_client=True, signature_algorithms=[self._ed25519], **_options(settings)
        )
        quic: QuicLike = self._connection(configuration=configuration)
        return quic

    def server(
        self,
        settings: Settings,
        tls: TlsIdentity,
        original_cid: bytes,
        retry_cid: bytes | None = None,
    ) -> QuicLike:
        from cryptography.hazmat.primitives import serialization

        configuration = self._configuration(
            is_client=False,
            certificate=self._certificate(tls.certificate.public_bytes(serialization.Encoding.DER)),
            private_key=self._key(tls.pkcs8()),
            **_options(settings),
        )
        quic: QuicLike = self._connection(
            configuration=configuration,
            original_destination_connection_id=original_cid,
            retry_source_connection_id=retry_cid,
        )
        return quic

    def peer_key(self, quic: QuicLike) -> bytes | None:
        certificate = quic.get_peercert()  # type: ignore[attr-defined]
        if certificate is None:
            return None
        # qh3 gives the key as DER SubjectPublicKeyInfo; an Ed25519 one is these 12 bytes and
        # the key (RFC 8410), so no X.509 parser needs loading in the middle of a handshake.
        info: bytes = certificate.public_key()
        if len(info) != len(_ED25519_SPKI) + 32 or not info.startswith(_ED25519_SPKI):
            return None
        return info[len(_ED25519_SPKI) :]

    def buffered_bytes(self, quic: QuicLike, stream_id: int) -> int:
        unsent: int = quic.get_send_buffer_size(stream_id)  # type: ignore[attr-defined]
        return unsent

    def _core(self, quic: QuicLike) -> QuicConnectionCore | None:
        """The connection's core once its handshake is done and batches may go to it."""
        if self._direct and getattr(quic, "_handshake_complete", False):
            core: QuicConnectionCore | None = getattr(quic, "_core", None)
            return core
        return None

    def receive(
        self, quic: QuicLike, datagrams: list[bytes], addr: NetworkAddress, now: float
    ) -> None:
        core = self._core(quic)
        if core is None:
            quic.receive_many_datagrams(datagrams, addr, now)  # type: ignore[attr-defined]
        else:
            core.receive_many_datagrams(datagrams, addr, now)

    def receive_coalesced(
        self, quic: QuicLike, buffer: bytes, segment: int, addr: NetworkAddress, now: float
    ) -> None:
        core = self._core(quic)
        if core is None:
            quic.receive_gro_buffer(buffer, segment, addr, now)  # type: ignore[attr-defined]
        else:
            core.receive_gro_buffer(buffer, segment, addr, now)

    def handle_timer(self, quic: QuicLike, now: float) -> None:
        core = self._core(quic)
        if core is None:
            quic.handle_timer(now)
        else:
            core.handle_timer(now)

    def holds(self, quic: QuicLike) -> bool:
        # The core grants flow control credit for stream data as its event is taken.
        return self._core(quic) is not None

    def drain(self, quic: QuicLike) -> None:
        if self._core(quic) is not None:
            quic._drain_core()  # type: ignore[attr-defined]

    def transmit(self, quic: QuicLike, now: float) -> list[bytes]:
        # The wrapper's loop around the same call also parses every packet's header for its
        # logger, logger or not: a third of the sender's per-datagram cost.
        core: QuicConnectionCore | None = getattr(quic, "_core", None) if self._direct else None
        if core is None:
            return super().transmit(quic, now)
        poll = core.poll_transmit
        datagrams = []
        while (transmit := poll(now)) is not None:
            datagrams.append(transmit[0])
        return datagrams


def _options(settings: Settings) -> dict[str, Any]:
    """The configuration both libraries share, by the same names."""
    return {
        "alpn_protocols": [ALPN],
        "max_datagram_size": settings.datagram_size,
        "max_data": settings.max_data,
        "max_stream_data": settings.max_stream_data,
        "idle_timeout": settings.idle_timeout,
        "verify_mode": ssl.CERT_NONE,
    }


_CLASSES: dict[BackendName, type[Backend]] = {"aioquic": _Aioquic, "qh3": _Qh3}
_LOADED: dict[BackendName, Backend] = {}


def available_backends() -> tuple[BackendName, ...]:
    """The QUIC libraries installed here."""
    return tuple(name for name in BACKENDS if importlib.util.find_spec(name) is not None)


def load_backend(name: BackendName) -> Backend:
    if name not in _LOADED:
        if importlib.util.find_spec(name) is None:
            raise ValueError(f"The QUIC library {name} is not installed.")
        _LOADED[name] = _CLASSES[name]()
    return _LOADED[name]


def backend_for(host: str | None, name: BackendName | None = None) -> Backend:
    """The named library, or the faster one for the path to `host` (None: through a relay)."""
    if name is None:
        installed = available_backends()
        loopback = host is not None and is_loopback(host)
        name = "aioquic" if loopback or "qh3" not in installed else "qh3"
    return load_backend(name)


def quic_varint(data: bytes, at: int) -> tuple[int, int]:
    """A QUIC variable-length integer at `at`, and where the next field starts; (-1, `at`) if
    cut off (RFC 9000, 16)."""
    if at >= len(data):
        return -1, at
    length = 1 << (data[at] >> 6)
    if at + length > len(data):
        return -1, at
    value = int.from_bytes(data[at : at + length], "big") & ((1 << (8 * length - 2)) - 1)
    return value, at + length


def unmapped_ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The IP address in `host`, zone dropped, IPv4-mapped IPv6 turned back into IPv4."""
    ip = ipaddress.ip_address(host.partition("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_loopback(host: str) -> bool:
    return unmapped_ip(host).is_loopback
