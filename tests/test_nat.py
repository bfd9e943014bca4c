"""Two ringdrop nodes behind NATs in network namespaces, a real iroh-relay and a real STUN
server (coturn) on the lab's "internet": the matrix of issue 10.

- both behind port-preserving NAT: the transfer starts through the relay, the path layer punches
  a hole, and the punched direct path carries data;
- one behind symmetric NAT: no hole can be punched, the relay carries everything;
- the direct path cut mid-transfer: the connection falls back to the relay and completes;
- relaying disabled and no reachable address: a clear error;
- an IPv6 path without NAT beside the NATed IPv4 ones, default tickets: the direct IPv6 path is
  found, even with one side behind a symmetric NAT (issue 21).

The nodes are the `ringdrop` command, run with `ip netns exec` in the lab's host namespaces.
Root only (CI runs as root): skipped otherwise, except under CI=true. All traffic stays in the
lab's namespaces; every wait is bounded.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pytest

from tests.cli_util import RINGDROP
from tests.files import pseudo_random
from tests.netlab import NatKind, NatLab, Side, in_namespace, is_root, missing_tools, nat_lab
from tests.relay_server import IrohRelay, find_iroh_relay

RELAY_PORT = 3340
_LINE_TIMEOUT = 120.0


def _unavailable() -> str | None:
    if not is_root():
        return "the NAT lab needs root"
    missing = missing_tools("turnserver")
    if missing:
        return f"the NAT lab needs {', '.join(missing)}"
    if find_iroh_relay() is None:
        return "iroh-relay is not installed"
    return None


_REASON = _unavailable()
if _REASON is not None and os.environ.get("CI") == "true":
    pytest.fail(f"CI must run the NAT lab tests: {_REASON}", pytrace=False)
pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


@dataclass
class World:
    lab: NatLab
    relay: IrohRelay
    stun: tuple[str, int]
    tmp: Path
    default_tickets: bool = False
    """Tickets name what `share` finds on the host, rather than its IPv4 address alone."""

    def env(self, side: Side, *, relay: bool = True) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RINGDROP_")}
        env.update(
            RINGDROP_RELAY=self.relay.url if relay else "disabled",
            RINGDROP_STUN=f"{self.stun[0]}:{self.stun[1]}",
            RINGDROP_DISCOVERY="disabled",
            PYTHONUNBUFFERED="1",
        )
        if not self.default_tickets:
            env["RINGDROP_ADDRESSES"] = side.host_ip  # what a ticket names: the host's own
        return env

    def ringdrop(self, side: Side, *args: str) -> list[str]:
        return [*RINGDROP, "--data-dir", str(self.tmp / side.name), *args]

    def run(self, side: Side, *args: str, relay: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            in_namespace(side.host, self.ringdrop(side, *args)),
            env=self.env(side, relay=relay),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    def share_and_serve(self, size: int) -> tuple[str, bytes]:
        """The left host shares a file openly and serves it; its ticket and the bytes."""
        data = pseudo_random(size, seed=size)
        source = self.tmp / "shared.bin"
        source.write_bytes(data)
        shared = self.run(self.lab.left, "share", str(source), "--open", "--json")
        assert shared.returncode == 0, shared.stderr
        ticket = json.loads(shared.stdout)["ticket"]
        server = self.lab.popen(
            self.lab.left.host,
            self.ringdrop(self.lab.left, "serve"),
            env=self.env(self.lab.left),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        lines = _Lines(server.stdout)
        lines.wait_for("relay ", _LINE_TIMEOUT)  # serving, and its home relay connected
        return ticket, data


class _Lines:
    """A process's output lines, read on a thread so that waits can be bounded."""

    def __init__(self, stream: IO[str] | None) -> None:
        assert stream is not None
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self._queue.put(line)
        self._queue.put(None)

    def wait_for(self, text: str, timeout: float) -> str:
        while True:
            try:
                line = self._queue.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError(
                    f"no line with {text!r} in {timeout:g} s: {self.seen}"
                ) from None
            if line is None:
                raise AssertionError(f"the process ended without {text!r}: {self.seen}")
            self.seen.append(line)
            if text in line:
                return line


@contextlib.contextmanager
def world(left: NatKind, right: NatKind, tmp: Path, *, ipv6: bool = False) -> Iterator[World]:
    with nat_lab(left, right, ipv6=ipv6) as lab:
        stun = lab.start_stun()
        with IrohRelay(
            find_iroh_relay() or "",
            tmp / "relay",
            host=lab.service_ip,
            port=RELAY_PORT,
            netns=lab.internet,
        ) as relay:
            yield World(lab, relay, stun, tmp, default_tickets=ipv6)


def received(world: World, ticket: str) -> dict[str, Any]:
    done = world.run(
        world.lab.right, "get", ticket, "--dest", str(world.tmp / "out") + "/", "--json"
    )
    assert done.returncode == 0, done.stderr
    shown: dict[str, Any] = json.loads(done.stdout)
    return shown


