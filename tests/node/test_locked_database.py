"""A sharer keeps serving while another process holds its database's write lock, and loses no
log entry: decisions only read, and the logs are written by a thread that waits for the lock.
A write of the sharer's own (a download, in the TUI) stuck behind that lock stalls nothing
either."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import apsw
import pytest

from ringdrop.errors import AccessDeniedError, StoreError
from ringdrop.identity import Identity
from ringdrop.node import Node, RetryPolicy
from ringdrop.protocol import (
    AboutRequest,
    AnnounceRequest,
    HaveRequest,
    News,
    Request,
    ResponseHeader,
    RingsRequest,
    SinceRequest,
    encode,
)
from tests.files import pseudo_random, write
from tests.hostile import HostilePeer, connected, frames
from tests.node.test_news_requests import announcement, manifest, own_ring, someone

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


@contextlib.asynccontextmanager
async def write_lock_held(database: Path) -> AsyncIterator[Callable[[], Awaitable[None]]]:
    """Another process holds `database`'s write lock until the block ends, or until the
    block calls what this yields."""
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
    stdin, stdout = locker.stdin, locker.stdout

    async def release() -> None:
        if locker.returncode is None:
            stdin.write(b"release\n")
            await stdin.drain()
            assert await asyncio.wait_for(stdout.readline(), 30) == b"released\n"
            await locker.wait()

    try:
        assert await asyncio.wait_for(stdout.readline(), 30) == b"locked\n"
        yield release
    finally:
        await release()


@contextlib.asynccontextmanager
async def own_write_stuck(node: Node) -> AsyncIterator[threading.Event]:
    """Another process holds the write lock of `node`'s database, and a write of `node`'s own
    waits for it on a thread, holding `node`'s connection, until the block ends. The event is
    set once that write has committed (after the block, when the lock is let go)."""
    stuck, done = threading.Event(), threading.Event()

    def own_write() -> None:
        stuck.set()
        try:
            with node._store.db.transaction():
                pass
        except StoreError:
            return  # gave up after the busy timeout: `done` stays clear
        done.set()

    writer = threading.Thread(target=own_write)
    async with write_lock_held(node._store.db.path) as release:
        try:
            writer.start()
            assert await asyncio.to_thread(stuck.wait, 30)
            while _free(node._store.db._lock):  # until the thread holds it, stuck in BEGIN
                await asyncio.sleep(0.01)
            yield done
        finally:
            await release()
            await asyncio.to_thread(writer.join, 60)


@contextlib.asynccontextmanager
async def asking(
    node: Node, peer_identity: Identity, request: Request
) -> AsyncIterator[list[asyncio.Task[ResponseHeader]]]:
    """32 copies of `request` at once, on 4 connections (8 is the server's stream limit per
    connection), each a task that ends with the answer's header."""

    async def one(peer: HostilePeer) -> ResponseHeader:
        header = frames(await peer.ask(encode(request)))[0]
        assert isinstance(header, ResponseHeader)
        return header

    async with contextlib.AsyncExitStack() as stack:
        peers = [await stack.enter_async_context(connected(node, peer_identity)) for _ in range(4)]
        tasks = [asyncio.create_task(one(p)) for p in peers for _ in range(8)]
        try:
            yield tasks
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)


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
    async with own_write_stuck(sharer) as own_write_done:
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
        assert _write_lock_is_held(database)
        assert not own_write_done.is_set()
        assert [r.path.read_bytes() for r in received] == films
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


@pytest.mark.parametrize("kind", ["announce", "rings"])
async def test_a_strangers_news_or_manifests_are_refused_without_waiting_for_the_write_lock(
    serving: Node, kind: str
) -> None:
    stranger = someone()
    request: Request = (
        AnnounceRequest(News(manifest(stranger, serving.peer_id), (announcement(stranger, 1),)))
        if kind == "announce"
        else RingsRequest((manifest(stranger, serving.peer_id),))
    )
    database = serving._store.db.path
    async with write_lock_held(database), asking(serving, stranger, request) as answers:
        # Before: each took the write lock first, waited 30 s and failed.
        headers = await asyncio.wait_for(asyncio.gather(*answers), 60)
        assert _write_lock_is_held(database)
    assert {h.status for h in headers} == {"denied"}
    assert serving.inbox() == []
    assert serving._access.held_manifests() == []


@pytest.mark.parametrize(
    "kind", ["announce", "rings", "since", "since, another ring due", "about", "have"]
)
async def test_a_strangers_request_is_refused_while_a_write_of_the_nodes_own_waits_for_the_lock(
    serving: Node, tmp_path: Path, kind: str
) -> None:
    stranger = someone()
    shared = serving.share(write(tmp_path / "film.bin", pseudo_random(50_000, seed=4)))
    requests: dict[str, Request] = {
        "announce": AnnounceRequest(
            News(manifest(stranger, serving.peer_id), (announcement(stranger, 1),))
        ),
        "rings": RingsRequest((manifest(stranger, serving.peer_id),)),
        "since": SinceRequest(own_ring(serving, tmp_path), 0),
        "about": AboutRequest(shared.root),
        "have": HaveRequest(shared.root, None, (("192.0.2.8", 4433),)),
    }
    if kind == "since, another ring due":
        # Another ring's manifest past half its validity: due to be signed again, and the
        # stuck write below keeps it so.
        serving.create_ring("holiday")
        with apsw.Connection(str(serving._store.db.path)) as conn:
            conn.execute(
                "UPDATE manifests SET valid_until = ? WHERE name = ?", (int(time.time()), "holiday")
            )
    request = requests[kind.partition(",")[0]]
    async with own_write_stuck(serving), asking(serving, stranger, request) as answers:
        # Before: refused on the node's connection, after that write gave up (30 s).
        headers = await asyncio.wait_for(asyncio.gather(*answers), 60)
        assert not _free(serving._store.db._lock), "answered only once the write ended"
    assert {h.status for h in headers} == {"denied"}
    assert {m.owner for m in serving._access.held_manifests()} == {serving.peer_id}
    assert serving.inbox() == []
    assert serving._access.providers(shared.root) == []


async def test_an_owners_news_stuck_behind_the_write_lock_holds_up_no_transfer(
    serving: Node, receiver: Node, tmp_path: Path
) -> None:
    owner = someone()
    serving.add_peer(owner.peer_id, "mum")
    news = News(manifest(owner, serving.peer_id), (announcement(owner, 1),))
    data = pseudo_random(2 * 2**20, seed=3)
    share = serving.share(write(tmp_path / "film.bin", data), open=True)
    database = serving._store.db.path
    async with (
        write_lock_held(database) as release,
        asking(serving, owner, AnnounceRequest(news)) as answers,
    ):
        # Before: the waiting announcements took every shared thread, and the get waited for
        # them to fail.
        received = await asyncio.wait_for(receiver.get(share.ticket, tmp_path / "out"), 60)
        assert not any(a.done() for a in answers)
        assert _write_lock_is_held(database)
        await release()
        headers = await asyncio.wait_for(asyncio.gather(*answers), 60)
    assert received.path.read_bytes() == data
    assert {h.status for h in headers} == {"allowed"}
    assert [i.name for i in serving.inbox()] == ["photo-1.jpg"]
