"""Commands that move content or say how to: id, share, get, info, serve, remote."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ringdrop import display
from ringdrop.cli.base import (
    IGNORE_FILE,
    RECEIVE_TIMEOUT,
    Commands,
    add_command,
    add_group,
    add_json,
    add_no_addresses,
    open_node,
    rate_limit,
)
from ringdrop.cli.content import share_json
from ringdrop.cli.exits import ExitCode
from ringdrop.cli.progress import BytesProgress, TransferProgress
from ringdrop.errors import AccessDeniedError
from ringdrop.node.retry import RetryPolicy

if TYPE_CHECKING:
    from ringdrop.node import (
        CatalogEntry,
        NewsEvent,
        Node,
        OnExisting,
        Published,
        Received,
        ServeEvent,
        Share,
        ShortCode,
    )
    from ringdrop.ticket import Ticket


_TICKET_HELP = "the ticket the sharer gave you: rdrop: and a long run of letters and digits"


def register(commands: Commands) -> None:
    _register_id(commands)
    _register_share(commands)
    _register_get(commands)
    _register_info(commands)
    _register_serve(commands)
    _register_remote(commands)


# -- id -------------------------------------------------------------------------------------------


def _register_id(commands: Commands) -> None:
    parser = add_command(
        commands,
        "id",
        help="print this node's peer id, which a sharer puts in a ring to let you download",
        examples=["ringdrop id", "ringdrop id --qr"],
        run=cmd_id,
    )
    parser.add_argument("--qr", action="store_true", help="also show it as a QR code")
    add_json(parser)


def cmd_id(args: argparse.Namespace) -> int:
    with open_node(args) as node:
        peer_id = str(node.peer_id)
        if args.json:
            display.emit_json(
                {"peer_id": peer_id, "data_dir": str(node.data_dir), "port": node.config.port}
            )
            return 0
        if args.qr:
            display.print_qr(peer_id)
        print(peer_id)
    return 0


# -- share ----------------------------------------------------------------------------------------


def _register_share(commands: Commands) -> None:
    parser = add_command(
        commands,
        "share",
        help="import a file or folder, let rings read it, and print its ticket",
        description=(
            "Import a file or folder into the data directory, attach it to rings, and print the "
            "ticket and the command the other side runs. Only members of the given rings may "
            "download it (anyone, with --open). Works whether or not `ringdrop serve` is "
            "running: the ticket names the port the server listens on."
        ),
        examples=[
            "ringdrop share holiday.mp4 --ring family",
            "ringdrop share ./photos --open --qr",
            "ringdrop share notes.txt --open --no-addresses",
            "ringdrop share ./project --exclude node_modules/ --exclude '*.log' --open",
        ],
        run=cmd_share,
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="the file or folder to share")
    parser.add_argument(
        "--ring",
        action="append",
        default=[],
        metavar="NAME",
        help="let this ring's members download it (repeat for several rings)",
    )
    parser.add_argument(
        "--open", action="store_true", help="let anyone with the ticket download it"
    )
    parser.add_argument(
        "--reference",
        action="store_true",
        help="do not copy the data: serve it from where it is (it must then not change)",
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help=(
            "leave out a folder's files that match this gitignore-style pattern (repeatable; "
            f"a {IGNORE_FILE} file at the top of the folder adds its own patterns)"
        ),
    )
    parser.add_argument("--qr", action="store_true", help="also show the ticket as a QR code")
    add_no_addresses(parser)
    add_json(parser)


def cmd_share(args: argparse.Namespace) -> int:
    path: Path = args.path
    if args.exclude and not path.is_dir():
        print(f"ringdrop: error: --exclude applies to folders; {path} is not one", file=sys.stderr)
        return ExitCode.USAGE
    with open_node(args) as node:
        with BytesProgress(f"hashing {display.safe(path.absolute().name)}") as progress:
            share = node.share(
                path,
                rings=args.ring,
                open=args.open,
                reference=args.reference,
                exclude=args.exclude,
                progress=progress,
                addresses=not args.no_addresses,
                relay=not args.no_relay,
            )
        server = node.server_pid()
        if args.json:
            display.emit_json(_share_json(share) | {"server_pid": server})
        else:
            _print_share(share, server, node.config.port, args)
    return 0


def _share_json(share: Share) -> dict[str, object]:
    return share_json(share) | {
        "command": f"ringdrop get {share.ticket.encode()}",
        "excluded": share.excluded,
        "skipped": list(share.skipped),
    }


def _print_share(share: Share, server: int | None, port: int, args: argparse.Namespace) -> None:
    ticket = share.ticket.encode()
    kind = display.kind(share.format)
    print(f"Shared {display.safe(share.name)} ({kind}, {display.size(share.size)}).")
    if share.excluded:
        left_out = display.count(share.excluded, "file")
        print(f"Left out {left_out} matching --exclude or {IGNORE_FILE}.")
    if share.skipped:
        skipped = display.count(len(share.skipped), "item")
        print(
            f"Skipped {skipped} that are not regular files (symbolic "
            f"links, sockets…): {', '.join(display.safe(n) for n in share.skipped[:3])}"
            + (" …" if len(share.skipped) > 3 else "")
        )
    print(_readers(share))
    if args.qr:
        display.print_qr(ticket)
    print(f"\nTicket:\n\n  {ticket}\n\nThe other side runs:\n\n  ringdrop get {ticket}\n")
    if server is not None:
        print(f"A server is running (pid {server}): the ticket works now.")
    else:
        print(
            "No server is running for this data directory: start one with "
            f"`{_own_command(args, 'serve')}` so the other side can download "
            f"(the ticket names UDP port {port})."
        )


def _readers(share: Share) -> str:
    from ringdrop.node import OPEN_RING

    rings = [ring for ring in share.rings if ring != OPEN_RING]
    named = ", ".join(f"'{ring}'" for ring in rings)
    if OPEN_RING in share.rings:
        return "Anyone with the ticket may download it (it is in the open ring)."
    if rings:
        plural = "s" if len(rings) > 1 else ""
        return f"Members of the ring{plural} {named} may download it."
    return (
        "Nobody may download it yet: attach it to a ring with "
        f"`ringdrop blob attach {display.short_hash(share.root)} RING`, or share it with --open."
    )


def _own_command(args: argparse.Namespace, command: str) -> str:
    """`ringdrop COMMAND`, naming the data directory if one was given."""
    data_dir: Path | None = args.data_dir
    return f"ringdrop --data-dir {data_dir} {command}" if data_dir else f"ringdrop {command}"


# -- get ------------------------------------------------------------------------------------------


def _register_get(commands: Commands) -> None:
    parser = add_command(
        commands,
        "get",
        aliases=["receive"],
        help="download what a ticket names; rerun the same command to resume",
        description=(
            "Download the file or folder a ticket names, verifying every 16 KiB against its "
            "hash before it is written. A broken connection is retried; if the command stops "
            "(Ctrl-C, a crash), running it again asks only for what is still missing.\n\n"
            "A text sent with `ringdrop send --text` is printed instead (or written to --dest, "
            "if given). `receive` is another name for `get`.\n\n"
            "A short code from `ringdrop send --code` works in place of the ticket: it is "
            "traded for the sender's ticket, which lets only this node fetch, until it is done. "
            "A mistyped code is refused before anything is sent; a wrong one ends the code for "
            "the sender too (it may have been a guess), and the sender must make a new one."
        ),
        examples=[
            "ringdrop get rdrop:aeb…",
            "ringdrop receive rdrop:aeb… --dest ~/Downloads --json",
            "ringdrop get rdrop:aeb… --dest report-final.pdf --rename",
            "ringdrop receive 7-revenge-guitarist",
        ],
        run=cmd_get,
    )
    parser.add_argument(
        "ticket",
        metavar="TICKET",
        help=f"{_TICKET_HELP}; or the short code the sender read out (NUMBER-WORD-WORD)",
    )
    _add_destination(parser)
    _add_fetching(parser)
    add_json(parser)


def _add_destination(parser: argparse.ArgumentParser) -> None:
    """Where the content goes, what happens to what is there, and whether the store keeps it."""
    parser.add_argument(
        "--dest",
        metavar="PATH",
        help=(
            "like cp: an existing folder receives it under its own name; any other path is "
            "the result (the file, or the folder of a shared folder); a path ending in / is a "
            "folder to create. Default: the current folder"
        ),
    )
    existing = parser.add_mutually_exclusive_group()
    existing.add_argument(
        "--force",
        action="store_true",
        help=(
            "replace what is already at the destination: a folder is replaced whole (its "
            "files the new one lacks go too), and only once the new one is complete"
        ),
    )
    existing.add_argument(
        "--rename",
        action="store_true",
        help="if the destination exists, write `name (1).ext` (then (2), …) beside it",
    )
    parser.add_argument(
        "--keep",
        action="store_true",
        help=(
            "keep a private copy in the data directory too (default: the store hands its copy "
            "over to the destination and serves re-shares from there; config keep_received)"
        ),
    )


def _add_fetching(parser: argparse.ArgumentParser) -> None:
    """Whom it is fetched from, and how long to keep trying."""
    parser.add_argument(
        "--from",
        dest="providers",
        action="append",
        default=[],
        metavar="PEER",
        help="also fetch from this ring member, which holds the content (a peer id or a "
        "nickname; repeat for more); those the sharer knows of are asked anyway",
    )
    parser.add_argument(
        "--attempts",
        type=int,
        default=RetryPolicy().attempts,
        metavar="N",
        help=(
            "connection attempts in all when the connection is lost during the transfer "
            "(default: %(default)s); a sharer that does not answer at first fails at once"
        ),
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=RECEIVE_TIMEOUT,
        metavar="SECONDS",
        help="with a short code: give up when its sender does not answer within this time "
        "(default: %(default)g)",
    )


def cmd_get(args: argparse.Namespace) -> int:
    import asyncio

    from ringdrop.node import ShortCode, is_text, looks_like_code
    from ringdrop.ticket import Ticket

    retry = RetryPolicy(attempts=max(1, args.attempts))
    if looks_like_code(args.ticket):
        # Checked here, before anything is sent: a typo must not cost the code's one guess.
        return _get_by_code(ShortCode.parse(args.ticket), retry, args)
    ticket = Ticket.decode(args.ticket)
    if is_text(ticket) and args.dest is None:
        return _get_text(ticket, retry, args)
    with open_node(args) as node, TransferProgress() as progress:
        try:
            received = asyncio.run(_fetch(node, ticket, args, retry, progress))
        except AccessDeniedError as error:
            error.add_note(_send_your_id(node))
            raise
        except KeyboardInterrupt as interrupt:
            interrupt.add_note("what was verified is kept: run the same command to resume")
            raise
    _show_received(ticket, received, args)
    return 0


async def _fetch(
    node: Node,
    ticket: Ticket,
    args: argparse.Namespace,
    retry: RetryPolicy,
    progress: TransferProgress,
) -> Received:
    existing: OnExisting = "force" if args.force else "rename" if args.rename else "refuse"
    return await node.get(
        ticket,
        _dest(node, ticket, args.dest),
        existing=existing,
        keep=True if args.keep else None,
        progress=progress,
        retry=retry,
        providers=getattr(args, "providers", ()),
    )


def _show_received(ticket: Ticket, received: Received, args: argparse.Namespace) -> None:
    if args.json:
        display.emit_json(_received_json(ticket, received))
    else:
        _print_received(ticket, received)


def _get_by_code(code: ShortCode, retry: RetryPolicy, args: argparse.Namespace) -> int:
    """Trades the code for the sender's ticket and fetches what it names (a text is shown,
    unless --dest is given); the sender admits this node until the fetch ends."""
    import asyncio

    from ringdrop.node import is_text

    async def fetch() -> tuple[Ticket, Received | str]:
        async with node.redeeming_code(code, timeout=args.timeout) as ticket:
            if is_text(ticket) and args.dest is None:
                return ticket, await node.get_text(ticket, progress=progress, retry=retry)
            return ticket, await _fetch(node, ticket, args, retry, progress)

    with open_node(args) as node, TransferProgress() as progress:
        try:
            ticket, received = asyncio.run(fetch())
        except KeyboardInterrupt as interrupt:
            interrupt.add_note(
                "what was verified is kept: with a new code (or a ticket) for the same "
                "content, the download resumes"
            )
            raise
    if isinstance(received, str):
        _show_text(ticket, received, args)
    else:
        _show_received(ticket, received, args)
    return 0


def _get_text(ticket: Ticket, retry: RetryPolicy, args: argparse.Namespace) -> int:
    """Fetches a text sent with `send --text` and prints it (each line made safe to show)."""
    import asyncio

    with open_node(args) as node, TransferProgress() as progress:
        try:
            text = asyncio.run(node.get_text(ticket, progress=progress, retry=retry))
        except AccessDeniedError as error:
            error.add_note(_send_your_id(node))
            raise
    _show_text(ticket, text, args)
    return 0


def _show_text(ticket: Ticket, text: str, args: argparse.Namespace) -> None:
    if args.json:
        display.emit_json({"text": text, "hash": ticket.content_hash.hex()})
    else:
        print("\n".join(display.safe(line) for line in text.split("\n")))


def _dest(node: Node, ticket: Ticket, text: str | None) -> Path | None:
    """--dest as a path; one ending in a slash names a folder to receive it in, created if
    it does not exist (without the slash, a path that does not exist is the result itself)."""
    if text is None:
        return None
    dest = Path(text).expanduser()
    if text.endswith(("/", os.sep)) and not dest.is_dir():
        return dest / node.export_target(ticket, None).name
    return dest


def _received_json(ticket: Ticket, received: Received) -> dict[str, object]:
    stats = received.stats
    route = received.route
    return {
        "path": route.kind if route else None,
        "via": route.where if route else None,
        "traffic": received.traffic,
        "dest": str(received.path),
        "name": ticket.name or received.path.name,
        "hash": ticket.content_hash.hex(),
        "format": ticket.format,
        "total": stats.total,
        "present": stats.present,
        "received": stats.received,
        "seconds": round(stats.seconds, 3),
        "first_byte": None if stats.first_byte is None else round(stats.first_byte, 3),
        "paths": [{"at": at, "path": str(path)} for at, path in received.paths],
        "files": stats.files,
        "moved": received.moved,
        "copied": received.copied,
        "providers": received.providers,
    }


def _print_received(ticket: Ticket, received: Received) -> None:
    """Where it went; how big, and of that how much moved, how long and how fast (the rate is
    over what moved, never over what was already here); how the sharer was reached."""
    stats = received.stats
    fetched = stats.total - stats.present
    files = f", {stats.files} files" if ticket.format == "collection" else ""
    name = display.safe(ticket.name or received.path.name)
    print(f"Received {name}: {display.safe(str(received.path))}")
    took = display.duration(stats.seconds)
    speed = f" ({display.rate(fetched / stats.seconds)})" if fetched and stats.seconds else ""
    if not stats.present:
        print(f"  {display.size(stats.total)}{files} in {took}{speed}")
    elif fetched:
        print(
            f"  {display.size(stats.total)}{files}: {display.size(fetched)} fetched in "
            f"{took}{speed}, {display.size(stats.present)} already here"
        )
    else:
        print(f"  {display.size(stats.total)}{files}, all of it already here")
    if received.route is not None:
        print(f"  from the sharer {display.safe(str(received.route))}")
    if len(received.providers) > 1:
        shares = ", ".join(
            f"{peer[:8]}… {display.size(n)}" for peer, n in received.providers.items()
        )
        print(f"  from {len(received.providers)} providers: {shares}")
    if received.moved:
        print(
            f"  {display.size(received.moved)} put in place without copying: the data directory "
            "keeps a reference to it instead of a second copy"
        )


def _send_your_id(node: Node) -> str:
    return f"the sharer can let you in with: ringdrop ring add RING {node.peer_id}"


# -- info -----------------------------------------------------------------------------------------


def _register_info(commands: Commands) -> None:
    parser = add_command(
        commands,
        "info",
        help="show what a ticket names, without connecting anywhere",
        examples=["ringdrop info rdrop:aeb…"],
        run=cmd_info,
    )
    parser.add_argument("ticket", metavar="TICKET", help=_TICKET_HELP)
    add_json(parser)


def cmd_info(args: argparse.Namespace) -> int:
    from ringdrop.ticket import Ticket

    ticket = Ticket.decode(args.ticket)
    addresses = [str(address) for address in ticket.addresses]
    if args.json:
        display.emit_json(
            {
                "peer_id": str(ticket.peer_id),
                "hash": ticket.content_hash.hex(),
                "format": ticket.format,
                "name": ticket.name,
                "size": ticket.size,
                "addresses": addresses,
                "relay": ticket.relay,
                "needs_discovery": ticket.key_only,
            }
        )
        return 0
    name = display.safe(ticket.name) if ticket.name else "(no name)"
    reach = [
        ("addresses", ", ".join(addresses) or "none (only through the relay)"),
        ("relay", ticket.relay or "none (only at the addresses)"),
    ]
    if ticket.key_only:
        reach = [("reached", "by key alone: needs discovery (the sharer's published record)")]
    display.table(
        [
            ("content", f"{name}: a {display.kind(ticket.format)}, {display.size(ticket.size)}"),
            ("hash", ticket.content_hash.hex()),
            ("sharer", str(ticket.peer_id)),
            *reach,
        ]
    )
    print(f"\nTo download it: ringdrop get {ticket.encode()}")
    return 0


# -- serve ----------------------------------------------------------------------------------------


def _register_serve(commands: Commands) -> None:
    parser = add_command(
        commands,
        "serve",
        help="answer downloads until stopped, logging one line per request",
        description=(
            "Listen for peers and answer their requests: shared content goes to peers that a "
            "ring admits, and every request is logged in one line. Changes made meanwhile with "
            "`ringdrop ring …` or `ringdrop share` apply from the next request. One server per "
            "data directory. Stop with Ctrl-C or SIGTERM."
        ),
        examples=[
            "ringdrop serve",
            "ringdrop --data-dir /srv/ringdrop serve >> ringdrop.log",
            "ringdrop serve --publish-addresses",
        ],
        run=cmd_serve,
    )
    parser.add_argument(
        "--publish-addresses",
        action="store_true",
        default=None,
        help="put this machine's addresses in the record that lets peers find it by key, not "
        'only its home relay (or "publish_addresses": true in config.json)',
    )
    parser.add_argument(
        "--limit-rate",
        type=rate_limit,
        metavar="RATE",
        help="send at most this many bytes a second to all peers together: 20M is 20 MB/s, "
        '500K 500 kB/s (or "limit_rate" in bytes in config.json)',
    )


def cmd_serve(args: argparse.Namespace) -> int:
    import asyncio

    with open_node(args, publish_addresses=args.publish_addresses) as node:
        if args.limit_rate is not None:
            node.limit_rate = args.limit_rate
        stopped_by = asyncio.run(_serve(node))
    print(f"stopped ({stopped_by})", flush=True)
    return 0


async def _serve(node: Node) -> str:
    """Serves until SIGINT or SIGTERM cancels it; returns the signal's name."""
    import asyncio

    loop = asyncio.get_running_loop()
    stopped_by: list[str] = []
    serving = asyncio.ensure_future(
        node.serve(
            on_event=print_event,
            ready=lambda port: _announce(node, port),
            on_relay=lambda state: _relay_state(node, state),
            on_record=_record_published(),
            on_news=lambda event: _print_news(node, event),
        )
    )

    def stop(sig: signal.Signals) -> None:
        stopped_by.append(sig.name)
        serving.cancel()

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    try:
        await serving
    except asyncio.CancelledError:
        if not stopped_by:
            raise
    return stopped_by[0]


