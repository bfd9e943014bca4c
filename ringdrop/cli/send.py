"""`ringdrop send`: share, serve until the content has been fetched (once, or --times N), print
progress, stop — the one-shot flow of `sendme send` and `croc send`. The other side runs
`ringdrop receive TICKET` (the same as `get`)."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ringdrop import display
from ringdrop.cli.base import Commands, add_command, add_no_addresses, open_node
from ringdrop.cli.exits import ExitCode
from ringdrop.cli.progress import BytesProgress, StatusLine
from ringdrop.cli.transfer import print_event

if TYPE_CHECKING:
    from ringdrop.node import Fetched, Node, Sent, Share

_REDRAW = 0.2


def register(commands: Commands) -> None:
    parser = add_command(
        commands,
        "send",
        help="send a file, folder or text once: serve until it has been fetched, then stop",
        description=(
            "Share a file or folder (served from where it is, not copied), or a short text, "
            "print its ticket, and serve it until the receiver has fetched all of it; then "
            "stop. The other side runs `ringdrop receive TICKET`.\n\n"
            "Without --ring, anyone with the ticket may fetch it, and only while this command "
            "runs: what it shares is offered by this send alone, so the ticket stops working "
            "when it ends (after --times receivers, or Ctrl-C). With --ring, only that ring's "
            "members may fetch it, for as long."
        ),
        examples=[
            "ringdrop send holiday.mp4",
            "ringdrop send ./photos --ring family --times 3",
            'ringdrop send --text "the door code is 4711"',
        ],
        run=cmd_send,
    )
    parser.add_argument(
        "path", type=Path, nargs="?", metavar="PATH", help="the file or folder to send"
    )
    parser.add_argument(
        "--text",
        metavar="TEXT",
        help="send this text instead (up to 64 KiB): the receiver sees it, no file is written",
    )
    parser.add_argument(
        "--ring",
        action="append",
        default=[],
        metavar="NAME",
        help="let only this ring's members fetch it (repeatable; default: anyone with the ticket)",
    )
    parser.add_argument(
        "--times",
        type=int,
        default=1,
        metavar="N",
        help="stop once N receivers have fetched all of it (default: %(default)s)",
    )
    parser.add_argument("--qr", action="store_true", help="also show the ticket as a QR code")
    add_no_addresses(parser)


def cmd_send(args: argparse.Namespace) -> int:
    import asyncio

    if (args.path is None) == (args.text is None):
        print("ringdrop: error: give a PATH to send, or --text, not both", file=sys.stderr)
        return ExitCode.USAGE
    with open_node(args) as node:
        sent = asyncio.run(_send(node, args))
    who = ", ".join(_who(f) for f in sent.receivers)
    print(f"Fetched by {who}. Nothing more is offered: the ticket no longer works.", flush=True)
    return 0


async def _send(node: Node, args: argparse.Namespace) -> Sent:
    import asyncio

    loop = asyncio.get_running_loop()
    watch = _Watch(args.times)
    name = display.safe(args.path.absolute().name) if args.path is not None else "the text"
    with BytesProgress(f"hashing {name}") as hashing:
        task = asyncio.ensure_future(
            node.send(
                args.path,
                text=args.text,
                rings=args.ring,
                times=args.times,
                addresses=not args.no_addresses,
                progress=hashing,
                ready=lambda share: watch.ready(share, args),
                on_event=print_event if args.path is not None else None,
                on_fetched=watch.fetched,
                on_sent=watch.sent,
            )
        )
        stopped: list[str] = []

        def stop(sig: signal.Signals) -> None:
            stopped.append(sig.name)
            task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop, sig)
        try:
            return await task
        except asyncio.CancelledError:
            if not stopped:
                raise
            interrupt = KeyboardInterrupt()
            interrupt.add_note("nothing more is offered: the ticket no longer works")
            raise interrupt from None
        finally:
            watch.line.clear()


class _Watch:
    """What the command prints while it serves: the ticket once it listens, the bytes going out
    on the status line, and each receiver that has fetched it all."""

    def __init__(self, times: int) -> None:
        self.times = times
        self.line = StatusLine()
        self.total = 0
        self.out = 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self.done = 0

    def ready(self, share: Share, args: argparse.Namespace) -> None:
        ticket = share.ticket.encode()
        what = (
            f"a text ({display.size(share.size)})"
            if args.text is not None
            else f"{display.safe(share.name)} ({display.kind(share.format)}, "
            f"{display.size(share.size)})"
        )
        readers = (
            "anyone with the ticket may fetch it"
            if not args.ring
            else f"members of {', '.join(repr(r) for r in args.ring)} may fetch it"
        )
        until = "once" if self.times == 1 else f"by {self.times} receivers"
        print(f"Sending {what}: {readers}, until it has been fetched {until}.")
        if args.qr:
            display.print_qr(ticket)
        print(f"\nTicket:\n\n  {ticket}\n\nThe other side runs:\n\n  ringdrop receive {ticket}\n")
        print("Waiting for the receiver; Ctrl-C stops (and the ticket stops working).", flush=True)
        self.total = share.size * self.times
        self.started = time.monotonic()

    def sent(self, peer: str, n: int) -> None:
        self.out += n
        now = time.monotonic()
        if now - self._drawn < _REDRAW:
            return
        self._drawn = now
        rate = display.rate(self.out / max(now - self.started, 1e-3))
        # The stream carries the hash tree too: a little more than the content.
        percent = min(100, 100 * self.out // self.total) if self.total else 100
        self.line.show(
            f"sent {percent:3d}%  {display.size(self.out)} of {display.size(self.total)}  {rate}"
        )

    def fetched(self, fetched: Fetched) -> None:
        self.done += 1
        self.line.log(f"fetched by {_who(fetched)} ({self.done} of {self.times})")


def _who(fetched: Fetched) -> str:
    if fetched.nickname:
        return f"{display.safe(fetched.nickname)} ({fetched.peer[:8]}…)"
    return fetched.peer
