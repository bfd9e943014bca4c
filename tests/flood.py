"""A hostile sender for the flood tests:

    python -m tests.flood HOST PORT COUNT SECONDS [SOURCES [paced]]

Sends at most COUNT datagrams within at most SECONDS, as fast as it can (or, `paced`, spread
evenly over SECONDS), and prints how many it sent. With SOURCES > 1 they come from that many
loopback addresses (127.0.0.2, 127.0.0.3, …) in turn; otherwise from one socket. A quarter are
random bytes; the rest are shaped like a client's first QUIC v1 Initial (long header, random
connection ids, at least 1200 bytes) with random payloads: well-formed headers, headers whose
packet length overruns the datagram, and ones carrying forged Retry tokens. A pool of datagrams
is built first and sent round-robin, so the same forged Initial also arrives again (a replay).
It never reads an answer: its source address is as good as forged.
"""

from __future__ import annotations

import contextlib
import os
import random
import socket
import struct
import sys
import time

_POOL = 4096


def forged_initial(rng: random.Random, kind: int) -> bytes:
    dcid = rng.randbytes(rng.randint(8, 20))
    scid = rng.randbytes(rng.randint(0, 20))
    first = 0xC0 | rng.randint(0, 15)
    head = bytes([first]) + struct.pack("!I", 1) + bytes([len(dcid)]) + dcid
    head += bytes([len(scid)]) + scid
    size = rng.randint(1200, 1400)
    if kind == 0:  # well-formed: no token, a length that fits the datagram
        head += b"\x00"
        length = size - len(head) - 2
        return head + struct.pack("!H", 0x4000 | length) + rng.randbytes(length)
    if kind == 1:  # a forged token, sometimes with our tokens' prefix
        token = (b"rdT1" if rng.random() < 0.5 else b"") + rng.randbytes(rng.randint(8, 64))
        head += bytes([0x40 | len(token) >> 8, len(token) & 0xFF]) + token
        length = size - len(head) - 2
        return head + struct.pack("!H", 0x4000 | length) + rng.randbytes(length)
    # No token, then a packet length longer than the datagram: the header cannot be parsed.
    return head + b"\x00\x7f\xff" + rng.randbytes(size - len(head) - 3)


def pool(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    datagrams = []
    for index in range(_POOL):
        if index % 4 == 0:
            datagrams.append(rng.randbytes(rng.randint(1, 1500)))
        else:
            datagrams.append(forged_initial(rng, index % 4 - 1))
    return datagrams


def flood(
    host: str, port: int, count: int, seconds: float, sources: int = 1, paced: bool = False
) -> int:
    datagrams = pool(int.from_bytes(os.urandom(4), "big"))
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_DGRAM) for _ in range(sources)]
    if sources > 1:
        for index, sock in enumerate(sockets):
            sock.bind((f"127.0.0.{index + 2}", 0))
    start = time.monotonic()
    deadline = start + seconds
    sent = 0
    while sent < count and (sent % 256 or time.monotonic() < deadline):
        if paced and not sent % 256:
            time.sleep(max(0.0, start + seconds * sent / count - time.monotonic()))
        # A full send queue loses the datagram, as a real network would.
        with contextlib.suppress(OSError):
            sockets[sent % sources].sendto(datagrams[sent % _POOL], (host, port))
        sent += 1
    for sock in sockets:
        sock.close()
    return sent


if __name__ == "__main__":
    host, port, count, seconds = sys.argv[1:5]
    sources = int(sys.argv[5]) if len(sys.argv) > 5 else 1
    paced = sys.argv[6:] == ["paced"]
    print(flood(host, int(port), int(count), float(seconds), sources, paced))