def _announce(node: Node, port: int) -> None:
    addresses = ", ".join(str(address) for address in node.addresses())
    relay = f" and relay {node.home_relay}" if node.home_relay else ""
    print(f"serving as {node.peer_id}", flush=True)
    print(f"  UDP port {port}; tickets name {addresses}{relay}", flush=True)
    if node.discovery.pkarr:
        published = "its relay and addresses" if node.publish_addresses else "its relay"
        where = ", ".join(node.discovery.pkarr)
        print(f"  found by key: a record of {published} at {where}", flush=True)
    print(f"  data directory {node.data_dir}; Ctrl-C to stop", flush=True)


def _record_published() -> Callable[[Published], None]:
    """Prints the first publication of the record, each change of what it says, and each
    failure (and the success after one)."""
    last: list[Published] = []

    def show(result: Published) -> None:
        record = result.record
        before = last[0] if last else None
        last[:] = [result]
        if not result.ok:
            print(f"record not published: {display.safe('; '.join(result.failures))}", flush=True)
        elif before is None or not before.ok or before.record.strings() != record.strings():
            print(f"record published: {display.safe(record.describe())}", flush=True)

    return show


def _relay_state(node: Node, state: str) -> None:
    if state in ("connected", "disconnected"):
        print(f"relay {display.safe(node.home_relay or '')}: {state}", flush=True)


