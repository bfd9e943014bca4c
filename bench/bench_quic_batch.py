"""What qh3 costs per datagram through each of its calls, in one process, no sockets.

    python bench/bench_quic_batch.py [--mib 64] [--repeat 3]

A qh3 client and server (ringdrop's settings, 1452-byte datagrams) move --mib MiB on one stream
in memory, the client acknowledging as it would. Each way of driving them is one variant:

- receive: the wrapper's `receive_datagram` per datagram (what ringdrop did), the core's
  `receive_many_datagrams` per run of datagrams, the core's `receive_gro_buffer` per run of
  equal-size datagrams joined as the kernel's UDP_GRO hands them over (up to 64 or 64 KB);
- send: the wrapper's `datagrams_to_send` (what ringdrop did), a loop on the core's
  `poll_transmit` (what ringdrop does now).

Reported: microseconds per datagram spent in those calls and in turning the core's events into
the wrapper's (best of --repeat). Pacing is off the clock: time is moved on to each timer.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import nacl.signing  # noqa: E402

from ringdrop.identity import Identity  # noqa: E402
from ringdrop.transport._backend import QuicLike, Settings, TlsIdentity, load_backend  # noqa: E402
from ringdrop.transport._link import MTU_DATAGRAM, PEER  # noqa: E402
from ringdrop.transport._server import _destination  # noqa: E402

MIB = 2**20
SETTINGS = Settings(MTU_DATAGRAM, max_data=16 * MIB, max_stream_data=8 * MIB, idle_timeout=60)
IDENTITY = Identity(nacl.signing.SigningKey(b"bench".ljust(32, b".")))
GRO_SEGMENTS, GRO_BYTES = 64, 65000

Batch = list[Any]  # datagrams, or (buffer, segment size) pairs
Receive = Callable[[QuicLike, Batch, float], None]
Prepare = Callable[[list[bytes]], Batch]
Send = Callable[[QuicLike, float], list[bytes]]


def by_wrapper(quic: QuicLike, datagrams: Batch, now: float) -> None:
    for data in datagrams:
        quic.receive_datagram(data, PEER, now)


def by_core_many(quic: QuicLike, datagrams: Batch, now: float) -> None:
    quic._core.receive_many_datagrams(datagrams, PEER, now)  # type: ignore[attr-defined]
    quic._drain_core()  # type: ignore[attr-defined]


def by_core_gro(quic: QuicLike, buffers: Batch, now: float) -> None:
    core = quic._core  # type: ignore[attr-defined]
    for buffer, segment in buffers:
        core.receive_gro_buffer(buffer, segment, PEER, now)
    quic._drain_core()  # type: ignore[attr-defined]


def as_sent(datagrams: list[bytes]) -> Batch:
    return datagrams


def coalesced(datagrams: list[bytes]) -> Batch:
    """Runs of equal-size datagrams (a shorter one may end a run), joined, as UDP_GRO hands
    them over (done before the clock starts: the kernel's work, not QUIC's)."""
    out: Batch = []
    start = 0
    while start < len(datagrams):
        size, end = len(datagrams[start]), start + 1
        limit = min(len(datagrams), start + GRO_SEGMENTS, start + GRO_BYTES // size)
        while end < limit and len(datagrams[end]) == size:
            end += 1
        if end < limit and len(datagrams[end]) < size:
            end += 1
        out.append((b"".join(datagrams[start:end]), size))
        start = end
    return out


def send_by_wrapper(quic: QuicLike, now: float) -> list[bytes]:
    return [data for data, _ in quic.datagrams_to_send(now)]


def send_by_core(quic: QuicLike, now: float) -> list[bytes]:
    poll = quic._core.poll_transmit  # type: ignore[attr-defined]
    out = []
    while (transmit := poll(now)) is not None:
        out.append(transmit[0])
    return out


def transfer(
    size: int, receive: Receive, send: Send, prepare: Prepare = as_sent
) -> tuple[float, float, int]:
    """Seconds in the client's receive calls, in the server's send calls, and datagrams."""
    backend = load_backend("qh3")
    client = backend.client(SETTINGS)
    client.connect(PEER, 1.0)
    first = backend.transmit(client, 1.0)
    header = _destination(first[0])
    assert header is not None
    server = backend.server(SETTINGS, TlsIdentity.of(IDENTITY), header[0])
    backend.receive(server, first, PEER, 1.0)
    now = 1.0
    received, receiving, sending, count, started = 0, 0.0, 0.0, 0, False
    payload = os.urandom(MIB)
    queued = 0
    while received < size:
        if started and queued < size and backend.buffered_bytes(server, 1) < 4 * MIB:
            server.send_stream_data(1, payload)
            queued += len(payload)
        t0 = time.perf_counter()
        to_client = send(server, now)
        t1 = time.perf_counter()
        if to_client and started:
            batch = prepare(to_client)
            t2 = time.perf_counter()
            receive(client, batch, now)
            receiving += time.perf_counter() - t2
            sending += t1 - t0
            count += len(to_client)
        elif to_client:
            by_wrapper(client, to_client, now)
        while (event := client.next_event()) is not None:
            if isinstance(event, backend.events.HandshakeCompleted):
                started = True
            elif isinstance(event, backend.events.StreamDataReceived):
                received += len(event.data)
        to_server = backend.transmit(client, now)
        if to_server:
            backend.receive(server, to_server, PEER, now)
            backend.drain(server)
            while server.next_event() is not None:
                pass
        if not to_client and not to_server:
            timers = [t for q in (client, server) if (t := q.get_timer()) is not None]
            now = max(now, min(timers))
            for quic in (client, server):
                if (at := quic.get_timer()) is not None and at <= now:
                    quic.handle_timer(now)
    return receiving, sending, count


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    size = args.mib * MIB
    receives: dict[str, tuple[Receive, Prepare]] = {
        "wrapper receive_datagram": (by_wrapper, as_sent),
        "core receive_many_datagrams": (by_core_many, as_sent),
        "core receive_gro_buffer": (by_core_gro, coalesced),
    }
    sends = {"wrapper datagrams_to_send": send_by_wrapper, "core poll_transmit loop": send_by_core}
    best_receive: dict[str, float] = {}
    best_send: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, (receive, prepare) in receives.items():  # each with the core's send
            receiving, _, count = transfer(size, receive, send_by_core, prepare)
            best_receive[name] = min(best_receive.get(name, 1e9), receiving / count * 1e6)
        for name, send in sends.items():  # each with the core's GRO receive
            _, sending, count = transfer(size, by_core_gro, send, coalesced)
            best_send[name] = min(best_send.get(name, 1e9), sending / count * 1e6)
    print(f"qh3, {args.mib} MiB in memory, best of {args.repeat}; microseconds per datagram")
    for name, value in best_receive.items():
        print(f"  receive  {name:<30} {value:5.2f}")
    for name, value in best_send.items():
        print(f"  send     {name:<30} {value:5.2f}")


if __name__ == "__main__":
    main()
