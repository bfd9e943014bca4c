"""What every command shares: how it is declared (help with examples, the global options also
accepted after the command's name) and how it opens the node."""

from __future__ import annotations

import argparse
import re
import sys
import textwrap
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

# What `add_subparsers` returns; generic only to type checkers before Python 3.12.
if TYPE_CHECKING:
    from ringdrop.node import Node

    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Commands = argparse._SubParsersAction

# The names ringdrop.node.config reads, spelled out here so that building the parser (all that
# `--version` and `--help` need) imports no layer beneath; tests/test_cli.py holds them equal.
DISABLED = "disabled"
RELAY_ENV = "RINGDROP_RELAY"
RELAY_POLICY_ENV = "RINGDROP_RELAY_POLICY"
RELAY_POLICIES = ("public", "any")
STUN_ENV = "RINGDROP_STUN"
DISCOVERY_ENV = "RINGDROP_DISCOVERY"
# And the file of exclusion patterns a shared folder may hold (ringdrop.node.IGNORE_FILE), and
# the defaults of short codes (ringdrop.node.CODE_EXPIRES, RECEIVE_TIMEOUT): seconds a code
# works, and seconds a receiver waits for its sender.
IGNORE_FILE = ".ringdropignore"
CODE_EXPIRES = 600.0
RECEIVE_TIMEOUT = 60.0

Run = Callable[[argparse.Namespace], int]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Wraps description paragraphs to the terminal, and keeps indented blocks (examples,
    commands to type) as they are written."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        filled = []
        for paragraph in text.split("\n\n"):
            if any(line[:1].isspace() for line in paragraph.splitlines()[1:]):
                filled.append(super()._fill_text(paragraph, width, indent))
            else:
                words = " ".join(paragraph.split())
                filled.append(
                    textwrap.fill(
                        words,
                        width,
                        initial_indent=indent,
                        subsequent_indent=indent,
                        break_on_hyphens=False,
                    )
                )
        return "\n\n".join(filled)


def global_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """--data-dir, --relay, --relay-policy, --stun, --discovery and --debug. On a command they
    default to SUPPRESS, so that they are accepted after the command's name without overriding
    what was given before it."""
    keep = None if top else argparse.SUPPRESS
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        default=keep,
        help="the data directory (default: $RINGDROP_DATA_DIR, else ~/.ringdrop)",
    )
    parser.add_argument(
        "--relay",
        action="append",
        default=keep,
        metavar="URL",
        help=f"an iroh relay server to use (repeat for several; {DISABLED!r} for none; "
        f"default: ${RELAY_ENV}, comma-separated, else n0's public relays)",
    )
    parser.add_argument(
        "--relay-policy",
        choices=RELAY_POLICIES,
        default=keep,
        help="which relays a ticket may make this node use: 'public' (https:// at public "
        f"addresses, and the relays configured here; the default) or 'any' (default: "
        f"${RELAY_POLICY_ENV}, else public)",
    )
    parser.add_argument(
        "--stun",
        action="append",
        default=keep,
        metavar="HOST:PORT",
        help=f"a STUN server to use (repeat for several; {DISABLED!r} for none; "
        f"default: ${STUN_ENV}, comma-separated, else public ones)",
    )
    parser.add_argument(
        "--discovery",
        action="append",
        default=keep,
        metavar="URL",
        help=f"a pkarr relay where peers are found by key (repeat for several; {DISABLED!r} "
        f"for none; default: ${DISCOVERY_ENV}, comma-separated, else n0's dns.iroh.link)",
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="show the traceback of an error",
    )


