"""What the fuzz targets share: how many examples each runs, and the memory bound they hold.

Each target runs `RINGDROP_FUZZ_EXAMPLES` examples (default 100: a few seconds in CI). For a
longer run by hand, e.g. a million examples of every target:

    RINGDROP_FUZZ_EXAMPLES=1000000 python -m pytest tests/fuzz -q

No target asserts a time: the machine that runs CI is loaded and shared. Work is bounded by
asserting memory instead (tracemalloc's peak while one hostile input is parsed).
"""

from __future__ import annotations

import os
import tracemalloc
from collections.abc import Callable
from typing import TypeVar

from hypothesis import HealthCheck, settings

T = TypeVar("T")

EXAMPLES = int(os.environ.get("RINGDROP_FUZZ_EXAMPLES", "100"))

fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
"""The settings of every fuzz target."""


def peak_memory(parse: Callable[[], T]) -> tuple[T | BaseException, int]:
    """What `parse()` returned (or raised), and the most memory it held at once, in bytes."""
    tracemalloc.start()
    try:
        try:
            result: T | BaseException = parse()
        except Exception as error:  # returned, for the caller to check its class
            result = error
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return result, peak


def within(peak: int, size: int, factor: int = 4, slack: int = 256 * 1024) -> bool:
    """Whether `peak` bytes are a bounded multiple of an input of `size` bytes."""
    return peak <= factor * size + slack
