"""A hole-punching UDP peer for the NAT lab tests, run inside a host namespace:

    python tests/udp_peer.py STUN_HOST STUN_PORT LOCAL_PORT WINDOW_SECONDS NAME

It binds LOCAL_PORT, asks the STUN server for its public mapping and prints it as one JSON
line ({"mapped": [host, port]} or {"mapped": null}), then reads the peer's mapping ("HOST PORT",
or an empty line to stop) from stdin, sends "hello from NAME" to it every 50 ms for at most
WINDOW_SECONDS, and prints {"received": [[text, host, port], ...]}: what arrived on the socket
from anyone but the STUN server. It stops early once it has both received from the peer and sent
five datagrams since, so the peer gets through too.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ringdrop.transport.stun import binding_request, is_stun, parse_binding_response

INTERVAL = 0.05


def stun(sock: socket.socket, server: tuple[str, int]) -> tuple[str, int] | None:
    """Up to 10 binding requests, 100 ms apart; the first mapped address answered."""
    for _ in range(10):
        transaction, request = binding_request()
        sock.sendto(request, server)
        deadline = time.monotonic() + 0.1
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                answer = sock.recv(2048)
            except TimeoutError:
                break
            mapped = parse_binding_response(answer, transaction)
            if mapped is not None:
                return mapped
    return None


def punch(
    sock: socket.socket, peer: tuple[str, int], window: float, name: str
) -> list[list[object]]:
    received: list[list[object]] = []
    after_first = 0
    deadline = time.monotonic() + window
    while time.monotonic() < deadline and after_first < 5:
        sock.sendto(f"hello from {name}".encode(), peer)
        if received:
            after_first += 1
        next_send = time.monotonic() + INTERVAL
        while (left := min(next_send, deadline) - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data, (host, port, *_) = sock.recvfrom(2048)
            except TimeoutError:
                break
            if not is_stun(data):
                received.append([data.decode(errors="replace"), host, port])
    return received


def main() -> None:
    stun_host, stun_port, local_port, window, name = sys.argv[1:6]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("0.0.0.0", int(local_port)))  # noqa: S104 (a lab namespace)
        mapped = stun(sock, (stun_host, int(stun_port)))
        print(json.dumps({"mapped": mapped}), flush=True)
        line = sys.stdin.readline().split()
        received = punch(sock, (line[0], int(line[1])), float(window), name) if line else []
        print(json.dumps({"received": received}), flush=True)


if __name__ == "__main__":
    main()
