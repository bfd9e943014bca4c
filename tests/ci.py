"""Skipping a test that lacks a tool or a permission, except under CI (`CI=true`), which must run
every test: there the test fails instead, naming what is missing."""

from __future__ import annotations

import os
from typing import NoReturn

import pytest


def under_ci() -> bool:
    return os.environ.get("CI") == "true"


def skip_unless_ci(reason: str) -> NoReturn:
    """Skips the test for `reason`; under CI, fails it."""
    if under_ci():
        pytest.fail(f"CI must run this test, but {reason}", pytrace=False)
    pytest.skip(reason)
