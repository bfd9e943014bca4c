"""Commands for a ring's news: the inbox of what rings' owners announced, and rings followed
into folders."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ringdrop import display
from ringdrop.cli.base import Commands, add_command, add_json, open_node
from ringdrop.cli.progress import TransferProgress
from ringdrop.cli.rings import labeler
from ringdrop.node.retry import RetryPolicy

if TYPE_CHECKING:
    from ringdrop.node import Follow, InboxItem, OnExisting

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmgt]?)i?b?", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def register(commands: Commands) -> None:
    _register_inbox(commands)
    _register_follow(commands)


def size_arg(text: str) -> int:
    """`--max-size` in bytes: a number with an optional unit (k, M, G, T: powers of 1024)."""
    found = _SIZE.fullmatch(text.strip())
    if found is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size: give e.g. 500M or 2G")
    return int(float(found.group(1)) * _UNITS[found.group(2).lower()])


# -- inbox ----------------------------------------------------------------------------------------


def _register_inbox(commands: Commands) -> None:
    parser = add_command(
        commands,
        "inbox",
        help="list what the owners of your rings announced to you",
        description=(
            "List what the owners of the rings you are in shared with them (or withdrew): "
            "their node tells yours while `ringdrop serve` runs here, and yours asks for what "
            "it missed when it starts. Fetch an entry with `ringdrop inbox get ID`."
        ),
        examples=[
            "ringdrop inbox",
            "ringdrop inbox --json",
            "ringdrop inbox get 3 --dest ~/Downloads",
            "ringdrop inbox get all",
            "ringdrop inbox dismiss 4",
        ],
        run=cmd_inbox_list,
    )
    add_json(parser)
    inbox = parser.add_subparsers(
        title="commands", metavar="COMMAND", required=False, dest="inbox_command"
    )
    get = add_command(
        inbox,
        "get",
        help="fetch an inbox entry (or all new ones), as `ringdrop get` fetches a ticket",
        examples=["ringdrop inbox get 3", "ringdrop inbox get all --dest ~/Downloads --rename"],
        run=cmd_inbox_get,
    )
    get.add_argument(
        "entry",
        metavar="ID|all",
        type=_entry_arg,
        help="the entry's id, or all to fetch every new one",
    )
    get.add_argument(
        "--dest",
        metavar="PATH",
        help="as for get: an existing folder receives it under its own name, a path ending in "
        "/ is a folder to create, any other path is the result. Default: the current folder",
    )
    existing = get.add_mutually_exclusive_group()
    existing.add_argument(
        "--force", action="store_true", help="overwrite what is already at the destination"
    )
    existing.add_argument(
        "--rename",
        action="store_true",
        help="if the destination exists, write `name (1).ext` (then (2), …) beside it",
    )
    add_json(get)
    dismiss = add_command(
        inbox,
        "dismiss",
        help="set an inbox entry aside (it is no longer new, nor fetched by a follow)",
        examples=["ringdrop inbox dismiss 4"],
        run=cmd_inbox_dismiss,
    )
    dismiss.add_argument("entry", metavar="ID", type=int, help="the entry's id, as inbox lists it")


def cmd_inbox_list(args: argparse.Namespace) -> int:
    with open_node(args) as node:
        items = node.inbox()
        label = labeler(node)
    if args.json:
        display.emit_json({"entries": [_item_json(item) for item in items]})
        return 0
    if not items:
        print("Your inbox is empty: nothing was announced to you yet.", file=sys.stderr)
        return 0
    display.table(
        [("ID", "WHEN", "RING", "FROM", "NAME", "SIZE", "STATE")]
        + [
            (
                str(item.id),
                display.when(item.arrived_at),
                display.safe(item.ring),
                label(item.sharer),
                display.safe(item.name) + ("/" if item.format == "collection" else ""),
                display.size(item.size),
                _state(item),
            )
            for item in items
        ]
    )
    return 0


def _state(item: InboxItem) -> str:
    if item.state == "received" and item.path:
        return f"received: {display.safe(item.path)}"
    if item.state == "new" and item.note:
        return f"new (waits: {display.safe(item.note)})"
    return item.state


def _item_json(item: InboxItem) -> dict[str, object]:
    return {
        "id": item.id,
        "at": display.iso(item.arrived_at),
        "announced_at": display.iso(item.announced_at),
        "ring": item.ring,
        "sharer": str(item.sharer),
        "nickname": item.nickname,
        "name": item.name,
        "format": item.format,
        "size": item.size,
        "hash": item.root.hex(),
        "state": item.state,
        "path": item.path,
        "note": item.note,
        "arrived": "asked" if item.asked else "pushed",
    }


def cmd_inbox_get(args: argparse.Namespace) -> int:
    import asyncio  # the network stack loads only for a command that goes on the network

    existing: OnExisting = "force" if args.force else "rename" if args.rename else "refuse"
    with open_node(args) as node:
        if args.entry == "all":
            entries = [item.id for item in node.inbox() if item.state == "new"]
        else:
            entries = [args.entry]
        text: str | None = args.dest
        dest = None if text is None else Path(text).expanduser()
        folder = text is not None and text.endswith(("/", os.sep))
        results = []
        for entry in entries:
            with TransferProgress() as progress:
                received = asyncio.run(
                    node.fetch_news(
                        entry,
                        dest,
                        existing=existing,
                        progress=progress,
                        retry=RetryPolicy(),
                        make_dest=folder,
                    )
                )
            item = node.inbox_item(entry)
            results.append({**_item_json(item), "dest": str(received.path)})
            if not args.json:
                print(f"Received {display.safe(item.name)}: {display.safe(str(received.path))}")
    if args.json:
        display.emit_json({"received": results})
    elif not entries:
        print("Nothing new in your inbox.", file=sys.stderr)
    return 0


def _entry_arg(text: str) -> int | Literal["all"]:
    if text == "all":
        return "all"
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an inbox id (a number) or all") from None


def cmd_inbox_dismiss(args: argparse.Namespace) -> int:
    with open_node(args) as node:
        item = node.dismiss(args.entry)
    print(f"Dismissed {display.safe(item.name)}.")
    return 0


# -- follow ---------------------------------------------------------------------------------------


def _register_follow(commands: Commands) -> None:
    parser = add_command(
        commands,
        "follow",
        help="fetch everything a ring's owner shares to it into a folder; alone, list the follows",
        description=(
            "Follow a ring you are in: while `ringdrop serve` (or the terminal interface) runs "
            "here, whatever its owner shares to it is fetched into the folder as it is "
            "announced, as `ringdrop get` would (verified, resumable, metadata kept). What is "
            "larger than --max-size, or does not fit on the disk, waits in `ringdrop inbox`. "
            "The owner enters your peer book: its announcements are taken from then on."
        ),
        examples=[
            "ringdrop follow alice family --into ~/Pictures/family",
            "ringdrop follow alice builds --into ~/builds --rename --max-size 2G",
            "ringdrop follow",
        ],
        run=cmd_follow,
    )
    parser.add_argument(
        "peer",
        metavar="PEER",
        nargs="?",
        help="the ring's owner: a peer id, a nickname, or one of its tickets (then this node "
        "asks it for news where the ticket says it is)",
    )
    parser.add_argument(
        "ring", metavar="RING", nargs="?", help="the ring's name, as its owner calls it"
    )
    parser.add_argument("--into", metavar="DIR", type=Path, help="the folder to fetch into")
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--force", action="store_true", help="overwrite a file or folder of the same name there"
    )
    existing.add_argument(
        "--rename",
        action="store_true",
        help="keep both: write `name (1).ext` (then (2), …) beside one of the same name",
    )
    parser.add_argument(
        "--max-size",
        type=size_arg,
        metavar="SIZE",
        help="leave in the inbox what is larger than this (500M, 2G; powers of 1024)",
    )
    add_json(parser)
    parser = add_command(
        commands,
        "unfollow",
        help="stop following a ring (what was fetched stays)",
        examples=["ringdrop unfollow alice family"],
        run=cmd_unfollow,
    )
    parser.add_argument("peer", metavar="PEER", help="the ring's owner: a peer id or nickname")
    parser.add_argument("ring", metavar="RING", help="the ring's name, as its owner calls it")


def cmd_follow(args: argparse.Namespace) -> int:
    if args.peer is None:
        return _list_follows(args)
    if args.ring is None or args.into is None:
        print("ringdrop: error: follow needs PEER, RING and --into DIR", file=sys.stderr)
        return 2
    existing: OnExisting = "force" if args.force else "rename" if args.rename else "refuse"
    with open_node(args) as node:
        follow = node.follow(
            args.peer, args.ring, args.into, existing=existing, max_size=args.max_size
        )
        label = labeler(node)(follow.owner)
        server = node.server_pid()
    if args.json:
        display.emit_json(_follow_json(follow, label))
        return 0
    print(
        f"Following {label}'s ring '{display.safe(follow.ring)}' into {display.safe(follow.dest)}."
    )
    if server is None:
        print("Start `ringdrop serve` (or the terminal interface) to receive what it announces.")
    return 0


def _list_follows(args: argparse.Namespace) -> int:
    with open_node(args) as node:
        follows = node.follows()
        label = labeler(node)
    if args.json:
        display.emit_json({"follows": [_follow_json(f, label(f.owner)) for f in follows]})
        return 0
    if not follows:
        print("You follow no ring.", file=sys.stderr)
        return 0
    display.table(
        [("OWNER", "RING", "INTO", "IF IT EXISTS", "MAX SIZE")]
        + [
            (
                label(f.owner),
                display.safe(f.ring),
                display.safe(f.dest),
                f.existing,
                "none" if f.max_size is None else display.size(f.max_size),
            )
            for f in follows
        ]
    )
    return 0


def _follow_json(follow: Follow, owner: str) -> dict[str, object]:
    return {
        "owner": str(follow.owner),
        "owner_label": owner,
        "ring": follow.ring,
        "into": follow.dest,
        "existing": follow.existing,
        "max_size": follow.max_size,
    }


def cmd_unfollow(args: argparse.Namespace) -> int:
    with open_node(args) as node:
        owner = node.unfollow(args.peer, args.ring)
        label = labeler(node)(owner)
    print(f"No longer following {label}'s ring '{display.safe(args.ring)}'.")
    return 0
