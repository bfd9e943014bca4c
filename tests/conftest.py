"""Shared fixtures and helpers for the test suite."""

from __future__ import annotations

import blake3


def pseudo_random(size: int, seed: int = 0) -> bytes:
    """Deterministic incompressible bytes (BLAKE3 in extendable-output mode)."""
    return blake3.blake3(b"ringdrop test data %d" % seed).digest(length=size)
