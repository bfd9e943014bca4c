"""The way into the TUI: `ringdrop tui`, and `ringdrop` with no command. Textual is imported
only when the TUI starts, so other commands stay quick."""

from __future__ import annotations

import argparse

from ringdrop.cli.base import Commands, add_command


def register(parser: argparse.ArgumentParser, commands: Commands) -> None:
    """Adds `tui` to `commands` and makes it what `parser` runs when no command is given."""
    add_command(
        commands,
        "tui",
        help="open the terminal interface (also what `ringdrop` alone does)",
        examples=["ringdrop", "ringdrop --data-dir ~/other tui"],
        run=run,
    )
    commands.required = False
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ringdrop.tui import run as run_tui

    return run_tui(args.data_dir, relays=args.relay, stun=args.stun, discovery=args.discovery)
