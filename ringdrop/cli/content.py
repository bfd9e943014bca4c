"""Commands about what is in the data directory: blob (alias shares), log, store, hash."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ringdrop import display
from ringdrop.cli.base import (
    Commands,
    add_command,
    add_group,
    add_json,
    add_no_addresses,
    open_node,
)
from ringdrop.cli.exits import ExitCode
from ringdrop.cli.progress import BytesProgress
from ringdrop.cli.rings import labeler

if TYPE_CHECKING:
    from ringdrop.identity import PeerId
    from ringdrop.node import AccessLogEntry, Share, Upload

_SHARE_HELP = "the share's hash (6+ leading hex digits) or its name, as `ringdrop blob list` shows"


def register(commands: Commands) -> None:
    _register_blob(commands)
    _register_log(commands)
    _register_store(commands)
    _register_hash(commands)


# -- blob -----------------------------------------------------------------------------------------


def _register_blob(commands: Commands) -> None:
    blob = add_group(
        commands,
        "blob",
        aliases=["shares"],
        help="manage the content in the data directory (shared and received)",
        examples=["ringdrop blob list", "ringdrop shares attach 3f2a9c family"],
        default=cmd_blob_list,
    )
    parser = add_command(
        blob,
        "list",
        help="list shared and received content with the rings that may read it",
        examples=["ringdrop blob list", "ringdrop shares list --json"],
        run=cmd_blob_list,
    )
    add_json(parser)
    parser = add_command(
        blob,
        "remove",
        help="stop sharing content and let `ringdrop store gc` reclaim its space",
        examples=["ringdrop blob remove 3f2a9c"],
        run=cmd_blob_remove,
    )
    parser.add_argument("share", metavar="SHARE", nargs="+", help=_SHARE_HELP)
    for name, run, what in (
        ("attach", cmd_blob_attach, "let a ring's members download content"),
        ("detach", cmd_blob_detach, "stop letting a ring's members download content"),
    ):
        parser = add_command(
            blob,
            name,
            help=what,
            examples=[
                f"ringdrop blob {name} 3f2a9c family",
                f"ringdrop blob {name} notes.txt open",
            ],
            run=run,
        )
        parser.add_argument("share", metavar="SHARE", help=_SHARE_HELP)
        parser.add_argument(
            "ring", metavar="RING", help="a ring's name, as `ringdrop ring list` shows it"
        )
    parser = add_command(
        blob,
        "ticket",
        help="print a share's ticket again",
        examples=["ringdrop blob ticket 3f2a9c --qr", "ringdrop blob ticket 3f2a9c --no-addresses"],
        run=cmd_blob_ticket,
    )
    parser.add_argument("share", metavar="SHARE", help=_SHARE_HELP)
    parser.add_argument("--qr", action="store_true", help="also show it as a QR code")
    add_no_addresses(parser)


def cmd_blob_list(args: argparse.Namespace) -> int:
    with open_node(args, create=False) as node:
        shares = node.shares()
    if getattr(args, "json", False):
        display.emit_json({"shares": [share_json(share) for share in shares]})
        return 0
    if not shares:
        print("Nothing is shared or received yet. Share something with `ringdrop share PATH`.")
        return 0
    display.table(
        [("HASH", "KIND", "SIZE", "RINGS", "NAME")]
        + [
            (
                display.short_hash(s.root),
                display.kind(s.format),
                display.size(s.size),
                ",".join(s.rings) or "-",
                display.safe(s.name),
            )
            for s in shares
        ]
    )
    return 0


def share_json(share: Share) -> dict[str, object]:
    """A share as `blob list --json` lists it; `share --json` adds what the import did."""
    return {
        "hash": share.root.hex(),
        "name": share.name,
        "format": share.format,
        "size": share.size,
        "rings": list(share.rings),
        "ticket": share.ticket.encode(),
    }


def cmd_blob_remove(args: argparse.Namespace) -> int:
    with open_node(args, create=False) as node:
        for text in args.share:
            share = node.find_share(text)
            node.unshare(share.root)
            print(f"Removed {display.safe(share.name)} ({display.short_hash(share.root)}).")
    print("Run `ringdrop store gc` to reclaim the space.")
    return 0


def cmd_blob_attach(args: argparse.Namespace) -> int:
    with open_node(args, create=False) as node:
        share = node.find_share(args.share)
        node.attach(share, args.ring)
    print(f"The ring '{args.ring}' may now download {display.safe(share.name)}.")
    return 0


def cmd_blob_detach(args: argparse.Namespace) -> int:
    with open_node(args, create=False) as node:
        share = node.find_share(args.share)
        node.detach(share, args.ring)
    print(f"The ring '{args.ring}' may no longer download {display.safe(share.name)}.")
    return 0


def cmd_blob_ticket(args: argparse.Namespace) -> int:
    with open_node(args, create=False) as node:
        node.check_ticket_reach(addresses=not args.no_addresses, relay=not args.no_relay)
        share = node.find_share(args.share)
        at = () if args.no_addresses else share.ticket.addresses
        ticket = node.ticket(
            share.root, share.format, share.name, share.size, at=at, relay=not args.no_relay
        ).encode()
    if args.qr:
        display.print_qr(ticket)
    print(ticket)
    return 0


# -- log ------------------------------------------------------------------------------------------


def _register_log(commands: Commands) -> None:
    parser = add_command(
        commands,
        "log",
        help="show what was served: who downloaded what, when, and how much",
        examples=["ringdrop log", "ringdrop log --access --limit 20"],
        run=cmd_log,
    )
    parser.add_argument(
        "--access",
        action="store_true",
        help="show every access decision instead (allowed and denied, with the reason)",
    )
    parser.add_argument(
        "--limit", type=int, default=50, metavar="N", help="the last N entries (default: 50)"
    )
    add_json(parser)


def cmd_log(args: argparse.Namespace) -> int:
    limit = max(1, args.limit)
    with open_node(args, create=False) as node:
        names = {share.root: share.name for share in node.shares()}
        name_peer = labeler(node)
        if args.access:
            _print_decisions(node.decisions(limit), names, name_peer, args.json)
        else:
            _print_uploads(node.uploads(limit), names, name_peer, args.json)
    return 0


def _print_uploads(
    uploads: list[Upload],
    names: dict[bytes, str],
    name_peer: Callable[[PeerId], str],
    as_json: bool,
) -> None:
    if as_json:
        display.emit_json(
            {
                "uploads": [
                    {
                        "at": display.iso(u.at),
                        "peer_id": str(u.peer_id),
                        "hash": u.root.hex(),
                        "name": names.get(u.root),
                        "bytes_sent": u.bytes_sent,
                        "outcome": u.outcome,
                        "via": None if u.via is None else str(u.via),
                    }
                    for u in uploads
                ]
            }
        )
    elif not uploads:
        print("Nothing has been served yet.")
    else:
        display.table(
            [("WHEN", "PEER", "SENT", "OUTCOME", "WHAT")]
            + [
                (
                    display.when(u.at),
                    name_peer(u.peer_id),
                    display.size(u.bytes_sent),
                    u.outcome if u.via is None else f"by member {name_peer(u.via)}",
                    display.safe(names.get(u.root) or display.short_hash(u.root)),
                )
                for u in uploads
            ]
        )


def _print_decisions(
    entries: list[AccessLogEntry],
    names: dict[bytes, str],
    name_peer: Callable[[PeerId], str],
    as_json: bool,
) -> None:
    if as_json:
        display.emit_json(
            {
                "decisions": [
                    {
                        "at": display.iso(e.at),
                        "peer_id": str(e.peer_id),
                        "hash": e.root.hex(),
                        "name": names.get(e.root),
                        "operation": e.operation,
                        "allowed": e.allowed,
                        "ring": e.ring,
                        "reason": e.reason,
                        "count": e.count,
                        "last_at": None if e.last_at is None else display.iso(e.last_at),
                    }
                    for e in entries
                ]
            }
        )
    elif not entries:
        print("No request has been answered yet.")
    else:
        display.table(
            [("WHEN", "PEER", "VERDICT", "WHAT", "REASON")]
            + [
                (
                    display.when(e.at),
                    name_peer(e.peer_id),
                    "allowed" if e.allowed else "DENIED" + (f" x{e.count}" if e.count > 1 else ""),
                    display.safe(names.get(e.root) or display.short_hash(e.root)),
                    e.reason,
                )
                for e in entries
            ]
        )


# -- store ----------------------------------------------------------------------------------------


def _register_store(commands: Commands) -> None:
    store = add_group(
        commands,
        "store",
        help="look after the data directory",
        examples=["ringdrop store check", "ringdrop store gc"],
    )
    add_command(
        store,
        "check",
        help=(
            "re-verify every stored blob against its hash (a received or --reference file "
            "edited since is forgotten, not damage)"
        ),
        examples=["ringdrop store check"],
        run=cmd_store_check,
    )
    add_command(
        store,
        "gc",
        help="delete content nothing shares or keeps any more, and leftovers of crashes",
        examples=["ringdrop store gc"],
        run=cmd_store_gc,
    )


def cmd_store_check(args: argparse.Namespace) -> int:
    with open_node(args, create=False) as node, BytesProgress("checking") as progress:
        report = node.check_store(progress)
    for changed in report.changed:
        how = "edited" if changed.how == "edited" else "moved or deleted"
        print(
            f"{display.safe(str(changed.path))}: changed outside ringdrop ({how}), no longer shared"
        )
    for problem in report.problems:
        print(f"{display.short_hash(problem.root)}  {problem.kind}: {problem.message}")
    checked = display.count(report.checked, "blob")
    if report.changed:
        files = display.count(len(report.changed), "file")
        them = "it" if len(report.changed) == 1 else "them"
        print(
            f"{files} changed outside ringdrop: the data directory has forgotten {them}, and "
            "a later get of the same content fetches it again."
        )
    if report.ok:
        print(f"{checked} checked: the data directory's own files are intact.")
        return 0
    print(
        f"{len(report.problems)} of {checked} failed the check: the data directory's own "
        "files are damaged. Remove them with `ringdrop blob remove HASH` and share or "
        "download them again.",
        file=sys.stderr,
    )
    return ExitCode.INTEGRITY


def cmd_store_gc(args: argparse.Namespace) -> int:
    with open_node(args, create=False) as node:
        report = node.gc()
    print(
        f"Deleted {display.count(report.blobs_deleted, 'blob')}, "
        f"{display.count(report.partials_deleted, 'unfinished download')} and "
        f"{display.count(report.files_deleted, 'file')}; freed {display.size(report.bytes_freed)}."
    )
    return 0


# -- hash -----------------------------------------------------------------------------------------


def _register_hash(commands: Commands) -> None:
    parser = add_command(
        commands,
        "hash",
        help="print the BLAKE3 root and outboard size of files (nothing is stored)",
        examples=["ringdrop hash movie.mkv"],
        run=cmd_hash,
    )
    parser.add_argument(
        "files", nargs="+", type=Path, metavar="FILE", help="a file to hash (several: each)"
    )


def cmd_hash(args: argparse.Namespace) -> int:
    from ringdrop.node import hash_file

    for path in args.files:
        with BytesProgress(f"hashing {display.safe(path.name)}") as progress:
            hashed = hash_file(path, progress)
        print(
            f"{hashed.root.hex()}  {hashed.size} bytes, outboard {hashed.outboard_size} bytes  "
            f"{path}"
        )
    return 0
