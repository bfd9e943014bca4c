"""Waiting for an event with a deadline, in the one form that cannot lose a cancellation."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["woken"]


async def woken(wake: asyncio.Event, timeout: float) -> None:
    """Waits until `wake` is set, `timeout` seconds at most. Not `asyncio.wait_for`: on Python
    3.11 it returns, instead of raising, when the task is cancelled just as `wake` is set, and
    a loop that waits with it runs on after its owner cancelled it."""
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(max(timeout, 0.0)):
            await wake.wait()
