"""The parser that holds every command, and `main`, which runs one and turns its error into a
message and an exit code."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import NoReturn

from ringdrop import __version__
from ringdrop.cli import content, demo, news, rings, send, transfer
from ringdrop.cli import tui as tui_command
from ringdrop.cli.base import Commands, HelpFormatter, global_options
from ringdrop.cli.exits import ExitCode, error_json, exit_code_table, report
from ringdrop.display import emit_json

_DESCRIPTION = """\
Peer-to-peer file transfer over QUIC, verified with BLAKE3, gated by access rings.

Share a file or folder and hand out the ticket; only peers in a ring you attached it to (or
anyone, with --open) can download it, straight from your machine while `ringdrop serve` runs."""

_EPILOG = f"""\
quick start:
  sharer:    ringdrop ring new friends
             ringdrop ring add friends PEER_ID   (the receiver's `ringdrop id`)
             ringdrop share photos/ --ring friends   (prints a ticket)
             ringdrop serve
  receiver:  ringdrop get TICKET

once, to anyone with the ticket:
  sharer:    ringdrop send photos/   (stops once it has been fetched)
  receiver:  ringdrop receive TICKET

exit codes:
{exit_code_table()}

Run `ringdrop COMMAND --help` for a command's options and examples."""


# Each command module's `register`, by the commands it adds (tests/test_cli.py holds this equal
# to what they add): a command line that plainly names its command builds only that module's
# parsers, as building all of them takes some 9 ms of every command's start.
_REGISTER: dict[str, Callable[[Commands], None]] = {
    **dict.fromkeys(
        ("id", "share", "get", "receive", "info", "serve", "remote"), transfer.register
    ),
    "send": send.register,
    **dict.fromkeys(("ring", "peer", "grant"), rings.register),
    **dict.fromkeys(("blob", "shares", "log", "store", "hash"), content.register),
    **dict.fromkeys(("inbox", "follow", "unfollow"), news.register),
    "demo": demo.register,
}
_VALUE_OPTIONS = ("--data-dir", "--relay", "--relay-policy", "--stun", "--discovery")


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser of every command; given the command line `argv`, of the command it names
    (the others are left out when it names one plainly: past the global options alone)."""
    parser = argparse.ArgumentParser(
        prog="ringdrop",
        description=_DESCRIPTION,
        epilog=_EPILOG,
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ringdrop {__version__}")
    global_options(parser, top=True)
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    register = None if argv is None else _register_of(argv)
    if register is not None:
        register(commands)
        return parser
    transfer.register(commands)
    send.register(commands)
    rings.register(commands)
    content.register(commands)
    news.register(commands)
    tui_command.register(parser, commands)
    demo.register(commands)
    return parser


def _register_of(argv: Sequence[str]) -> Callable[[Commands], None] | None:
    """The `register` of the command `argv` names, if it names one past global options
    spelled out in full; None for anything else (the full parser then reads it)."""
    words = iter(argv)
    for word in words:
        if word in _VALUE_OPTIONS:
            next(words, None)
        elif word != "--debug" and not word.startswith(tuple(f"{o}=" for o in _VALUE_OPTIONS)):
            return _REGISTER.get(word)
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    with _debug_log(args.debug):
        return _run(args)


def run() -> NoReturn:
    """The `ringdrop` command: `main`, then the process ends with its code."""
    exit_now(main())


def exit_now(code: int) -> NoReturn:
    """Ends the process with `code`, skipping the interpreter's teardown (freeing every object
    and module, some 35 ms after a transfer) when nothing is left to do: the output flushed, no
    other thread running, the exit handlers run. Nothing is lost by it: what a command reports
    done is already durable when it says so (synced files, committed transactions), and the
    node closed its database before `main` returned. Otherwise, the ordinary exit."""
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed or broken stream: the ordinary exit reports it
        sys.exit(code)
    main_thread = threading.main_thread()
    if any(t is not main_thread and not t.daemon and t.is_alive() for t in threading.enumerate()):
        sys.exit(code)  # the interpreter waits for them
    atexit._run_exitfuncs()
    with contextlib.suppress(OSError, ValueError):  # what an exit handler printed
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


@contextlib.contextmanager
def _debug_log(enabled: bool) -> Iterator[None]:
    """With --debug, every log record on stderr while the command runs; the root logger is left
    as it was, so that `main` can run more than once in a process (as the tests do)."""
    if not enabled:
        yield
        return
    import logging

    root = logging.getLogger()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield
    finally:
        root.setLevel(level)
        root.removeHandler(handler)


def _run(args: argparse.Namespace) -> int:
    try:
        code: int = args.run(args)
    except KeyboardInterrupt as interrupt:
        # On a terminal, start below the ^C it echoed.
        print("\n" if sys.stderr.isatty() else "", end="", file=sys.stderr)
        print("ringdrop: interrupted", file=sys.stderr)
        for note in getattr(interrupt, "__notes__", ()):
            print(f"  {note}", file=sys.stderr)
        return ExitCode.INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (`ringdrop blob list | head`): not an error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return ExitCode.OK
    except Exception as error:
        if args.debug:
            raise
        if getattr(args, "json", False):
            emit_json(error_json(error))  # on stdout, where a script reads the result
        return report(error)
    return code
