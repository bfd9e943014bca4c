"""The network layer: QUIC connections between ringdrop nodes, and the only asyncio code.

    server = await serve(identity, port, handler)            # handler(peer_id, request) -> Reply
    connection = await connect(identity, peer_id, addresses)
    header, body = await connection.request(GetRequest(content_hash, ranges))
    async for piece in body: decoder.write(piece)

**Who is who.** Both ends are Ed25519 keys, and each proof is bound to the one connection:

- The sharer's TLS 1.3 certificate is self-signed over its identity key. TLS makes the server
  sign the handshake transcript (CertificateVerify) with that key, so completing the handshake
  proves possession on this very connection; the client then compares the certificate's key to
  the peer id it dialled and closes with `WrongPeerError` on a mismatch. No CA, no names, no
  session resumption (a resumed session would carry no certificate). Neither library has a
  verification hook, so the client sets `CERT_NONE` and reads the certificate afterwards,
  before it sends a single stream byte.
- The receiver proves its key on the first stream (protocol.ClientAuth/ServerAuth): the server
  sends a fresh 32-byte nonce, the client signs a domain-separated message holding that nonce
  and the server's peer id. A proof replayed on another connection fails (other nonce), and one
  relayed by a server the client mistook for the sharer fails (other server id, which the
  client took from TLS). TLS client certificates would do too, but aioquic supports them only
  in tests, and qh3 not for Ed25519 keys by default.
- A server serves nothing before the proof; requests that arrive first wait (bounded by the
  stream limit and the protocol's request size limit), and a peer that does not prove its key
  within `Limits.auth_timeout` is disconnected.

**Throughput.** aioquic spends Python time per packet, so the levers are packets per byte,
work per packet and idle time. Towards a loopback address datagrams are 16000 bytes (aioquic
cannot frame more than 16383 bytes of a stream in one packet); elsewhere QUIC's 1200, which no
path is too small for (no PMTU black holes; qh3 probes upwards to 1452 on its own). The socket is
read in bursts with one flush per burst; a timer due within a millisecond is polled, since epoll
would sleep a whole one (which caps a paced sender); socket buffers and flow-control windows are
several MiB. A sender pulls the next piece of content only when the QUIC library holds less than
`Limits.send_buffer` for the stream (aioquic: unsent plus unacknowledged bytes, since its
congestion window grows without bound on a lossless path), so memory stays bounded whatever
the file size. Pieces of about 256 KiB suit it.

**Backends.** aioquic is the dependency; qh3 (an aioquic fork with a Rust core) is optional.
Measured with bench/bench_transfer.py, aioquic is the faster on loopback (its 16 KB datagrams;
qh3 caps datagrams at 1472 bytes) and qh3 is several times faster on a real 1500-byte-MTU path.
So by default each connection takes aioquic towards a loopback address and qh3, if installed,
towards any other; `backend=` forces one.
"""

from typing import TYPE_CHECKING

from ringdrop._lazy import lazy_names
from ringdrop.transport._backend import BACKENDS, BackendName, available_backends
from ringdrop.transport._client import Connection, Dialer, ResponseBody, connect
from ringdrop.transport._paths import PathInfo
from ringdrop.transport.relay import RelayState, choose_home_relay

if TYPE_CHECKING:
    from ringdrop.transport._server import Handler, Known, Limits, Reach, Reply, Server, serve

# The server's names are imported when first used: a command that only dials (`get`) does not
# load the server side to start.
_SERVER = frozenset({"Handler", "Known", "Limits", "Reach", "Reply", "Server", "serve"})

__all__ = [
    "BACKENDS",
    "BackendName",
    "Connection",
    "Dialer",
    "Handler",
    "Known",
    "Limits",
    "PathInfo",
    "Reach",
    "RelayState",
    "Reply",
    "ResponseBody",
    "Server",
    "available_backends",
    "choose_home_relay",
    "connect",
    "serve",
]


__getattr__ = lazy_names(__name__, dict.fromkeys(_SERVER, "ringdrop.transport._server"))
