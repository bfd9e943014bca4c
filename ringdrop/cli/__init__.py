"""The `ringdrop` command line: a thin client of `ringdrop.node` for terminals and scripts. Each
command turns its arguments into calls on the node and prints the result; errors become one or
two lines that say what to do, on stderr, and the exit code of their class
(`ringdrop.errors`; `ringdrop --help` lists the codes).

`--debug` shows the traceback instead. Names that come from other peers (ticket names, catalog
and folder entries) go through `display.safe` before they reach a terminal; `--json` output is
ASCII-only JSON.

Modules: `app` (the parser and `main`), `base` (declaring commands, opening the node), `exits`
(error messages and the CLI's hints), `display` (safe names, sizes, times, JSON, QR codes),
`progress` (the progress line), and the commands: `transfer` (id, share, get/receive, info,
serve, remote), `send`, `rings` (ring, peer, grant), `content` (blob/shares, log, store, hash).

The command modules import the node inside the commands that open one, so that building the
parser — all `--version` and `--help` need — loads nothing beneath the CLI
(tests/test_cli_startup.py).
"""

from ringdrop.cli.app import build_parser, main, run

__all__ = ["build_parser", "main", "run"]
