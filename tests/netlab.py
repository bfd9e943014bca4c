"""A network lab in Linux network namespaces, for tests and benchmarks (root only).

Two shapes, each a context manager that builds everything on entry and tears it down on exit,
even after a failure:

- `veth_pair(mtu, family)`: namespaces `a` and `b` joined by one veth pair, a LAN hop at a real
  MTU: IPv4 (10.201.0.1, 10.201.0.2), IPv6 only (fd78::1, fd78::2) or both.
- `nat_lab(left, right)`: an "internet" namespace holding a bridge on 203.0.113.0/24 (its own
  address, 203.0.113.10, is where services such as a STUN server or a relay run), and per side a
  host behind a router that masquerades its LAN onto the bridge, the way REFERENCE.md found that
  port-preserving and symmetric NATs can be had from iptables:

      host-l 10.1.0.2 ─ router-l ─ 203.0.113.21 ┐
                                                 ├─ bridge 203.0.113.0/24 (services .10)
      host-r 10.2.0.2 ─ router-r ─ 203.0.113.22 ┘

  With `ipv6=True` each side also has an IPv6 address routed without any NAT or firewall
  (hosts fd00:1::2 and fd00:2::2, routers on fd00:ff::/64 on the bridge): a direct path
  beside the NATed IPv4 ones, as on many dual-stack home networks.

  "port-preserving" is MASQUERADE plus a DROP of NEW inbound connections to the router itself
  (without it a peer's early probe creates a conntrack entry that makes the router remap the
  host's port, and hole punching fails); "symmetric" is MASQUERADE --random-fully (a fresh port
  per destination, so only a relay works); "none" puts the host on the bridge itself.

- `lan(roles, mtu)`: one namespace per role, all on one bridge (in a namespace of its own) at
  a real MTU, at 10.203.0.1, .2, … in the order of `roles`: several machines on one LAN.

- `island(count)`: one namespace with `count` addresses of its own (10.201.0.1, .2, …, on a veth
  whose far end idles in a second namespace), for tests that run in this process: `made_in`
  makes sockets there (a socket belongs to the namespace it was made in), so a server, a
  hostile peer and its victims all talk over real non-loopback addresses, and nothing leaves.

Processes belong to the lab when started with its `popen` (killed at teardown); one started
otherwise inside a namespace outlives the namespace's deletion, so stop it yourself.

Every name carries a short random run id (`nl1a2b3c-…`), so parallel runs and leftovers of a
killed one never collide; interfaces are created directly inside their namespaces, so their
short names never meet in the root namespace. Addresses repeat between runs, which is harmless:
each run's namespaces are their own networks.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from ringdrop.transport.stun import binding_request, parse_binding_response

__all__ = [
    "SERVICE_IP",
    "SERVICE_IP6",
    "STUN_PORT",
    "Family",
    "Island",
    "Lab",
    "Lan",
    "NatKind",
    "NatLab",
    "Side",
    "VethPair",
    "in_namespace",
    "is_root",
    "island",
    "lan",
    "made_in",
    "missing_tools",
    "nat_lab",
    "stun_server_command",
    "veth_pair",
    "wait_for_stun",
]

NatKind = Literal["port-preserving", "symmetric", "none"]

SERVICE_IP = "203.0.113.10"
INTERNET_PREFIX = 24
STUN_PORT = 3478
_WAN_IPS = {"l": "203.0.113.21", "r": "203.0.113.22"}
_LAN_NETS = {"l": "10.1.0", "r": "10.2.0"}
_VETH_IPS = ("10.201.0.1", "10.201.0.2")
_VETH_IPS6 = ("fd78::1", "fd78::2")
_LAN_NET = "10.203.0"
_WAN_IPS6 = {"l": "fd00:ff::21", "r": "fd00:ff::22"}
_LAN_NETS6 = {"l": "fd00:1::", "r": "fd00:2::"}
SERVICE_IP6 = "fd00:ff::10"
_TOOLS = ("ip", "iptables")


def is_root() -> bool:
    return os.geteuid() == 0


def missing_tools(*extra: str) -> list[str]:
    """The commands a lab needs (plus `extra`) that are not on PATH."""
    return [tool for tool in (*_TOOLS, *extra) if shutil.which(tool) is None]


class Lab:
    """Namespaces of one run and the processes started in them; `close` removes all of it."""

    def __init__(self) -> None:
        self.run_id = "nl" + secrets.token_hex(3)
        self.namespaces: list[str] = []
        self._processes: list[subprocess.Popen[Any]] = []
        self._rules: list[tuple[str, list[str]]] = []

    def add_namespace(self, role: str) -> str:
        """Creates the namespace `<run id>-<role>` with its loopback up; returns its name."""
        name = f"{self.run_id}-{role}"
        _host(["ip", "netns", "add", name])
        self.namespaces.append(name)
        self.run(name, ["ip", "link", "set", "lo", "up"])
        return name

    def link(self, ns1: str, if1: str, ns2: str, if2: str, mtu: int = 1500) -> None:
        """A veth pair with one end, `if1`, in `ns1` and the other, `if2`, in `ns2`."""
        _host(
            [
                *("ip", "link", "add", if1, "netns", ns1, "mtu", str(mtu), "type", "veth"),
                *("peer", "name", if2, "netns", ns2, "mtu", str(mtu)),
            ]
        )

    def address(self, ns: str, interface: str, cidr: str) -> None:
        """Gives `interface` in `ns` the address `cidr` and brings it up (an IPv6 address
        without duplicate detection, so that it is usable at once)."""
        nodad = ["nodad"] if ":" in cidr else []
        self.run(ns, ["ip", "addr", "add", cidr, "dev", interface, *nodad])
        self.run(ns, ["ip", "link", "set", interface, "up"])

    def run(
        self,
        ns: str,
        command: Sequence[str],
        *,
        check: bool = True,
        timeout: float = 30,
        input: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Runs `command` in namespace `ns` and waits for it (output captured as text)."""
        done = subprocess.run(
            in_namespace(ns, command),
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            check=False,
        )
        if check and done.returncode != 0:
            raise RuntimeError(
                f"`{' '.join(command)}` in {ns} exited {done.returncode}: {done.stderr.strip()}"
            )
        return done

    def popen(self, ns: str, command: Sequence[str], **options: Any) -> subprocess.Popen[Any]:
        """Starts `command` in namespace `ns` (options as for `subprocess.Popen`). The process
        is `command` itself (`ip netns exec` execs it), so its pid, exit status and rusage are
        the real program's. Killed at teardown if still running."""
        process = subprocess.Popen(in_namespace(ns, command), **options)
        self._processes.append(process)
        return process

    def iptables(self, ns: str, *rule: str) -> None:
        self.run(ns, ["iptables", "-w", *rule])

    def insert_rule(self, ns: str, chain: str, *spec: str) -> None:
        """Inserts an iptables rule at the head of `chain`, remembered for `remove_rules`."""
        self.iptables(ns, "-I", chain, "1", *spec)
        self._rules.append((ns, [chain, *spec]))

    def remove_rules(self) -> None:
        """Deletes the rules `insert_rule` added, newest first."""
        while self._rules:
            ns, (chain, *spec) = self._rules.pop()
            self.iptables(ns, "-D", chain, *spec)

    def start_stun(self, ns: str, host: str, port: int = STUN_PORT) -> subprocess.Popen[bytes]:
        """Starts coturn as a STUN-only server on host:port in `ns`; returns once it answers."""
        workdir = Path(f"/tmp/{self.run_id}-coturn-{port}")
        workdir.mkdir(exist_ok=True)
        process = self.popen(
            ns,
            stun_server_command(host, port, workdir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.run(ns, [sys.executable, "-c", _WAIT_FOR_STUN, host, str(port)], timeout=15)
        return process

    def close(self) -> None:
        """Stops the lab's processes and deletes its namespaces; never raises."""
        for process in reversed(self._processes):
            if process.poll() is None:
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
        self._processes.clear()
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)
        self.namespaces.clear()
        for workdir in Path("/tmp").glob(f"{self.run_id}-*"):
            shutil.rmtree(workdir, ignore_errors=True)


def in_namespace(ns: str, command: Sequence[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *command]


_T = TypeVar("_T")
_CLONE_NEWNET = 0x40000000


def made_in(ns: str, make: Callable[[], _T]) -> _T:
    """`make()` run inside namespace `ns`: the sockets it makes belong there, for good. A
    thread of its own enters the namespace (setns(2) moves one thread), so this process and
    its other threads stay where they are."""
    libc = ctypes.CDLL(None, use_errno=True)
    result: list[_T] = []
    failure: list[BaseException] = []

    def enter_and_make() -> None:
        target = os.open(f"/var/run/netns/{ns}", os.O_RDONLY)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {ns}")
            result.append(make())
        except BaseException as error:  # handed to the caller's thread
            failure.append(error)
        finally:
            os.close(target)

    # The thread ends right after: it never returns to this process's own namespace.
    thread = threading.Thread(target=enter_and_make)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]
    return result[0]


def _host(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` exited {done.returncode}: {done.stderr}")


def stun_server_command(host: str, port: int, workdir: Path) -> list[str]:
    """coturn answering STUN binding requests only, on host:port, with nothing written outside
    `workdir` (its default pid file and database are system-wide)."""
    return [
        "turnserver",
        "-n",
        "--stun-only",
        "--listening-ip", host,
        "--listening-port", str(port),
        "--no-cli",
        "--no-tls",
        "--no-dtls",
        "--pidfile", str(workdir / "turnserver.pid"),
        "--userdb", str(workdir / "turndb"),
        "--log-file", "stdout",
        "--simple-log",
    ]  # fmt: skip


def wait_for_stun(host: str, port: int, timeout: float = 30.0) -> None:
    """Sends binding requests to host:port until one is answered (the server is ready)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    deadline = time.monotonic() + timeout
    with socket.socket(family, socket.SOCK_DGRAM) as sock:
        sock.settimeout(0.1)
        while time.monotonic() < deadline:
            transaction, request = binding_request()
            sock.sendto(request, (host, port))
            with contextlib.suppress(TimeoutError):
                answer = sock.recv(2048)
                if parse_binding_response(answer, transaction) is not None:
                    return
    raise TimeoutError(f"no STUN answer from {host}:{port} in {timeout:g} s")


_REPOSITORY = str(Path(__file__).resolve().parent.parent)
_WAIT_FOR_STUN = (
    f"import sys; sys.path.insert(0, {_REPOSITORY!r}); from tests.netlab import wait_for_stun; "
    "wait_for_stun(sys.argv[1], int(sys.argv[2]))"
)


class _InLab:
    """Runs commands in the namespaces of its `lab`."""

    lab: Lab

    def run(
        self, ns: str, command: Sequence[str], **options: Any
    ) -> subprocess.CompletedProcess[str]:
        return self.lab.run(ns, command, **options)

    def popen(self, ns: str, command: Sequence[str], **options: Any) -> subprocess.Popen[Any]:
        return self.lab.popen(ns, command, **options)


# -- a veth pair ----------------------------------------------------------------------------------


Family = Literal["4", "6", "dual"]


@dataclass(frozen=True)
class VethPair(_InLab):
    """Namespaces `a` and `b` joined by a veth pair (interface `veth0` on each side).
    `a_ip` and `b_ip` are their IPv4 addresses, or IPv6 ones for an IPv6-only pair; a
    dual-stack pair has both (`a_ip6`, `b_ip6`)."""

    lab: Lab
    a: str
    b: str
    a_ip: str
    b_ip: str
    mtu: int
    a_ip6: str | None = None
    b_ip6: str | None = None


@contextlib.contextmanager
def veth_pair(mtu: int = 1500, family: Family = "4") -> Iterator[VethPair]:
    lab = Lab()
    try:
        a, b = lab.add_namespace("a"), lab.add_namespace("b")
        lab.link(a, "veth0", b, "veth0", mtu)
        if family != "6":
            lab.address(a, "veth0", f"{_VETH_IPS[0]}/24")
            lab.address(b, "veth0", f"{_VETH_IPS[1]}/24")
        if family != "4":
            lab.address(a, "veth0", f"{_VETH_IPS6[0]}/64")
            lab.address(b, "veth0", f"{_VETH_IPS6[1]}/64")
        ips = _VETH_IPS6 if family == "6" else _VETH_IPS
        six = _VETH_IPS6 if family != "4" else (None, None)
        yield VethPair(lab, a, b, ips[0], ips[1], mtu, six[0], six[1])
    finally:
        lab.close()


@dataclass(frozen=True)
class Lan(_InLab):
    """Hosts on one bridge: `hosts` maps each role to its namespace, `ips` to its address."""

    lab: Lab
    hosts: dict[str, str]
    ips: dict[str, str]
    mtu: int


@contextlib.contextmanager
def lan(roles: Sequence[str], mtu: int = 1500) -> Iterator[Lan]:
    lab = Lab()
    try:
        switch = lab.add_namespace("switch")
        lab.run(switch, ["ip", "link", "add", "br0", "type", "bridge"])
        lab.run(switch, ["ip", "link", "set", "br0", "up"])
        hosts, ips = {}, {}
        for n, role in enumerate(roles, start=1):
            host = lab.add_namespace(role)
            lab.link(host, "eth0", switch, f"p{n}", mtu)
            lab.address(host, "eth0", f"{_LAN_NET}.{n}/24")
            _plug(lab, switch, f"p{n}")
            hosts[role], ips[role] = host, f"{_LAN_NET}.{n}"
        yield Lan(lab, hosts, ips, mtu)
    finally:
        lab.close()


@dataclass(frozen=True)
class Island(_InLab):
    """A namespace with addresses `ips` for in-process tests (see the module docstring)."""

    lab: Lab
    ns: str
    ips: tuple[str, ...]

    def udp(self, ip: str, port: int = 0) -> socket.socket:
        """A non-blocking UDP socket bound to `ip`:`port` in the island."""

        def make() -> socket.socket:
            sock = socket.socket(
                socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_DGRAM
            )
            sock.setblocking(False)
            sock.bind((ip, port))
            return sock

        return made_in(self.ns, make)


@contextlib.contextmanager
def island(count: int = 4) -> Iterator[Island]:
    lab = Lab()
    try:
        ns, far = lab.add_namespace("island"), lab.add_namespace("far")
        lab.link(ns, "veth0", far, "veth0")
        ips = tuple(f"10.201.0.{n}" for n in range(1, count + 1))
        for ip in ips:
            lab.address(ns, "veth0", f"{ip}/24")
        lab.run(far, ["ip", "link", "set", "veth0", "up"])
        yield Island(lab, ns, ips)
    finally:
        lab.close()


# -- a NAT lab ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Side:
    """One side of a NAT lab: a host, and the router in front of it (None for "none")."""

    name: Literal["l", "r"]
    kind: NatKind
    host: str
    router: str | None
    host_ip: str
    public_ip: str
    """The router's WAN address (what a STUN server sees), or the host's own for "none"."""
    host_ip6: str | None = None
    """The host's IPv6 address, routed without NAT (a lab built with `ipv6=True`)."""


@dataclass
class NatLab(_InLab):
    """Two hosts behind NATs of the given kinds, on a shared "internet" (see the module
    docstring). Services for both sides (STUN, relay) run in `internet` on `service_ip`."""

    lab: Lab
    internet: str
    left: Side
    right: Side
    service_ip: str = SERVICE_IP
    blocked: bool = field(default=False, init=False)

    def start_stun(self, port: int = STUN_PORT) -> tuple[str, int]:
        """coturn on service_ip:port in the internet namespace; returns that address."""
        self.lab.start_stun(self.internet, self.service_ip, port)
        return self.service_ip, port

    def block_direct(self) -> None:
        """Silently drops UDP between the two sides' public addresses, both ways, leaving their
        traffic to the services (relay, STUN) alone: a direct path that dies mid-transfer.
        The drop happens in each router's FORWARD chain (for a side without a router, in its
        host's INPUT chain), not at the sending socket, so senders see no error, as on a real
        broken path."""
        if self.blocked:
            return
        for side, other in ((self.left, self.right), (self.right, self.left)):
            if side.router is not None:
                for direction in ("-s", "-d"):
                    self.lab.insert_rule(
                        side.router,
                        "FORWARD",
                        "-p",
                        "udp",
                        direction,
                        other.public_ip,
                        "-j",
                        "DROP",
                    )
            else:
                self.lab.insert_rule(
                    side.host, "INPUT", "-p", "udp", "-s", other.public_ip, "-j", "DROP"
                )
        self.blocked = True

    def unblock_direct(self) -> None:
        """Removes what `block_direct` added."""
        self.lab.remove_rules()
        self.blocked = False

    def conntrack_flush(self) -> None:
        """Forgets every NAT mapping in the routers (as if they had rebooted)."""
        for side in (self.left, self.right):
            if side.router is not None:
                self.lab.run(side.router, ["conntrack", "-F"], check=False)


@contextlib.contextmanager
def nat_lab(
    left: NatKind = "port-preserving", right: NatKind = "port-preserving", *, ipv6: bool = False
) -> Iterator[NatLab]:
    lab = Lab()
    try:
        internet = lab.add_namespace("inet")
        lab.run(internet, ["ip", "link", "add", "br0", "type", "bridge"])
        lab.address(internet, "br0", f"{SERVICE_IP}/{INTERNET_PREFIX}")
        if ipv6:
            lab.address(internet, "br0", f"{SERVICE_IP6}/64")
        sides = [
            _build_side(lab, internet, "l", left, ipv6),
            _build_side(lab, internet, "r", right, ipv6),
        ]
        if ipv6:
            _route_ipv6(lab, internet, sides)
        yield NatLab(lab, internet, sides[0], sides[1])
    finally:
        lab.close()


def _build_side(
    lab: Lab, internet: str, name: Literal["l", "r"], kind: NatKind, ipv6: bool
) -> Side:
    public_ip = _WAN_IPS[name]
    host = lab.add_namespace(f"host-{name}")
    port_on_bridge = f"{name}-wan"
    if kind == "none":
        lab.link(host, "eth0", internet, port_on_bridge)
        lab.address(host, "eth0", f"{public_ip}/{INTERNET_PREFIX}")
        host_ip6 = _WAN_IPS6[name] if ipv6 else None
        if host_ip6 is not None:
            lab.address(host, "eth0", f"{host_ip6}/64")
        _plug(lab, internet, port_on_bridge)
        return Side(name, kind, host, None, public_ip, public_ip, host_ip6)
    router = lab.add_namespace(f"router-{name}")
    lan = _LAN_NETS[name]
    lan_cidr = f"{lan}.0/24"
    lab.link(router, "wan", internet, port_on_bridge)
    lab.address(router, "wan", f"{public_ip}/{INTERNET_PREFIX}")
    _plug(lab, internet, port_on_bridge)
    lab.link(router, "lan", host, "eth0")
    lab.address(router, "lan", f"{lan}.1/24")
    lab.address(host, "eth0", f"{lan}.2/24")
    lab.run(host, ["ip", "route", "add", "default", "via", f"{lan}.1"])
    lab.run(router, ["sysctl", "-qw", "net.ipv4.ip_forward=1"])
    masquerade = ["-t", "nat", "-A", "POSTROUTING", "-s", lan_cidr, "-o", "wan", "-j", "MASQUERADE"]
    if kind == "symmetric":
        masquerade.append("--random-fully")
    lab.iptables(router, *masquerade)
    lab.iptables(router, "-P", "FORWARD", "DROP")
    lab.iptables(router, "-A", "FORWARD", "-i", "lan", "-o", "wan", "-s", lan_cidr, "-j", "ACCEPT")
    lab.iptables(
        router, "-A", "FORWARD", "-i", "wan", "-o", "lan",
        "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT",
    )  # fmt: skip
    if kind == "port-preserving":
        lab.iptables(
            router, "-A", "INPUT", "-i", "wan", "-m", "conntrack", "--ctstate", "NEW", "-j", "DROP"
        )
    host_ip6 = None
    if ipv6:
        host_ip6 = f"{_LAN_NETS6[name]}2"
        lab.address(router, "wan", f"{_WAN_IPS6[name]}/64")
        lab.address(router, "lan", f"{_LAN_NETS6[name]}1/64")
        lab.address(host, "eth0", f"{host_ip6}/64")
        lab.run(host, ["ip", "-6", "route", "add", "default", "via", f"{_LAN_NETS6[name]}1"])
        lab.run(router, ["sysctl", "-qw", "net.ipv6.conf.all.forwarding=1"])
    return Side(name, kind, host, router, f"{lan}.2", public_ip, host_ip6)


def _route_ipv6(lab: Lab, internet: str, sides: list[Side]) -> None:
    """Each side's IPv6 LAN is reached through its router's WAN address, from the other
    side's router and from the internet namespace."""
    for side, other in ((sides[0], sides[1]), (sides[1], sides[0])):
        if side.router is None:
            continue
        via = ["via", _WAN_IPS6[side.name]]
        lan = f"{_LAN_NETS6[side.name]}/64"
        lab.run(internet, ["ip", "-6", "route", "add", lan, *via])
        where = other.router or other.host
        lab.run(where, ["ip", "-6", "route", "add", lan, *via])


def _plug(lab: Lab, internet: str, interface: str) -> None:
    lab.run(internet, ["ip", "link", "set", interface, "master", "br0"])
    lab.run(internet, ["ip", "link", "set", interface, "up"])
