"""A sharer keeps serving while another process holds its database's write lock, and loses no
log entry: decisions only read, and the logs are written by a thread that waits for the lock.
A write of the sharer's own (a download, in the TUI) stuck behind that lock stalls nothing
either."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any

import apsw
import pytest

from ringdrop.errors import AccessDeniedError
from ringdrop.node import Node, RetryPolicy
from tests.files import pseudo_random

# Holds SQLite's write lock (BEGIN IMMEDIATE) until told to let go on stdin, at most 120 s.
_LOCKER = """
import select, sys, apsw
conn = apsw.Connection(sys.argv[1])
conn.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
select.select([sys.stdin], [], [], 120)
conn.execute("COMMIT")
print("released", flush=True)
"""


def _write_lock_is_held(database: Path) -> bool:
    probe = apsw.Connection(str(database))
    try:
        probe.set_busy_timeout(0)
        probe.execute("BEGIN IMMEDIATE")
    except apsw.BusyError:
        return True
    finally:
        probe.close()
    return False


def _free(lock: Any) -> bool:
    if lock.acquire(blocking=False):
        lock.release()
        return True
    return False


async def test_transfers_and_decisions_complete_while_another_process_holds_the_write_lock(
    sharer: Node, receiver: Node, tmp_path: Path
) -> None:
    films = [pseudo_random(3 * 2**20 + 5, seed=1), pseudo_random(40_000, seed=2)]
    sharer.create_ring("friends")
    sharer.add_member("friends", str(receiver.peer_id))
    shares = []
    for index, data in enumerate(films):
        (tmp_path / f"film{index}.bin").write_bytes(data)
        shares.append(sharer.share(tmp_path / f"film{index}.bin", rings=["friends"]))

    ready = asyncio.get_running_loop().create_future()
    serving = asyncio.create_task(
        sharer.serve(host="127.0.0.1", ready=lambda port: ready.set_result(port))
    )
    await asyncio.wait_for(ready, 10)
    database = sharer._store.db.path
    locker = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _LOCKER,
        str(database),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert locker.stdin is not None
    assert locker.stdout is not None
    stuck = threading.Event()
    own_write_done = threading.Event()

    def own_write() -> None:
        # Holds the store connection's lock while SQLite makes it wait for the other process.
        stuck.set()
        with sharer._store.db.transaction():
            pass
        own_write_done.set()

    writer = threading.Thread(target=own_write)
    try:
        assert await asyncio.wait_for(locker.stdout.readline(), 30) == b"locked\n"
        writer.start()
        assert await asyncio.to_thread(stuck.wait, 30)
        while _free(sharer._store.db._lock):  # until the thread holds it, stuck in BEGIN
            await asyncio.sleep(0.01)
        # Before: each decision was a write transaction that waited 30 s for this lock.
        received = await asyncio.wait_for(
            asyncio.gather(
                *(
                    receiver.get(share.ticket, tmp_path / f"out{index}")
                    for index, share in enumerate(shares)
                )
            ),
            60,
        )
        with Node(tmp_path / "outsider") as outsider, pytest.raises(AccessDeniedError):
            await outsider.get(
                shares[0].ticket,
                tmp_path / "outsider-out",
                retry=RetryPolicy(attempts=1, first_delay=0.05),
            )
        # All of that finished with the lock still held by the other process.
        assert locker.returncode is None
        assert _write_lock_is_held(database)
        assert not own_write_done.is_set()
        assert [r.path.read_bytes() for r in received] == films
    finally:
        locker.stdin.write(b"release\n")
        await locker.stdin.drain()
        released = await asyncio.wait_for(locker.stdout.readline(), 30)
        await locker.wait()
        await asyncio.to_thread(writer.join, 60)
    assert released == b"released\n"
    assert own_write_done.is_set()

    serving.cancel()
    with pytest.raises(asyncio.CancelledError):
        await serving
    # The clean stop committed everything that was queued while the lock was held.
    decisions = sharer.decisions()
    assert sorted((e.allowed, e.root) for e in decisions) == sorted(
        [(True, shares[0].root), (True, shares[1].root), (False, shares[0].root)]
    )
    uploads = sharer.uploads()
    assert sorted((u.root, u.outcome, u.peer_id) for u in uploads) == sorted(
        (share.root, "complete", receiver.peer_id) for share in shares
    )
