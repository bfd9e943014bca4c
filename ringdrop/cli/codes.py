"""Short codes on the command line: `send PATH --code` offers a file or folder under a code read
aloud, `receive CODE` redeems one (a ticket works too, as with `get`)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path

from ringdrop import display
from ringdrop.cli.base import Commands, add_command, expiry, open_node
from ringdrop.cli.progress import TransferProgress
from ringdrop.cli.transfer import _dest, _print_received, _received_json, cmd_get
from ringdrop.errors import AlreadyServedError, UsageError
from ringdrop.node import (
    CODE_EXPIRES,
    RECEIVE_TIMEOUT,
    CodeOffer,
    Node,
    OnExisting,
    Received,
    RetryPolicy,
    Share,
    ShortCode,
    looks_like_code,
)
from ringdrop.ticket import Ticket


def register(commands: Commands) -> None:
    _register_send(commands)
    _register_receive(commands)


# -- send -----------------------------------------------------------------------------------------


def _register_send(commands: Commands) -> None:
    parser = add_command(
        commands,
        "send",
        help="offer a file or folder under a short code to read aloud, serve it once, exit",
        description=(
            "Offer a file or folder under a short code such as 7-revenge-guitarist, and serve it "
            "until the one who typed the code has it. The code's words are the secret (16 bits "
            "for two words): whoever types a wrong one ends the code for both sides, so a guesser "
            "gets one try. Nobody but that receiver may fetch the content, and only until it is "
            "done or the time given by --expires has passed again."
        ),
        examples=[
            "ringdrop send holiday.mp4 --code",
            "ringdrop send ./photos --code --expires 30m",
            "ringdrop send notes.txt --code 42-revenge-guitarist",
        ],
        run=cmd_send,
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="the file or folder to send")
    parser.add_argument(
        "--code",
        nargs="?",
        const="",
        default=None,
        metavar="CODE",
        help="offer it under a short code: a new one, or this one (NUMBER-WORD-WORD)",
    )
    parser.add_argument(
        "--expires",
        type=expiry,
        default=None,
        metavar="WHEN",
        help=(
            "how long the code may be used (a duration such as 5m or 1h, or a time); the "
            f"receiver is admitted as long again. Default: {CODE_EXPIRES / 60:g} minutes"
        ),
    )


def cmd_send(args: argparse.Namespace) -> int:
    if args.code is None:
        raise UsageError(
            "send offers content under a short code here: add --code (or share it with "
            "`ringdrop share` and serve it with `ringdrop serve`)"
        )
    code = ShortCode.parse(args.code) if args.code else None
    expires = CODE_EXPIRES if args.expires is None else max(1.0, args.expires - time.time())
    with open_node(args) as node:
        share = node.share(args.path)
        offer = asyncio.run(_send(node, share, code, expires))
    assert offer.receiver is not None
    print(f"Done: {offer.receiver.short()} is finished with it, and may fetch it no more.")
    return 0


async def _send(node: Node, share: Share, code: ShortCode | None, expires: float) -> CodeOffer:
    listening = asyncio.get_running_loop().create_future()
    server = asyncio.create_task(node.serve(ready=listening.set_result))
    done, _ = await asyncio.wait([listening, server], return_when="FIRST_COMPLETED")
    if server in done and not isinstance(server.exception(), AlreadyServedError):
        server.result()  # another reason it could not serve: say so
    # Otherwise this node serves already, or another process serves its data directory: the
    # one-time ring is in the database both read.
    try:
        return await node.offer_code(
            share, code, expires=expires, on_ready=lambda offer: _show(offer, expires)
        )
    finally:
        server.cancel()
        with contextlib.suppress(asyncio.CancelledError, AlreadyServedError):
            await server


def _show(offer: CodeOffer, expires: float) -> None:
    code = offer.code
    print(f"Code: {code}", flush=True)
    print(f"  On the other side: ringdrop receive {code}")
    print(
        f"  It works once, for {display.duration(expires)}; {code.entropy_bits} bits that a "
        "guesser gets one try at. Waiting for the receiver…",
        flush=True,
    )


# -- receive --------------------------------------------------------------------------------------


def _register_receive(commands: Commands) -> None:
    parser = add_command(
        commands,
        "receive",
        help="download what a short code (or a ticket) names",
        description=(
            "Turn a short code from `ringdrop send` into the sender's ticket, and download what "
            "it names, verified as `ringdrop get` does. A code that is mistyped is refused "
            "before anything is sent; a code with wrong words ends it for the sender too."
        ),
        examples=[
            "ringdrop receive 7-revenge-guitarist",
            "ringdrop receive 7-revenge-guitarist --dest ~/Downloads",
        ],
        run=cmd_receive,
    )
    parser.add_argument("code", metavar="CODE", help="the code (or a ticket)")
    parser.add_argument(
        "--dest", metavar="PATH", help="where to put it, as for `ringdrop get` (default: here)"
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=RECEIVE_TIMEOUT,
        metavar="SECONDS",
        help="give up when no sender answers within this time (default: %(default)g)",
    )
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON")


def cmd_receive(args: argparse.Namespace) -> int:
    if not looks_like_code(args.code):
        forwarded = argparse.Namespace(**vars(args))
        forwarded.ticket = args.code
        forwarded.force = forwarded.rename = forwarded.keep = False
        forwarded.attempts = RetryPolicy().attempts
        return cmd_get(forwarded)
    code = ShortCode.parse(args.code)
    with open_node(args) as node, TransferProgress() as progress:
        ticket, received = asyncio.run(_receive(node, code, args.dest, args.timeout, progress))
    if args.json:
        display.emit_json(_received_json(ticket, received))
    else:
        _print_received(ticket, received)
    return 0


async def _receive(
    node: Node, code: ShortCode, dest_text: str | None, timeout: float, progress: TransferProgress
) -> tuple[Ticket, Received]:
    existing: OnExisting = "refuse"
    async with node.redeeming_code(code, timeout=timeout) as ticket:
        dest = _dest(node, ticket, dest_text)
        return ticket, await node.get(ticket, dest, existing=existing, progress=progress)
