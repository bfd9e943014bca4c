"""The `ringdrop` command line: a thin client of `ringdrop.node` for terminals and scripts. Each
command turns its arguments into calls on the node and prints the result; errors become one or
two lines that say what to do, on stderr, and an exit code for their class:

      0  success
      1  any other error (a file that cannot be read, a bug)
      2  the command line is wrong (unknown option, bad ring name, --expires, relay)
      3  a ticket or peer id cannot be read (garbled, cut short, too new)
      4  the sharer does not let this peer read the content or catalog
      5  no such ring, peer, share, file, or content on the sharer's side
      6  data does not match its BLAKE3 hash (corrupt sender or store)
      7  the transfer failed: network, sharer unreachable or gone, protocol
      8  not enough free disk space
      9  a name would escape the destination folder
     10  the data directory cannot do it (already served, file in the way, ...)
    130  interrupted (Ctrl-C); a download keeps what it verified

`--debug` shows the traceback instead. Names that come from other peers (ticket names, catalog
and folder entries) go through `display.safe` before they reach a terminal; `--json` output is
ASCII-only JSON.

Modules: `app` (the parser and `main`), `base` (declaring commands, opening the node), `exits`
(exit codes and error messages), `display` (safe names, sizes, times, JSON, QR codes),
`progress` (the progress line), and the commands: `transfer` (id, share, get, info, serve,
remote), `rings` (ring, peer, grant), `content` (blob/shares, log, store, hash).
"""

from ringdrop.cli.app import build_parser, main

__all__ = ["build_parser", "main"]
