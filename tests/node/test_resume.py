"""Resume after a cut link or a SIGKILLed process on either side: already-verified data is never
requested again. Sharers and receivers run as real processes, behind a rate-limiting relay so
that the interruption lands mid-transfer."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest

from ringdrop.node import Node, Progress, RetryPolicy
from ringdrop.ticket import Address, Ticket
from tests.files import pseudo_random
from tests.node.relay import Relay

SIZE = 24 * 2**20
RATE = 16e6
PATIENT = RetryPolicy(attempts=20, first_delay=0.2, max_delay=1.0)


def bound(size: int) -> int:
    """Wire bytes a transfer may take beyond its content: hash tree, headers, one flush batch
    (16 MiB) of verified data that a SIGKILL can lose before it was made durable."""
    return size // 100 + 64 * 1024


async def start_sharer(data_dir: Path) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.node.peer_process", "serve", str(data_dir)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(asyncio.to_thread(process.stdout.readline), 20)
    return process, json.loads(line)["port"]


@pytest.fixture
def shared(tmp_path: Path) -> tuple[Ticket, bytes, Path]:
    data = pseudo_random(SIZE)
    (tmp_path / "big.bin").write_bytes(data)
    with Node(tmp_path / "sharer") as sharer:
        ticket = sharer.share(tmp_path / "big.bin", open=True).ticket
    return ticket, data, tmp_path / "sharer"


async def kill_receiver_when(
    receiver_dir: Path,
    ticket: Ticket,
    dest: Path,
    reached: Callable[[dict[str, Any]], bool],
    timeout: float,
) -> None:
    """Runs `get` in a process of its own and SIGKILLs it at the first progress report for
    which `reached` holds (each report waited for at most `timeout` seconds)."""
    child = subprocess.Popen(
        [
            sys.executable, "-m", "tests.node.peer_process", "get", str(receiver_dir),
            ticket.encode(), str(dest),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert child.stdout is not None
    try:
        while True:
            line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), timeout)
            if reached(json.loads(line)):
                break
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()


def via(ticket: Ticket, relay: Relay) -> Ticket:
    return dataclasses.replace(ticket, addresses=(Address(ip_address("127.0.0.1"), relay.port),))


async def test_cut_link_resumes_without_resending(
    shared: tuple[Ticket, bytes, Path], receiver: Node, tmp_path: Path
) -> None:
    ticket, data, sharer_dir = shared
    sharer, port = await start_sharer(sharer_dir)
    relay = await Relay(port, RATE).start()
    cut_done = asyncio.Event()

    def on_progress(progress: Progress) -> None:
        if not cut_done.is_set() and progress.done > SIZE // 3:
            cut_done.set()
            relay.cut = True
            asyncio.get_running_loop().call_later(1.5, setattr, relay, "cut", False)

    try:
        received = await receiver.get(
            via(ticket, relay), tmp_path / "out", progress=on_progress, retry=PATIENT
        )
    finally:
        relay.close()
        sharer.kill()
        sharer.wait()
    assert cut_done.is_set()
    assert received.path.read_bytes() == data
    assert received.stats.received <= SIZE + bound(SIZE)


@pytest.fixture
def shared_folder(tmp_path: Path) -> tuple[Ticket, bytes, Path]:
    """A folder of six files of 4 MiB, fetched on parallel streams; `data` is their bytes."""
    files = [pseudo_random(SIZE // 6, seed=i) for i in range(6)]
    for i, data in enumerate(files):
        (tmp_path / "folder" / f"part-{i}.bin").parent.mkdir(exist_ok=True)
        (tmp_path / "folder" / f"part-{i}.bin").write_bytes(data)
    with Node(tmp_path / "sharer") as sharer:
        ticket = sharer.share(tmp_path / "folder", open=True).ticket
    return ticket, b"".join(files), tmp_path / "sharer"


@pytest.mark.parametrize("content", ["shared", "shared_folder"])
async def test_sharer_killed_and_restarted_mid_transfer(
    content: str, request: pytest.FixtureRequest, receiver: Node, tmp_path: Path
) -> None:
    ticket, data, sharer_dir = request.getfixturevalue(content)
    sharer, port = await start_sharer(sharer_dir)
    relay = await Relay(port, RATE).start()
    killed = asyncio.Event()
    processes = [sharer]
    restarting: list[asyncio.Task[None]] = []

    async def restart() -> None:
        await asyncio.sleep(1.0)
        again, again_port = await start_sharer(sharer_dir)
        processes.append(again)
        assert again_port == port, "the configured port survives a restart"

    def on_progress(progress: Progress) -> None:
        if not killed.is_set() and progress.done > SIZE // 3:
            killed.set()
            os.kill(sharer.pid, signal.SIGKILL)
            restarting.append(asyncio.ensure_future(restart()))

    try:
        received = await receiver.get(
            via(ticket, relay), tmp_path / "out", progress=on_progress, retry=PATIENT
        )
    finally:
        relay.close()
        for process in processes:
            process.kill()
            process.wait()
    assert killed.is_set()
    if received.path.is_dir():
        parts = sorted(received.path.iterdir())
        assert b"".join(part.read_bytes() for part in parts) == data
    else:
        assert received.path.read_bytes() == data
    assert received.stats.received <= SIZE + bound(SIZE)


async def test_receiver_killed_mid_transfer_resumes_on_rerun(
    shared: tuple[Ticket, bytes, Path], tmp_path: Path
) -> None:
    ticket, data, sharer_dir = shared
    sharer, port = await start_sharer(sharer_dir)
    relay = await Relay(port, RATE).start()
    receiver_dir = tmp_path / "receiver"
    try:
        await kill_receiver_when(
            receiver_dir,
            via(ticket, relay),
            tmp_path / "out",
            lambda progress: progress.get("done", 0) > SIZE * 3 // 4,
            timeout=30,
        )
        with Node(receiver_dir) as receiver:
            received = await receiver.get(via(ticket, relay), tmp_path / "out", retry=PATIENT)
    finally:
        relay.close()
        sharer.kill()
        sharer.wait()
    assert received.path.read_bytes() == data
    assert received.stats.present > 0, "what the killed run verified and flushed is kept"
    assert received.stats.received <= SIZE - received.stats.present + bound(SIZE)
