"""A node in a process of its own, for tests that SIGKILL it.

    python -m tests.node.peer_process serve DATA_DIR
    python -m tests.node.peer_process get DATA_DIR TICKET DEST

`serve` prints {"port": N} once listening; `get` prints one JSON line per progress report
({"done": …, "total": …}) and a last line with the statistics.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

from ringdrop.node import Node, Progress, RetryPolicy
from ringdrop.ticket import Ticket


def report(progress: Progress) -> None:
    print(json.dumps({"done": progress.done, "total": progress.total}), flush=True)


async def main(role: str, data_dir: str, *rest: str) -> None:
    with Node(Path(data_dir)) as node:
        if role == "serve":
            await node.serve(
                host="127.0.0.1", ready=lambda port: print(json.dumps({"port": port}), flush=True)
            )
        else:
            ticket, dest = rest
            received = await node.get(
                Ticket.decode(ticket), Path(dest), progress=report, retry=RetryPolicy(attempts=3)
            )
            stats = received.stats
            print(json.dumps({"received": stats.received, "present": stats.present}), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:]))
