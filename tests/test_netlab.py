"""The network lab behaves as REFERENCE.md says: UDP hole punching works through two
port-preserving NATs and fails through a symmetric one, STUN sees each router's WAN address,
`block_direct` cuts the direct path (and only it), and a veth pair carries full-size frames.

Plain UDP sockets in the host namespaces (tests/udp_peer.py), a real coturn in the "internet"
namespace. Root only: skipped otherwise, except under CI=true, which runs as root and must not
skip silently. Each exchange lasts at most a few seconds and sends a few dozen datagrams, all
inside the lab's own namespaces.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.netlab import (
    NatKind,
    NatLab,
    Side,
    is_root,
    lan,
    missing_tools,
    nat_lab,
    veth_pair,
)

PEER = str(Path(__file__).resolve().parent / "udp_peer.py")
LOCAL_PORT = 40000
WINDOW = 2.0


def _unavailable() -> str | None:
    if not is_root():
        return "the network lab needs root"
    missing = missing_tools("conntrack", "turnserver")
    return f"not installed: {', '.join(missing)}" if missing else None


_REASON = _unavailable()
if _REASON is not None and os.environ.get("CI") == "true":
    raise RuntimeError(f"CI must run the network lab tests, but {_REASON}")
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


@dataclass
class Exchange:
    """What each side's STUN server saw and what it received from the other."""

    left_mapped: tuple[str, int] | None
    right_mapped: tuple[str, int] | None
    left_received: list[list[object]]
    right_received: list[list[object]]


