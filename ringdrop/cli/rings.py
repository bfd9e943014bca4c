"""Commands that say who may download: ring, peer and grant."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from ringdrop import display
from ringdrop.cli.base import Commands, add_command, add_group, expiry, open_node

if TYPE_CHECKING:
    from ringdrop.identity import PeerId
    from ringdrop.node import Member, Node

_PEER_HELP = "a peer id, a nickname from your peer book, or the first 8+ characters of an id"
_RING_HELP = "a ring's name, as `ringdrop ring list` shows it"


def register(commands: Commands) -> None:
    _register_ring(commands)
    _register_peer(commands)
    _register_grant(commands)


def label(node: Node, peer_id: PeerId) -> str:
    """How a confirmation names a peer: `alice (lg3yxfl2…)`, or the whole id."""
    return labeler(node)(peer_id)


def labeler(node: Node) -> Callable[[PeerId], str]:
    """`label` for many peers, reading the peer book once."""
    nicknames = node.nicknames()

    def label(peer_id: PeerId) -> str:
        nickname = nicknames.get(peer_id)
        return f"{display.safe(nickname)} ({peer_id.short()}…)" if nickname else str(peer_id)

    return label


# -- ring -----------------------------------------------------------------------------------------


def _register_ring(commands: Commands) -> None:
    ring = add_group(
        commands,
        "ring",
        help="manage rings: named sets of peers that may download what is attached to them",
        examples=["ringdrop ring new family", "ringdrop ring add family alice --expires 3d"],
        default=cmd_ring_list,
    )
    _register_ring_itself(ring)
    _register_membership_changes(ring)
    _register_membership_views(ring)


def _register_ring_itself(ring: Commands) -> None:
    """`ring new`, `set`, `list`, `rename`, `delete`: the rings themselves."""
    parser = add_command(
        ring,
        "new",
        help="create a ring",
        examples=["ringdrop ring new family", "ringdrop ring new family --members-serve off"],
        run=cmd_ring_new,
    )
    parser.add_argument("name", metavar="NAME", help="the new ring's name, such as family")
    _members_serve_option(parser, default="on")
    parser = add_command(
        ring,
        "set",
        help="change a ring's settings (its members get them with its next signed manifest)",
        examples=["ringdrop ring set family --members-serve off"],
        run=cmd_ring_set,
    )
    parser.add_argument("name", metavar="NAME", help=_RING_HELP)
    _members_serve_option(parser, default=None)
    add_command(
        ring,
        "list",
        help="list the rings with their numbers of members and shares",
        examples=["ringdrop ring list"],
        run=cmd_ring_list,
    )
    parser = add_command(
        ring,
        "rename",
        help="rename a ring",
        examples=["ringdrop ring rename family relatives"],
        run=cmd_ring_rename,
    )
    parser.add_argument("old", metavar="NAME", help=_RING_HELP)
    parser.add_argument("new", metavar="NEW_NAME", help="the name it has from now on")
    parser = add_command(
        ring,
        "delete",
        help="delete a ring, its memberships and attachments (not the content)",
        examples=["ringdrop ring delete family"],
        run=cmd_ring_delete,
    )
    parser.add_argument("name", metavar="NAME", help=_RING_HELP)


def _register_membership_changes(ring: Commands) -> None:
    """`ring add`, `expire`, `remove`: who is in a ring, and until when."""
    parser = add_command(
        ring,
        "add",
        help="let a peer into a ring, for good or until a time",
        examples=[
            "ringdrop ring add family lg3yxfl2xp5ut4p42str2ttux4dlajhqiioj2yopfk3jztoggo2a",
            "ringdrop ring add family alice --expires 2h",
            "ringdrop ring add family alice --expires 2026-12-24",
        ],
        run=cmd_ring_add,
    )
    parser.add_argument("ring", metavar="RING", help=_RING_HELP)
    parser.add_argument("peer", metavar="PEER", help=_PEER_HELP)
    parser.add_argument(
        "--expires",
        type=expiry,
        metavar="WHEN",
        help="end the membership after a duration (90m, 2h, 3d, 1w) or at a date or time "
        "(2026-12-24, 2026-12-24T18:00); adding again changes it",
    )
    parser = add_command(
        ring,
        "expire",
        help="end a peer's membership of a ring now, or at a time to come",
        examples=["ringdrop ring expire family alice", "ringdrop ring expire family alice 2h"],
        run=cmd_ring_expire,
    )
    parser.add_argument("ring", metavar="RING", help=_RING_HELP)
    parser.add_argument("peer", metavar="PEER", help=_PEER_HELP)
    parser.add_argument(
        "when",
        metavar="WHEN",
        nargs="?",
        type=expiry,
        help="a duration (90m, 2h, 3d) or a date or time (2026-12-24T18:00); default: now",
    )
    parser = add_command(
        ring,
        "remove",
        help="take a peer out of a ring",
        examples=["ringdrop ring remove family alice"],
        run=cmd_ring_remove,
    )
    parser.add_argument("ring", metavar="RING", help=_RING_HELP)
    parser.add_argument("peer", metavar="PEER", help=_PEER_HELP)


def _register_membership_views(ring: Commands) -> None:
    """`ring sync`, `members`: trading the rings' manifests, and reading a ring's members."""
    parser = add_command(
        ring,
        "sync",
        help="fetch the newest signed manifests of your rings from their owners (or the peers "
        "named) and pass yours on",
        examples=["ringdrop ring sync", "ringdrop ring sync alice"],
        run=cmd_ring_sync,
    )
    parser.add_argument("peers", metavar="PEER", nargs="*", help=_PEER_HELP)
    parser = add_command(
        ring,
        "members",
        help="list a ring's members and when their membership ends",
        examples=["ringdrop ring members family"],
        run=cmd_ring_members,
    )
    parser.add_argument("ring", metavar="RING", help=_RING_HELP)


def _members_serve_option(parser: argparse.ArgumentParser, default: str | None) -> None:
    parser.add_argument(
        "--members-serve",
        choices=("on", "off"),
        default=default,
        required=default is None,
        help="whether members serve what they received under the ring to each other, so that "
        "a download takes from every member that holds it (default: on)",
    )


def cmd_ring_new(args: argparse.Namespace) -> int:
    with open_node(args) as node:
        ring = node.create_ring(args.name, members_serve=args.members_serve == "on")
    print(f"Created the ring '{ring.name}'. Add people with `ringdrop ring add {ring.name} PEER`.")
    return 0


def cmd_ring_set(args: argparse.Namespace) -> int:
    with open_node(args) as node:
        node.set_members_serve(args.name, args.members_serve == "on")
    verb = "serve" if args.members_serve == "on" else "no longer serve"
    print(f"Members of the ring '{args.name}' {verb} what they received under it.")
    return 0


def cmd_ring_list(args: argparse.Namespace) -> int:
    with open_node(args, create=False) as node:
        rings = node.rings()
    rows = [("RING", "MEMBERS", "SHARES", "MEMBERS SERVE", "VERSION")]
    for ring in rings:
        members = "anyone" if ring.is_open else str(ring.member_count)
        serve = "-" if ring.is_open else ("yes" if ring.members_serve else "no")
        version = "-" if ring.is_open else str(ring.version)
        rows.append((ring.name, members, str(ring.content_count), serve, version))
    display.table(rows)
    return 0


def cmd_ring_rename(args: argparse.Namespace) -> int:
    with open_node(args, create=False) as node:
        node.rename_ring(args.old, args.new)
    print(f"Renamed the ring '{args.old}' to '{args.new}'.")
    return 0


def cmd_ring_delete(args: argparse.Namespace) -> int:
    with open_node(args, create=False) as node:
        node.delete_ring(args.name)
    print(f"Deleted the ring '{args.name}'.")
    return 0


def cmd_ring_add(args: argparse.Namespace) -> int:
    expires: float | None = args.expires
    with open_node(args, create=False) as node:
        peer_id = node.add_member(args.ring, args.peer, expires_at=expires)
        who = label(node, peer_id)
    until = f" until {display.when(expires)}" if expires is not None else ""
    print(f"{who} is in the ring '{args.ring}'{until}.")
    return 0


def cmd_ring_expire(args: argparse.Namespace) -> int:
    at: float = time.time() if args.when is None else args.when
    with open_node(args) as node:
        peer_id = node.expire_member(args.ring, args.peer, at)
        who = label(node, peer_id)
    when = "now" if args.when is None else f"at {display.when(at)}"
    print(f"{who}'s membership of the ring '{args.ring}' ends {when}.")
    return 0


def cmd_ring_sync(args: argparse.Namespace) -> int:
    import asyncio

    with open_node(args) as node:
        kept = asyncio.run(node.sync_rings(args.peers))
    if not kept:
        print("Your rings' manifests are the newest known.")
    for manifest in kept:
        print(f"The ring '{manifest.name}' of {manifest.owner.short()}… is now at version "
              f"{manifest.version} ({len(manifest.members)} members).")  # fmt: skip
    return 0


def cmd_ring_remove(args: argparse.Namespace) -> int:
    with open_node(args, create=False) as node:
        peer_id = node.remove_member(args.ring, args.peer)
        who = label(node, peer_id)
    print(f"{who} is no longer in the ring '{args.ring}'.")
    return 0


def cmd_ring_members(args: argparse.Namespace) -> int:
    with open_node(args, create=False) as node:
        members = node.members(args.ring)
    if not members:
        print(f"The ring '{args.ring}' has no members.")
        return 0
    now = time.time()
    display.table(
        [("NICKNAME", "PEER ID", "MEMBERSHIP")]
        + [(display.safe(m.nickname or "-"), str(m.peer_id), _membership(m, now)) for m in members]
    )
    return 0


def _membership(member: Member, now: float) -> str:
    if member.expires_at is None:
        return "for good"
    verb = "until" if member.is_active(now) else "expired"
    return f"{verb} {display.when(member.expires_at)}"


# -- peer -----------------------------------------------------------------------------------------


def _register_peer(commands: Commands) -> None:
    peer = add_group(
        commands,
        "peer",
        help="manage your peer book: peer ids with nicknames to use in other commands",
        examples=["ringdrop peer add lg3yxfl2xp5ut4p42str2ttux4dlajhqiioj2yopfk3jztoggo2a alice"],
        default=cmd_peer_list,
    )
    parser = add_command(
        peer,
        "add",
        help="enter a peer id in the peer book, with a nickname (again: change the nickname)",
        examples=["ringdrop peer add lg3yxfl2xp5ut4p42str2ttux4dlajhqiioj2yopfk3jztoggo2a alice"],
        run=cmd_peer_add,
    )
    parser.add_argument(
        "peer_id", metavar="PEER_ID", help="the peer's id (what `ringdrop id` prints for them)"
    )
    parser.add_argument(
        "nickname",
        metavar="NICKNAME",
        nargs="?",
        help="a name of your choice, to use instead of the id in other commands",
    )
    add_command(
        peer, "list", help="list the peer book", examples=["ringdrop peer list"], run=cmd_peer_list
    )
    parser = add_command(
        peer,
        "remove",
        help="remove a peer from the peer book, every ring and every grant",
        examples=["ringdrop peer remove alice"],
        run=cmd_peer_remove,
    )
    parser.add_argument("peer", metavar="PEER", help=_PEER_HELP)


def cmd_peer_add(args: argparse.Namespace) -> int:
    with open_node(args) as node:
        peer = node.add_peer(args.peer_id, args.nickname)
        who = label(node, peer.peer_id)
    print(f"{who} is in your peer book.")
    return 0


def cmd_peer_list(args: argparse.Namespace) -> int:
    with open_node(args, create=False) as node:
        peers = node.peers()
    if not peers:
        print("Your peer book is empty. Add a peer with `ringdrop peer add PEER_ID NICKNAME`.")
        return 0
    display.table(
        [("NICKNAME", "PEER ID", "ADDED")]
        + [
            (display.safe(p.nickname or "-"), str(p.peer_id), display.when(p.added_at))
            for p in peers
        ]
    )
    return 0


def cmd_peer_remove(args: argparse.Namespace) -> int:
    with open_node(args, create=False) as node:
        peer_id = node.resolve_peer(args.peer)
        who = label(node, peer_id)
        node.remove_peer(peer_id)
    print(f"Removed {who} from your peer book, its rings and its grants.")
    return 0


# -- grant ----------------------------------------------------------------------------------------


def _register_grant(commands: Commands) -> None:
    grant = add_group(
        commands,
        "grant",
        help="manage privileges: `catalog` lets a peer list what it may download",
        examples=["ringdrop grant add alice", "ringdrop grant list"],
        default=cmd_grant_list,
    )
    for name, run, what in (
        ("add", cmd_grant_add, "give a peer a privilege"),
        ("remove", cmd_grant_remove, "take a privilege away from a peer"),
    ):
        parser = add_command(
            grant, name, help=what, examples=[f"ringdrop grant {name} alice catalog"], run=run
        )
        parser.add_argument("peer", metavar="PEER", help=_PEER_HELP)
        parser.add_argument(
            "privilege", metavar="PRIVILEGE", nargs="?", default="catalog", choices=["catalog"],
            help="the privilege (only `catalog` so far, the default)",
        )  # fmt: skip
    parser = add_command(
        grant,
        "list",
        help="list the privileges of one peer or of every peer",
        examples=["ringdrop grant list", "ringdrop grant list alice"],
        run=cmd_grant_list,
    )
    parser.add_argument("peer", metavar="PEER", nargs="?", help=_PEER_HELP)


def cmd_grant_add(args: argparse.Namespace) -> int:
    with open_node(args) as node:
        peer_id = node.grant(args.peer, args.privilege)
        who = label(node, peer_id)
    print(f"{who} now has the {args.privilege} privilege.")
    return 0


def cmd_grant_remove(args: argparse.Namespace) -> int:
    with open_node(args, create=False) as node:
        peer_id = node.revoke(args.peer, args.privilege)
        who = label(node, peer_id)
    print(f"{who} no longer has the {args.privilege} privilege.")
    return 0


def cmd_grant_list(args: argparse.Namespace) -> int:
    peer: str | None = getattr(args, "peer", None)
    with open_node(args, create=False) as node:
        peers = [node.resolve_peer(peer)] if peer is not None else [p.peer_id for p in node.peers()]
        name = labeler(node)
        rows = [(name(p), ", ".join(node.grants(p))) for p in peers]
    rows = [row for row in rows if row[1]]
    if not rows:
        print("No peer has a privilege." if peer is None else "That peer has no privilege.")
        return 0
    display.table([("PEER", "PRIVILEGES"), *rows])
    return 0