def _print_news(node: Node, event: NewsEvent) -> None:
    nickname = node.nickname(event.peer)
    who = f"{display.safe(nickname)} ({str(event.peer)[:8]}…)" if nickname else str(event.peer)
    ring = f"'{display.safe(event.ring)}'"
    name = display.safe(event.name) if event.name else None
    size = f" ({display.size(event.size)})" if event.size is not None else ""
    reason = display.safe(event.reason or "")
    match event.kind:
        case "arrived":
            line = f"inbox {event.entry}: {name}{size} from {who} in {ring}"
        case "withdrawn":
            line = f"inbox {event.entry}: {name} withdrawn by {who} from {ring}"
        case "refused":
            line = f"news from or to {who} for {ring} refused: {reason}"
        case "announced":
            what = name or display.count(event.count, "announcement")
            via = f" ({display.safe(event.via)})" if event.via else ""
            line = f"announced {what} to {who} in {ring}{via}"
        case "unreachable":
            line = f"could not announce {ring}'s news to {who}: {reason}"
        case "fetched":
            line = f"followed {ring}: received {name} into {display.safe(event.path or '')}"
        case "waiting":
            line = f"followed {ring}: {name}{size} waits in the inbox ({event.entry}): {reason}"
    print(f"{display.when(event.at)}  {line}", flush=True)


