"""The `ringdrop` command line: a thin client that turns arguments into calls and errors into
one line a person can act on, with a non-zero exit code."""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

from ringdrop import __version__
from ringdrop.bao import create_outboard, outboard_size
from ringdrop.errors import RingdropError


def _progress(name: str) -> Callable[[int, int], None]:
    def report(done: int, total: int) -> None:
        if sys.stderr.isatty() and total:
            print(f"\rhashing {name}: {100 * done // total:3d}%", end="", file=sys.stderr)

    return report


def cmd_hash(args: argparse.Namespace) -> int:
    for path in args.files:
        with tempfile.TemporaryDirectory(prefix="ringdrop-") as tmp:
            root, size = create_outboard(path, Path(tmp) / "obao", _progress(path.name))
        if sys.stderr.isatty():
            print("\r\033[K", end="", file=sys.stderr)
        print(f"{root.hex()}  {size} bytes, outboard {outboard_size(size)} bytes  {path}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ringdrop",
        description="Peer-to-peer file transfer over QUIC, verified with BLAKE3.",
    )
    parser.add_argument("--version", action="version", version=f"ringdrop {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    commands = parser.add_subparsers(dest="command", required=True)
    hash_cmd = commands.add_parser(
        "hash",
        help="print the BLAKE3 root and outboard size of files",
        epilog="example: ringdrop hash movie.mkv",
    )
    hash_cmd.add_argument("files", nargs="+", type=Path, metavar="FILE")
    hash_cmd.set_defaults(run=cmd_hash)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = args.run(args)
    except (RingdropError, OSError) as error:
        if args.debug:
            raise
        message = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        where = f": {error.filename}" if isinstance(error, OSError) and error.filename else ""
        print(f"ringdrop: error: {message}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("ringdrop: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
