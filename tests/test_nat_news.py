"""A ring's news between two nodes behind NATs in the lab of tests/netlab.py: the owner finds its
member by key (a real iroh-dns-server on the lab's "internet") and announces over the relay,
the only way in; the member then fetches what was announced.

Root only (CI runs as root): skipped otherwise, except under CI=true. All traffic stays in the
lab's namespaces; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.dns_server import IrohDnsServer, find_dns_server
from tests.files import pseudo_random
from tests.netlab import Side, missing_tools
from tests.test_nat import _LINE_TIMEOUT, RELAY_PORT, World, _Lines, world

_REASON = None if os.geteuid() == 0 else "the NAT lab needs root"
if _REASON is None and (missing_tools("turnserver") or find_dns_server() is None):
    _REASON = "the NAT lab needs coturn and iroh-dns-server"
if _REASON is not None and os.environ.get("CI") == "true":
    pytest.fail(f"CI must run the NAT lab tests: {_REASON}", pytrace=False)
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")

DNS_HTTP_PORT = 8080
assert DNS_HTTP_PORT != RELAY_PORT


@contextlib.contextmanager
def discovery(w: World) -> Iterator[IrohDnsServer]:
    """An iroh-dns-server beside the relay in the lab's internet."""
    binary = find_dns_server()
    assert binary is not None
    with IrohDnsServer(
        binary,
        w.tmp / "dns",
        host=w.lab.service_ip,
        netns=w.lab.internet,
        http_port=DNS_HTTP_PORT,
    ) as server:
        yield server


def _env(w: World, side: Side, dns: IrohDnsServer) -> dict[str, str]:
    return {**w.env(side), **dns.env()}


def _run(w: World, side: Side, dns: IrohDnsServer, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["ip", "netns", "exec", side.host, *w.ringdrop(side, *args)],
        env=_env(w, side, dns),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, f"{args}: {done.stderr}"
    return done


def _serve(w: World, side: Side, dns: IrohDnsServer) -> _Lines:
    process = w.lab.popen(
        side.host,
        w.ringdrop(side, "serve"),
        env=_env(w, side, dns),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines = _Lines(process.stdout)
    lines.wait_for("record published", _LINE_TIMEOUT)
    return lines


def test_behind_two_nats_the_announcement_arrives_over_the_relay(tmp_path: Path) -> None:
    with world("port-preserving", "port-preserving", tmp_path) as w, discovery(w) as dns:
        owner, member = w.lab.left, w.lab.right
        owner_id = _run(w, owner, dns, "id").stdout.strip()
        member_id = _run(w, member, dns, "id").stdout.strip()
        _run(w, owner, dns, "ring", "new", "family")
        _run(w, owner, dns, "ring", "add", "family", member_id)
        _run(w, member, dns, "peer", "add", owner_id, "mum")
        data = pseudo_random(2 * 1024 * 1024, seed=7)
        (tmp_path / "letter.bin").write_bytes(data)

        member_log = _serve(w, member, dns)
        owner_log = _serve(w, owner, dns)
        _run(w, owner, dns, "share", str(tmp_path / "letter.bin"), "--ring", "family")

        announced = owner_log.wait_for("announced letter.bin", _LINE_TIMEOUT)
        assert f"(relay {w.relay.url}" in announced, announced
        member_log.wait_for("inbox 1: letter.bin (2.0 MiB) from mum", _LINE_TIMEOUT)

        listed = json.loads(_run(w, member, dns, "inbox", "--json").stdout)["entries"]
        assert [(e["name"], e["arrived"], e["state"]) for e in listed] == [
            ("letter.bin", "pushed", "new")
        ]
        dest = str(tmp_path / "got") + "/"
        _run(w, member, dns, "inbox", "get", "1", "--dest", dest)
        assert (tmp_path / "got" / "letter.bin").read_bytes() == data
