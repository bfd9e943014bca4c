"""What the benchmarks share: running ringdrop as a user's install runs it, and the frame of
the benchmarks that build namespaces.

A user's `pip install .` compiles every module to bytecode; a checkout on PYTHONPATH has none,
and with PYTHONDONTWRITEBYTECODE set (as on some machines) it never gets any, so each start
would compile the sources again: a tenth of a second that no user pays. `user_env` is the
caller's environment without ringdrop's settings and without that variable, and
`compile_bytecode` writes the bytecode a checkout's modules would have once installed.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from typing import NoReturn

__all__ = ["compile_bytecode", "namespace_bench_args", "summary", "user_env"]


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


def summary(values: list[float]) -> dict[str, float]:
    """Median, best and worst of `values`, to the millisecond."""
    return {
        "median": round(statistics.median(values), 3),
        "best": round(min(values), 3),
        "worst": round(max(values), 3),
    }


def namespace_bench_args(description: str, repeat: int, checkout: Path) -> argparse.Namespace:
    """`--repeat` and `--json`, parsed; then the checks and set-up of a benchmark that builds
    network namespaces: root, an exit on SIGTERM that lets them be removed, `checkout`'s
    bytecode."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--repeat", type=int, default=repeat)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    from tests.netlab import is_root  # the benchmark put the checkout on sys.path

    if not is_root():
        sys.exit("the network namespaces need root: run with sudo")
    signal.signal(signal.SIGTERM, _exit_on_signal)
    compile_bytecode(checkout)
    return args


def _exit_on_signal(number: int, frame: object) -> NoReturn:
    # SIGTERM would end the process without unwinding; as an exit, the namespaces go with it.
    sys.exit(128 + number)
