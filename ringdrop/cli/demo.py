"""`ringdrop demo`: the whole job on one machine — two nodes with their own data directories,
one sharing a folder with a ring, the other receiving it over QUIC on loopback with progress,
and an outsider refused."""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from ringdrop import display
from ringdrop.cli.base import DISABLED, Commands, add_command
from ringdrop.cli.progress import BytesProgress, TransferProgress
from ringdrop.errors import AccessDeniedError

if TYPE_CHECKING:
    from ringdrop.node import Node

MIB = 2**20
LOOPBACK = ("127.0.0.1",)


def register(commands: Commands) -> None:
    parser = add_command(
        commands,
        "demo",
        help="share a folder between two local nodes over loopback, with progress",
        description=(
            "Run the whole job on this machine: alice shares a generated folder with her ring "
            "'friends', bob (a member) receives it over QUIC on 127.0.0.1 and verifies every "
            "16 KiB, and carol (not a member) is refused. Nothing leaves this machine; the data "
            "directories live in a temporary folder unless --keep is given."
        ),
        examples=["ringdrop demo", "ringdrop demo --size-mib 512 --keep"],
        run=cmd_demo,
    )
    parser.add_argument(
        "--size-mib", type=int, default=256, metavar="N", help="size of the folder (default 256)"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the data directories and the received copy"
    )


def cmd_demo(args: argparse.Namespace) -> int:
    import asyncio

    if args.keep:
        work = Path(tempfile.mkdtemp(prefix="ringdrop-demo-"))
        code = asyncio.run(_demo(work, args))
        print(f"\ndata directories and the received copy: {work}")
        return code
    with tempfile.TemporaryDirectory(prefix="ringdrop-demo-") as temporary:
        code = asyncio.run(_demo(Path(temporary), args))
    print(
        f"\nThe demo's folder, data directories and received copy were in {temporary}, now "
        "deleted; `ringdrop demo --keep` keeps them to look at."
    )
    return code


def _make_folder(folder: Path, size: int) -> None:
    """A folder of incompressible files: one large, several small, one nested."""
    import blake3

    xof = blake3.blake3(b"ringdrop demo")
    sizes = {"video/holiday.mp4": size - 20 * 40_000, "README.txt": 1_000}
    sizes |= {f"photos/img-{i:02d}.jpg": 40_000 for i in range(20)}
    offset = 0
    for name, n in sizes.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(xof.digest(length=max(n, 0), seek=offset))
        offset += max(n, 0)


def _node(data_dir: Path, args: argparse.Namespace) -> Node:
    """Nothing leaves this machine: tickets name loopback only, and there is no relay, STUN or
    discovery server unless asked for on the command line (the environment's settings are for
    real transfers). The allocator keeps freed memory, as for every command that opens a node."""
    from ringdrop.node import Node, keep_freed_memory

    keep_freed_memory()
    return Node(
        data_dir,
        relays=args.relay or (),
        stun=args.stun or (),
        addresses=LOOPBACK,
        discovery=args.discovery or (DISABLED,),
    )


async def _demo(work: Path, args: argparse.Namespace) -> int:
    import asyncio

    folder = work / "demo-folder"
    _make_folder(folder, max(args.size_mib, 1) * MIB)
    with (
        _node(work / "alice", args) as alice,
        _node(work / "bob", args) as bob,
        _node(work / "carol", args) as carol,
    ):
        print(f"alice  {alice.peer_id}")
        print(f"bob    {bob.peer_id}")
        print(f"carol  {carol.peer_id}\n")
        alice.create_ring("friends")
        alice.add_member("friends", bob.peer_id)
        print("alice: ringdrop ring new friends && ringdrop ring add friends <bob's id>")
        with BytesProgress("alice: importing") as progress:
            share = alice.share(folder, rings=["friends"], progress=progress)
        ticket = share.ticket.encode()
        print(f"alice: ringdrop share {folder.name} --ring friends")
        print(f"  {display.size(share.size)} in a collection; ticket:\n  {ticket}\n")

        ready: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        serving = asyncio.create_task(
            alice.serve(host="127.0.0.1", ready=lambda port: ready.set_result(port))
        )
        try:
            port = await ready
            print(f"alice: ringdrop serve   (listening on UDP 127.0.0.1:{port})\n")
            print("carol: ringdrop get <ticket>")
            try:
                await carol.get(share.ticket, work / "carol-got")
            except AccessDeniedError as error:
                print(f"  refused, as she should be: {error}\n")
            print("bob:   ringdrop get <ticket> --dest bob-got")
            (work / "bob-got").mkdir(exist_ok=True)
            with TransferProgress() as progress:
                received = await bob.get(share.ticket, work / "bob-got", progress=progress)
        finally:
            serving.cancel()
            await asyncio.gather(serving, return_exceptions=True)
        stats = received.stats
        rate = display.rate(stats.total / stats.seconds) if stats.seconds else "-"
        print(f"  received {stats.files} files, {display.size(stats.total)} in")
        print(f"  {display.duration(stats.seconds)} ({rate}), every 16 KiB verified against")
        print(f"  the BLAKE3 root {share.root.hex()[:16]}…, into {received.path}\n")
        uploads = [u for u in alice.uploads(limit=1000) if u.peer_id == bob.peer_id]
        sent = sum(u.bytes_sent for u in uploads)
        print(f"alice: ringdrop log   ({len(uploads)} uploads to bob, {display.size(sent)})")
    return 0
