"""Shared fixtures for the test suite: two nodes with their own data directories (the sharer
serving on loopback in the test's event loop), the same two driven through the `ringdrop`
command (and alice's `ringdrop serve` in its own process), and a file and a folder to share.
Helpers for content on disk are in tests/files.py."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from ringdrop.node import Node
from tests.cli_util import Node as CliNode
from tests.cli_util import Process, serve_process
from tests.files import write


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tickets name only 127.0.0.1, and no relay, STUN or discovery server is configured: tests
    never send traffic anywhere but loopback (a test that wants one names a local one)."""
    monkeypatch.setenv("RINGDROP_ADDRESSES", "127.0.0.1")
    monkeypatch.setenv("RINGDROP_RELAY", "disabled")
    monkeypatch.setenv("RINGDROP_STUN", "disabled")
    monkeypatch.setenv("RINGDROP_DISCOVERY", "disabled")
    monkeypatch.delenv("RINGDROP_DISCOVERY_DNS", raising=False)


@pytest.fixture
def sharer(tmp_path: Path) -> Iterator[Node]:
    with Node(tmp_path / "sharer") as node:
        yield node


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Node]:
    with Node(tmp_path / "receiver") as node:
        yield node


@pytest.fixture
async def serving(sharer: Node) -> AsyncIterator[Node]:
    """The sharer, serving on 127.0.0.1 until the test ends."""
    ready = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(
        sharer.serve(host="127.0.0.1", ready=lambda port: ready.set_result(port))
    )
    await asyncio.wait_for(ready, 10)
    yield sharer
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


@pytest.fixture
def a_file(tmp_path: Path) -> Path:
    """`notes.txt`, 300 kB."""
    return write(tmp_path / "notes.txt", os.urandom(300_000))


@pytest.fixture
def a_folder(tmp_path: Path) -> Path:
    """`photos`: five files at three depths, one of them empty, one an executable script."""
    folder = tmp_path / "photos"
    write(folder / "a.jpg", os.urandom(200_000))
    write(folder / "2026" / "b.jpg", os.urandom(1000))
    write(folder / "2026" / "summer" / "c.jpg", os.urandom(70_000))
    write(folder / "empty.txt", b"")
    write(folder / "run.sh", b"#!/bin/sh\necho hello\n").chmod(0o755)
    return folder


@pytest.fixture
def alice(tmp_path: Path) -> CliNode:
    """A data directory driven through the `ringdrop` command (see tests/cli_util.py)."""
    (tmp_path / "alice-cwd").mkdir()
    return CliNode(tmp_path / "alice", tmp_path / "alice-cwd")


@pytest.fixture
def bob(tmp_path: Path) -> CliNode:
    (tmp_path / "bob-cwd").mkdir()
    return CliNode(tmp_path / "bob", tmp_path / "bob-cwd")


@pytest.fixture
def server(alice: CliNode) -> Iterator[Process]:
    """`ringdrop serve` for alice in its own process, stopped with SIGTERM at the end, which
    must exit cleanly."""
    with serve_process(alice) as process:
        yield process
    assert process.popen.returncode == 0, "".join(process.lines)
    assert process.lines[-1].strip() == "stopped (SIGTERM)"
