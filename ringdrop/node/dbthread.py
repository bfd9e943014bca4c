"""A thread of its own for database work that may wait out another process's write lock."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

__all__ = ["DatabaseThread"]

P = ParamSpec("P")
R = TypeVar("R")


class DatabaseThread:
    """One thread that reads and writes the node's database for a task. Not the event loop's
    shared threads: a write of this node's own stuck behind another process's lock (up to the
    busy timeout) holds the node's connection, and calls waiting for it there would take the
    threads that serving and downloads need."""

    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=name)

    async def __call__(self, call: Callable[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(call, *args, **kwargs))

    def close(self) -> None:
        """Drops the calls not started; one under way goes on."""
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def drain(self) -> None:
        """Drops the calls not started and waits for the one under way (at most the database's
        busy timeout, if it waits for another process's lock)."""
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
