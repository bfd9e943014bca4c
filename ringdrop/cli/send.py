"""`ringdrop send`: share, serve until the content has been fetched (once, or --times N), print
progress, stop — the one-shot flow of `sendme send` and `croc send`. The other side runs
`ringdrop receive TICKET` (the same as `get`), or `ringdrop receive CODE` after `send --code`."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ringdrop import display
from ringdrop.cli.base import (
    CODE_EXPIRES,
    Commands,
    add_command,
    add_no_addresses,
    expiry,
    open_node,
)
from ringdrop.cli.exits import ExitCode
from ringdrop.cli.progress import BytesProgress, StatusLine
from ringdrop.cli.transfer import print_event

if TYPE_CHECKING:
    from ringdrop.node import Fetched, Node, Sent, Share, ShortCode

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
            "members may fetch it, for as long.\n\n"
            "With --code, it prints a short code to read aloud (7-revenge-guitarist) instead "
            "of the ticket, and the other side runs `ringdrop receive CODE`. The words are the "
            "secret (16 bits for two): whoever types a wrong one ends the code for both sides, "
            "so a guesser gets one try. Only the one receiver who typed it may fetch the "
            "content — not anyone with the ticket, nor a ring (so no --ring, and no --times "
            "but 1) — until it has all of it, or for as long again as --expires gives the code."
        ),
        examples=[
            "ringdrop send holiday.mp4",
            "ringdrop send ./photos --ring family --times 3",
            'ringdrop send --text "the door code is 4711"',
            "ringdrop send holiday.mp4 --code",
            "ringdrop send ./photos --code 42-revenge-guitarist --expires 30m",
        ],
        run=cmd_send,
    )
    _add_what_and_who(parser)
    _add_code(parser)
    parser.add_argument(
        "--qr", action="store_true", help="also show the ticket (or the code) as a QR code"
    )
    add_no_addresses(parser)


def _add_what_and_who(parser: argparse.ArgumentParser) -> None:
    """What is sent, and who may fetch it how many times."""
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


def _add_code(parser: argparse.ArgumentParser) -> None:
    """Offering the content under a short code instead of the ticket."""
    parser.add_argument(
        "--code",
        nargs="?",
        const="",
        metavar="CODE",
        help=(
            "print a short code to read aloud instead of the ticket: a new one, or this one "
            "(NUMBER-WORD-WORD); it lets one receiver fetch, with `ringdrop receive CODE`"
        ),
    )
    parser.add_argument(
        "--expires",
        type=expiry,
        metavar="WHEN",
        help=(
            "with --code: how long the code may be used (a duration such as 5m or 1h, or a "
            "time); its receiver is admitted as long again. Default: "
            f"{CODE_EXPIRES / 60:g} minutes"
        ),
    )


def cmd_send(args: argparse.Namespace) -> int:
    import asyncio

    from ringdrop.node import ShortCode

    problem = _unusable(args)
    if problem:
        print(f"ringdrop: error: {problem}", file=sys.stderr)
        return ExitCode.USAGE
    code: ShortCode | None = None
    if args.code is not None:
        # A chosen code is checked before anything is hashed or sent.
        code = ShortCode.parse(args.code) if args.code else ShortCode.generate()
    with open_node(args) as node:
        sent = asyncio.run(_send(node, args, code))
    what = "the ticket" if code is None else "the code"
    if sent.receivers:
        who = ", ".join(_who(f) for f in sent.receivers)
        print(f"Fetched by {who}. Nothing more is offered: {what} no longer works.", flush=True)
    elif sent.offer is not None and sent.offer.receiver is not None:
        print(
            f"{sent.offer.receiver} is finished with it, without fetching all of it from here "
            f"(it had some of it already, or it stopped). Nothing more is offered: {what} no "
            "longer works.",
            flush=True,
        )
    return 0


def _unusable(args: argparse.Namespace) -> str | None:
    """Why these options cannot go together, if they cannot."""
    from ringdrop.node import looks_like_code

    if args.code and args.path is None and not looks_like_code(args.code):
        return (
            f"--code took {display.safe(args.code)!r} for the code: put the PATH before it "
            "(ringdrop send PATH --code)"
        )
    if (args.path is None) == (args.text is None):
        return "give a PATH to send, or --text, not both"
    if args.code is None:
        return "--expires is how long a short code works: add --code" if args.expires else None
    if args.ring:
        return (
            "with --code, one receiver may fetch it, through a ring of its own: to let a ring's "
            "members fetch it, send it without --code"
        )
    if args.times != 1:
        return "with --code, one receiver may fetch it: to send to several, leave out --code"
    return None


async def _send(node: Node, args: argparse.Namespace, code: ShortCode | None) -> Sent:
    import asyncio

    loop = asyncio.get_running_loop()
    expires = None if args.expires is None else max(1.0, args.expires - time.time())
    watch = _Watch(args.times, code, CODE_EXPIRES if expires is None else expires)
    name = display.safe(args.path.absolute().name) if args.path is not None else "the text"
    with BytesProgress(f"hashing {name}") as hashing:
        task = asyncio.ensure_future(
            node.send(
                args.path,
                text=args.text,
                rings=args.ring,
                times=args.times,
                code=code,
                expires=expires,
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
            what = "the ticket" if code is None else "the code"
            interrupt.add_note(f"nothing more is offered: {what} no longer works")
            raise interrupt from None
        finally:
            watch.line.clear()


class _Watch:
    """What the command prints while it serves: the ticket (or the code) once it can be used,
    the bytes going out on the status line, and each receiver that has fetched it all."""

    def __init__(self, times: int, code: ShortCode | None, expires: float) -> None:
        self.times = times
        self.code = code
        self.expires = expires
        self.line = StatusLine()
        self.total = 0
        self.out = 0
        self.started = time.monotonic()
        self._drawn = 0.0
        self.done = 0

    def ready(self, share: Share, args: argparse.Namespace) -> None:
        what = (
            f"a text ({display.size(share.size)})"
            if args.text is not None
            else f"{display.safe(share.name)} ({display.kind(share.format)}, "
            f"{display.size(share.size)})"
        )
        self.total = share.size * self.times
        self.started = time.monotonic()
        if self.code is not None:
            self._show_code(what, self.code, args)
            return
        ticket = share.ticket.encode()
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

    def _show_code(self, what: str, code: ShortCode, args: argparse.Namespace) -> None:
        print(f"Sending {what}: the one receiver who types the code may fetch it.")
        if args.qr:
            display.print_qr(str(code))
        print(f"\nCode: {code}\n\nOn the other side: ringdrop receive {code}\n")
        print(
            f"It works once, for {display.duration(self.expires)}; {code.entropy_bits} bits "
            "that a guesser gets one try at. Waiting for the receiver; Ctrl-C stops (and the "
            "code stops working).",
            flush=True,
        )

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