def print_event(event: ServeEvent) -> None:
    """One line of the serving log: when, who, what, and how it ended."""
    who = f"{display.safe(event.nickname)} ({event.peer[:8]}…)" if event.nickname else event.peer
    what = event.operation
    if event.root:
        what += f" {display.safe(event.name) if event.name else display.short_hash(event.root)}"
    if not event.allowed:
        result = f"{event.outcome}: {display.safe(event.reason)}"
    elif event.operation in ("rings", "about", "have"):
        result = "answered"
    elif event.root:
        result = f"{event.outcome}, {display.size(event.bytes_sent)} sent"
    else:
        result = event.outcome
    print(f"{display.when(event.at)}  {who}  {what}: {result}", flush=True)


# -- remote ---------------------------------------------------------------------------------------


def _register_remote(commands: Commands) -> None:
    remote = add_group(
        commands,
        "remote",
        help="ask another node what it lets you download",
        examples=["ringdrop remote list alice", "ringdrop remote list rdrop:aeb…"],
    )
    parser = add_command(
        remote,
        "list",
        help="list the content a peer lets you download (it must have granted you its catalog)",
        examples=["ringdrop remote list rdrop:aeb…", "ringdrop remote list alice --json"],
        run=cmd_remote_list,
    )
    parser.add_argument(
        "peer",
        metavar="PEER",
        help="a ticket from that peer, or a peer whose ticket you used before (nickname or id)",
    )
    add_json(parser)


def cmd_remote_list(args: argparse.Namespace) -> int:
    import asyncio

    with open_node(args) as node:
        try:
            entries = asyncio.run(node.remote_catalog(args.peer))
        except AccessDeniedError as error:
            error.add_note(f"the sharer can allow this with: ringdrop grant add {node.peer_id}")
            raise
    if args.json:
        display.emit_json({"entries": [_entry_json(entry) for entry in entries]})
        return 0
    if not entries:
        print("The peer lets you download nothing yet.", file=sys.stderr)
        return 0
    display.table(
        [
            (
                display.short_hash(entry.content_hash),
                display.kind(entry.format),
                display.size(entry.size),
                display.safe(entry.name),
            )
            for entry in entries
        ]
    )
    return 0


def _entry_json(entry: CatalogEntry) -> dict[str, object]:
    return {
        "hash": entry.content_hash.hex(),
        "name": entry.name,
        "format": entry.format,
        "size": entry.size,
    }