def add_command(
    commands: Commands,
    name: str,
    *,
    help: str,
    examples: Sequence[str],
    run: Run | None = None,
    description: str | None = None,
    aliases: Sequence[str] = (),
) -> argparse.ArgumentParser:
    """A (sub)command whose --help ends with examples; `run` is what it does."""
    lines = "\n".join(f"  {example}" for example in examples)
    parser = commands.add_parser(
        name,
        help=help,
        description=description or help[0].upper() + help[1:] + ".",
        epilog=f"example{'s' if len(examples) > 1 else ''}:\n{lines}",
        formatter_class=HelpFormatter,
        aliases=list(aliases),
    )
    global_options(parser, top=False)
    if run is not None:
        parser.set_defaults(run=run)
    return parser


def add_group(
    commands: Commands,
    name: str,
    *,
    help: str,
    examples: Sequence[str],
    default: Run | None = None,
    aliases: Sequence[str] = (),
) -> Commands:
    """A command with subcommands (`ring new`, `ring list` …); `default` runs when none is given."""
    parser = add_command(commands, name, help=help, examples=examples, aliases=aliases)
    if default is not None:
        parser.set_defaults(run=default)
    return parser.add_subparsers(
        title="commands", metavar="COMMAND", required=default is None, dest=f"{name}_command"
    )


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print machine-readable JSON on stdout instead"
    )


def add_no_addresses(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--no-addresses",
        action="store_true",
        help="name no address of this machine in the ticket, only its home relay",
    )
    parser.add_argument(
        "--no-relay",
        action="store_true",
        help="name no relay in the ticket; with --no-addresses it names only this node's key, "
        "and the receiver finds it through discovery (while `ringdrop serve` publishes)",
    )


def open_node(
    args: argparse.Namespace,
    *,
    create: bool = True,
    publish_addresses: bool | None = None,
) -> Node:
    """The node of --data-dir, with the relay, STUN and discovery servers of the options. A
    command that only reads passes `create=False`: a mistyped --data-dir then fails instead of
    making a new node. Making one is said on stderr, with its path and peer id: it happens
    once. From here on, the process's allocator keeps the memory it frees
    (`keep_freed_memory`): the command owns its process, and a transfer's buffers are reused
    instead of mapped afresh."""
    from ringdrop.node import Node, keep_freed_memory

    keep_freed_memory()
    node = Node(
        args.data_dir,
        relays=args.relay,
        stun=args.stun,
        relay_policy=args.relay_policy,
        discovery=args.discovery,
        publish_addresses=publish_addresses,
        create=create,
    )
    if node.created:
        print(
            f"ringdrop: created the data directory {node.data_dir}; this node's peer id is "
            f"{node.peer_id}",
            file=sys.stderr,
        )
    return node


_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*([kmg]?)b?(?:/s)?", re.IGNORECASE)
_RATE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9}


def rate_limit(text: str) -> int:
    """`--limit-rate` as bytes a second: a number with K, M or G (decimal, as network rates
    are: 20M is 20,000,000 bytes a second)."""
    found = _RATE.fullmatch(text.strip())
    value = 0 if found is None else int(float(found[1]) * _RATE_UNITS[found[2].lower()])
    if value <= 0:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a rate: give bytes a second such as 20M, 500K or 1G"
        )
    return value


def expiry(text: str, now: datetime | None = None) -> float:
    """`--expires` as epoch seconds: a duration from now (`90m`, `2h`, `3d`, `1w`, `1d12h`) or
    an ISO date or date and time (`2026-12-24`, `2026-12-24T18:00`, in local time unless it
    names an offset)."""
    now = now or datetime.now().astimezone()
    compact = text.strip().lower()
    if compact and _DURATION.sub("", compact).strip() == "":
        seconds = sum(float(n) * _SECONDS[unit] for n, unit in _DURATION.findall(compact))
        if seconds <= 0:
            raise argparse.ArgumentTypeError(f"{text!r} is no time at all: give e.g. 2h or 3d")
        return (now + timedelta(seconds=seconds)).timestamp()
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time: give a duration such as 2h, 3d or 1w, or a date such as "
            "2026-12-24 or 2026-12-24T18:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()
    if moment <= now:
        raise argparse.ArgumentTypeError(f"{text!r} is in the past")
    return moment.timestamp()