def exchange(lab: NatLab, stun: tuple[str, int], *, punch: bool = True) -> Exchange:
    """Both hosts learn their mapping by STUN, then (if `punch`) send to each other's mapping
    at the same time for at most WINDOW seconds."""
    peers = [
        lab.popen(
            side.host,
            [sys.executable, PEER, stun[0], str(stun[1]), str(LOCAL_PORT), str(WINDOW), side.name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for side in (lab.left, lab.right)
    ]
    try:
        mapped = [_address(_read_json(peer)["mapped"]) for peer in peers]
        for peer, other in ((peers[0], mapped[1]), (peers[1], mapped[0])):
            assert peer.stdin is not None
            peer.stdin.write(f"{other[0]} {other[1]}\n" if punch and other else "\n")
            peer.stdin.flush()
        received = [_read_json(peer)["received"] for peer in peers]
        for peer in peers:
            assert peer.wait(10) == 0
    finally:
        for peer in peers:
            if peer.poll() is None:
                peer.kill()
                peer.wait()
    return Exchange(mapped[0], mapped[1], _datagrams(received[0]), _datagrams(received[1]))


def _address(value: object) -> tuple[str, int] | None:
    if value is None:
        return None
    assert isinstance(value, list)
    host, port = value
    return str(host), int(port)


def _datagrams(value: object) -> list[list[object]]:
    assert isinstance(value, list)
    return value


def _read_json(process: subprocess.Popen[str]) -> dict[str, object]:
    assert process.stdout is not None
    line = process.stdout.readline()
    assert line, f"the peer exited {process.wait(10)} without output"
    parsed = json.loads(line)
    assert isinstance(parsed, dict)
    return parsed


def hello_from(side: Side, received: list[list[object]]) -> bool:
    """Whether `received` holds a datagram from `side`'s host."""
    return any(text == f"hello from {side.name}" for text, _, _ in received)


def _lab(left: NatKind, right: NatKind) -> Iterator[tuple[NatLab, tuple[str, int]]]:
    with nat_lab(left, right) as lab:
        yield lab, lab.start_stun()


@pytest.fixture
def port_preserving() -> Iterator[tuple[NatLab, tuple[str, int]]]:
    yield from _lab("port-preserving", "port-preserving")


@pytest.fixture
def one_symmetric() -> Iterator[tuple[NatLab, tuple[str, int]]]:
    yield from _lab("symmetric", "port-preserving")


def test_stun_sees_each_router_wan_address_and_the_preserved_port(
    port_preserving: tuple[NatLab, tuple[str, int]],
) -> None:
    lab, stun = port_preserving
    seen = exchange(lab, stun, punch=False)
    assert seen.left_mapped == (lab.left.public_ip, LOCAL_PORT)
    assert seen.right_mapped == (lab.right.public_ip, LOCAL_PORT)
    assert lab.left.public_ip != lab.left.host_ip


def test_hole_punching_succeeds_through_two_port_preserving_nats(
    port_preserving: tuple[NatLab, tuple[str, int]],
) -> None:
    lab, stun = port_preserving
    seen = exchange(lab, stun)
    assert punched(seen, lab), seen
    sources = {(host, port) for _, host, port in seen.left_received}
    assert sources == {seen.right_mapped}, "the datagrams come from the peer's public mapping"


def test_hole_punching_fails_when_one_nat_is_symmetric(
    one_symmetric: tuple[NatLab, tuple[str, int]],
) -> None:
    lab, stun = one_symmetric
    seen = exchange(lab, stun)
    assert seen.left_mapped is not None
    assert seen.left_mapped[0] == lab.left.public_ip
    assert seen.right_mapped == (lab.right.public_ip, LOCAL_PORT)
    assert seen.left_received == []
    assert seen.right_received == []


def test_a_symmetric_nat_maps_each_destination_to_its_own_port() -> None:
    with nat_lab("symmetric", "none") as lab:
        first = lab.start_stun(3478)
        second = lab.start_stun(3479)
        mapped = [exchange(lab, stun, punch=False).left_mapped for stun in (first, second)]
    assert mapped[0] is not None
    assert mapped[1] is not None
    assert mapped[0][0] == mapped[1][0] == lab.left.public_ip
    assert mapped[0][1] != mapped[1][1]


def punched(seen: Exchange, lab: NatLab) -> bool:
    """Whether each side received the other's datagrams."""
    return hello_from(lab.right, seen.left_received) and hello_from(lab.left, seen.right_received)


def test_block_direct_cuts_a_punched_path_but_not_stun_and_unblock_restores_it(
    port_preserving: tuple[NatLab, tuple[str, int]],
) -> None:
    lab, stun = port_preserving
    assert punched(exchange(lab, stun), lab)
    lab.block_direct()  # the NAT mappings of the punched path still exist: a cut mid-flow
    blocked = exchange(lab, stun)
    assert blocked.left_mapped == (lab.left.public_ip, LOCAL_PORT), "STUN still answers"
    assert blocked.right_mapped == (lab.right.public_ip, LOCAL_PORT)
    assert blocked.left_received == []
    assert blocked.right_received == []
    lab.unblock_direct()
    restored = exchange(lab, stun)
    assert punched(restored, lab), restored


def test_a_host_without_nat_is_reached_at_its_own_address_and_can_be_cut() -> None:
    with nat_lab("port-preserving", "none") as lab:
        stun = lab.start_stun()
        seen = exchange(lab, stun)
        lab.block_direct()
        blocked = exchange(lab, stun)
    assert seen.right_mapped == (lab.right.host_ip, LOCAL_PORT)
    assert punched(seen, lab), seen
    assert blocked.left_received == []
    assert blocked.right_received == []


_RECEIVE_ONE = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((sys.argv[1], 40000))
sock.settimeout(5)
print("ready", flush=True)
print(len(sock.recv(65535)), flush=True)
"""

# Sends one datagram of the given size with "don't fragment" set; prints the errno if the kernel
# refuses it (EMSGSIZE when it does not fit the interface's MTU).
_SEND_DF = """
import socket, sys
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.IPPROTO_IP, 10, 2)  # IP_MTU_DISCOVER = IP_PMTUDISC_DO (Linux)
try:
    sock.sendto(bytes(int(sys.argv[2])), (sys.argv[1], 40000))
    print("sent")
except OSError as error:
    print(error.errno)
"""


def test_veth_pair_carries_full_size_frames_and_not_larger() -> None:
    full = 1500 - 20 - 8  # the largest UDP payload in one 1500-byte IP packet
    with veth_pair(mtu=1500) as pair:
        receiver = pair.popen(
            pair.b,
            [sys.executable, "-c", _RECEIVE_ONE, pair.b_ip],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert receiver.stdout is not None
        assert receiver.stdout.readline().strip() == "ready"
        too_big = pair.run(pair.a, [sys.executable, "-c", _SEND_DF, pair.b_ip, str(full + 1)])
        fits = pair.run(pair.a, [sys.executable, "-c", _SEND_DF, pair.b_ip, str(full)])
        got = receiver.stdout.readline().strip()
    assert too_big.stdout.strip() == str(errno.EMSGSIZE)
    assert fits.stdout.strip() == "sent"
    assert got == str(full)


def test_lan_hosts_reach_each_other_across_the_bridge_in_full_size_frames() -> None:
    full = 1500 - 20 - 8
    with lan(("a", "b", "c"), mtu=1500) as net:
        got = {}
        for sender, receiver in (("a", "c"), ("c", "b")):
            listening = net.popen(
                net.hosts[receiver],
                [sys.executable, "-c", _RECEIVE_ONE, net.ips[receiver]],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert listening.stdout is not None
            assert listening.stdout.readline().strip() == "ready"
            too_big = net.run(
                net.hosts[sender],
                [sys.executable, "-c", _SEND_DF, net.ips[receiver], str(full + 1)],
            )
            assert too_big.stdout.strip() == str(errno.EMSGSIZE)
            net.run(
                net.hosts[sender], [sys.executable, "-c", _SEND_DF, net.ips[receiver], str(full)]
            )
            got[sender, receiver] = listening.stdout.readline().strip()
        names = list(net.lab.namespaces)
    assert got == {("a", "c"): str(full), ("c", "b"): str(full)}
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert len(names) == 4
    assert not [name for name in names if name in listed.stdout]


def test_teardown_removes_every_namespace_even_after_a_failure() -> None:
    names: list[str] = []

    def fail_inside_a_lab() -> None:
        with nat_lab("symmetric", "none") as lab:
            names.extend(lab.lab.namespaces)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        fail_inside_a_lab()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert names
    assert not [name for name in names if name in listed.stdout]
