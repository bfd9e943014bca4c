"""What a command loads before it starts: `--version` and `--help` nothing beneath the CLI, and
`get` none of the modules it does not use (QR codes, package metadata, folder patterns, the
relay's WebSocket client, cryptography, the TUI, the serving side, publishing, the store's
upkeep). Measured in a fresh interpreter; the times
themselves are for the benchmarks (README), the module lists are what can be held here."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ringdrop.cli import base
from ringdrop.node import CODE_EXPIRES, IGNORE_FILE, RECEIVE_TIMEOUT, config

# Slow to load, and needed only by the commands or the moments that use them.
NOT_FOR_GET = (
    "segno",
    "importlib.metadata",
    "pathspec",
    "websockets",
    "cryptography",
    "textual",
    "urllib.request",
    "difflib",
    "statistics",
    "ringdrop.transport._server",
    "ringdrop.node.serving",
    "ringdrop.node.server",
    "ringdrop.node.news",
    "ringdrop.discovery.publish",
    "ringdrop.store.check",
    "ringdrop.store.gc",
)


def loaded_after(code: str, cwd: Path) -> set[str]:
    """The modules a fresh interpreter holds after running `code`."""
    script = f"import sys\n{code}\nprint('\\n'.join(sys.modules))"
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=cwd, check=True
    )
    return set(done.stdout.split())


@pytest.mark.parametrize("argv", [["--version"], ["--help"], ["get", "--help"]])
def test_version_and_help_load_nothing_beneath_the_cli(argv: list[str], tmp_path: Path) -> None:
    loaded = loaded_after(
        f"from ringdrop.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass",
        tmp_path,
    )
    beneath = sorted(
        m
        for m in loaded
        if m.startswith(("ringdrop.store", "ringdrop.access", "ringdrop.transport", "ringdrop.bao"))
        or m in ("ringdrop.node.node", "ringdrop._native", "asyncio", "nacl", "cryptography")
    )
    assert beneath == []


def test_what_get_loads_leaves_out_what_it_does_not_use(tmp_path: Path) -> None:
    loaded = loaded_after(
        "import ringdrop.cli.app\nimport ringdrop.node.node\nimport ringdrop.cli.transfer",
        tmp_path,
    )
    assert "ringdrop.node.node" in loaded
    assert sorted(set(NOT_FOR_GET) & loaded) == []


def test_the_parser_names_the_settings_the_node_reads() -> None:
    spelled_out = (base.DISABLED, base.RELAY_ENV, base.STUN_ENV, base.IGNORE_FILE)
    assert spelled_out == (config.DISABLED, config.RELAY_ENV, config.STUN_ENV, IGNORE_FILE)
    assert (base.CODE_EXPIRES, base.RECEIVE_TIMEOUT) == (CODE_EXPIRES, RECEIVE_TIMEOUT)
    assert (base.RELAY_POLICY_ENV, base.RELAY_POLICIES, base.DISCOVERY_ENV) == (
        config.RELAY_POLICY_ENV,
        config.RELAY_POLICIES,
        config.DISCOVERY_ENV,
    )
