"""Two machines on a LAN (a veth pair between two network namespaces), the `ringdrop` command
with the tickets a user gets by default (issue 21): they name the LAN addresses and never
loopback or link-local ones, and IPv6-only and dual-stack LANs transfer like IPv4.

Root only: skipped otherwise, failed under CI=true. Nothing leaves the pair's namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from ipaddress import ip_address
from pathlib import Path

import pytest

from ringdrop.ticket import Ticket
from tests.cli_util import RINGDROP
from tests.files import pseudo_random
from tests.netlab import Family, VethPair, in_namespace, is_root, veth_pair

if not is_root() and os.environ.get("CI") == "true":
    pytest.fail("CI must run the LAN tests: they need root", pytrace=False)
pytestmark = pytest.mark.skipif(not is_root(), reason="network namespaces need root")

TIMEOUT = 120.0


def env() -> dict[str, str]:
    """What a user's environment holds: no RINGDROP_ADDRESSES; no relay or STUN on this LAN."""
    out = {k: v for k, v in os.environ.items() if not k.startswith("RINGDROP_")}
    out.update(RINGDROP_RELAY="disabled", RINGDROP_STUN="disabled", PYTHONUNBUFFERED="1")
    return out


def run(ns: str, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        in_namespace(ns, [*RINGDROP, "--data-dir", str(data_dir), *args]),
        env=env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


def share(pair: VethPair, tmp: Path, size: int) -> tuple[Ticket, bytes]:
    data = pseudo_random(size, seed=size)
    (tmp / "shared.bin").write_bytes(data)
    shared = run(pair.a, tmp / "a", "share", str(tmp / "shared.bin"), "--open", "--json")
    assert shared.returncode == 0, shared.stderr
    return Ticket.decode(json.loads(shared.stdout)["ticket"]), data


@contextlib.contextmanager
def serving(pair: VethPair, tmp: Path) -> Iterator[None]:
    server = pair.popen(
        pair.a,
        [*RINGDROP, "--data-dir", str(tmp / "a"), "serve"],
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert server.stdout is not None
    for line in server.stdout:  # the process ends at the lab's teardown at the latest
        if line.startswith("serving as"):
            break
    yield


def test_a_default_ticket_names_the_lan_addresses_and_never_loopback(tmp_path: Path) -> None:
    with veth_pair(family="dual") as pair:
        ticket, _ = share(pair, tmp_path, 1000)
    ips = [address.ip for address in ticket.addresses]
    assert [str(ip) for ip in ips] == [pair.a_ip, pair.a_ip6]  # IPv4 first
    assert not [ip for ip in ips if ip.is_loopback or ip.is_link_local]


@pytest.mark.parametrize("family", ["6", "dual"])
def test_a_lan_without_ipv4_or_with_both_transfers_like_ipv4(
    family: Family, tmp_path: Path
) -> None:
    with veth_pair(family=family) as pair:
        ticket, data = share(pair, tmp_path, 3 * 1024 * 1024)
        with serving(pair, tmp_path):
            got = run(
                pair.b,
                tmp_path / "b",
                "get",
                ticket.encode(),
                "--dest",
                str(tmp_path / "out") + "/",
                "--json",
            )
    assert got.returncode == 0, got.stderr
    shown = json.loads(got.stdout)
    assert (tmp_path / "out" / "shared.bin").read_bytes() == data
    assert shown["path"] == "direct"
    host = shown["via"].rpartition(":")[0].strip("[]")
    assert host in {pair.a_ip, pair.a_ip6}
    if family == "6":
        assert ip_address(host).version == 6
