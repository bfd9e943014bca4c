"""What the benchmarks share: running ringdrop as a user's install runs it.

A user's `pip install .` compiles every module to bytecode; a checkout on PYTHONPATH has none,
and with PYTHONDONTWRITEBYTECODE set (as on some machines) it never gets any, so each start
would compile the sources again: a tenth of a second that no user pays. `user_env` is the
caller's environment without ringdrop's settings and without that variable, and
`compile_bytecode` writes the bytecode a checkout's modules would have once installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["compile_bytecode", "user_env"]


def user_env(**extra: str) -> dict[str, str]:
    """This process's environment as a user's shell would have it, plus `extra`."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("RINGDROP_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    env.update(PYTHONUNBUFFERED="1", COLUMNS="120")
    env.update(extra)
    return env


def compile_bytecode(checkout: Path) -> None:
    """Writes the bytecode of `checkout`'s ringdrop package, as pip does on install."""
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(checkout / "ringdrop")],
        env=user_env(),
        check=True,
        stdout=subprocess.DEVNULL,
    )