class _Get:
    """`ringdrop get --json` running in the right host, its progress (stderr) read as it comes,
    for the tests that act while it runs."""

    def __init__(self, w: World, ticket: str) -> None:
        dest = str(w.tmp / "out") + "/"
        self.process = w.lab.popen(
            w.lab.right.host,
            w.ringdrop(w.lab.right, "get", ticket, "--dest", dest, "--json"),
            env=w.env(w.lab.right),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.progress = _Lines(self.process.stderr)

    def wait_for(self, text: str, timeout: float) -> str:
        """The progress line holding `text`; a failure shows what the process printed."""
        try:
            return self.progress.wait_for(text, timeout)
        except AssertionError as error:
            self.process.kill()
            out = self.process.stdout.read() if self.process.stdout else ""
            raise AssertionError(f"{error}; exit {self.process.wait()}, stdout: {out}") from None

    def result(self) -> dict[str, Any]:
        out = self.process.stdout.read() if self.process.stdout else ""
        assert self.process.wait(timeout=300) == 0, self.progress.seen
        shown: dict[str, Any] = json.loads(out)
        return shown


# Large enough that the relay cannot carry it all in the moment a punch takes.
_LARGE = 256 * 1024 * 1024


def _percent(line: str) -> int:
    """The percentage a progress line shows."""
    found = re.search(r"(\d+)%", line)
    assert found is not None, line
    return int(found.group(1))


def _nothing_fetched_twice(shown: dict[str, Any], size: int) -> None:
    """A change of path did not restart the transfer: the content arrived about once (the
    encoding's hashes and QUIC's headers add a little to the datagram bytes)."""
    assert shown["received"] < 1.1 * size, shown
    assert sum(shown["traffic"].values()) < 1.2 * size, shown


def test_behind_two_port_preserving_nats_a_hole_is_punched(tmp_path: Path) -> None:
    with world("port-preserving", "port-preserving", tmp_path) as w:
        ticket, data = w.share_and_serve(_LARGE)
        get = _Get(w, ticket)
        moved = get.progress.wait_for(" direct ", _LINE_TIMEOUT)  # off the relay, punched
        shown = get.result()
        assert (tmp_path / "out" / "shared.bin").read_bytes() == data
        # The punched path is the router's public address, not the host's private one.
        assert f" direct {w.lab.left.public_ip}:" in moved
        assert shown["path"] == "direct", json.dumps(shown)
        assert shown["via"].startswith(w.lab.left.public_ip), shown
        assert shown["traffic"]["relay"] > 0, shown  # it started through the relay
        _nothing_fetched_twice(shown, _LARGE)


def test_behind_a_symmetric_nat_the_relay_carries_it(tmp_path: Path) -> None:
    with world("port-preserving", "symmetric", tmp_path) as w:
        ticket, data = w.share_and_serve(8 * 1024 * 1024)
        shown = received(w, ticket)
        assert (tmp_path / "out" / "shared.bin").read_bytes() == data
        assert shown["path"] == "relay"
        assert shown["via"] == w.relay.url + "/"
        assert shown["traffic"].get("direct", 0) == 0


def test_a_direct_path_cut_mid_transfer_falls_back_to_the_relay(tmp_path: Path) -> None:
    with world("port-preserving", "port-preserving", tmp_path) as w:
        ticket, data = w.share_and_serve(_LARGE)
        get = _Get(w, ticket)
        get.progress.wait_for(" direct ", _LINE_TIMEOUT)  # the path layer moved to a punched path
        w.lab.block_direct()
        # Nothing moves while the direct path is cut, until the connection falls back.
        fell_back = get.progress.wait_for(f" relay {w.relay.url}", _LINE_TIMEOUT)
        shown = get.result()
        assert (tmp_path / "out" / "shared.bin").read_bytes() == data
        # The fallback came mid-transfer, and the direct path stayed cut: whatever was still
        # missing then came through the relay.
        percent = _percent(fell_back)
        assert percent < 100, fell_back
        left = _LARGE * (99 - percent) // 100
        assert shown["traffic"].get("relay", 0) >= left, (fell_back, shown)
        _nothing_fetched_twice(shown, _LARGE)


def test_no_relay_and_no_reachable_address_is_a_clear_error(tmp_path: Path) -> None:
    with world("port-preserving", "port-preserving", tmp_path) as w:
        ticket, _ = w.share_and_serve(1024)
        done = w.run(w.lab.right, "get", ticket, "--attempts", "1", relay=False)
        assert done.returncode == 7, done.stderr
        assert "relay" in done.stderr
        assert "Could not reach" in done.stderr


def test_an_ipv6_path_without_nat_is_found_beside_the_natted_ipv4_ones(tmp_path: Path) -> None:
    with world("port-preserving", "symmetric", tmp_path, ipv6=True) as w:
        ticket, data = w.share_and_serve(_LARGE)
        shown = received(w, ticket)
        assert (tmp_path / "out" / "shared.bin").read_bytes() == data
        # The relay may answer first (it starts with the first address, which is the
        # unroutable IPv4 one); the direct IPv6 path is taken then, and kept. A large file, so
        # that a loaded machine cannot finish it over the relay before the move.
        direct = f"direct [{w.lab.left.host_ip6}]:"
        taken = [change["path"] for change in shown["paths"]]
        assert taken[-1].startswith(direct), shown
        assert shown["traffic"].get("direct", 0) > 0, shown
