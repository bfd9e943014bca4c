"""How the `ringdrop` command ends (`python -m ringdrop.cli`, as the installed script does):
without the interpreter's teardown once its output is out and no other thread runs, losing
neither output nor anything it reported done, even when killed the moment it has said so."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from .cli_util import Node, Process, cli_env

COMMAND = [sys.executable, "-m", "ringdrop.cli"]
MIB = 1 << 20


def buffered_env() -> dict[str, str]:
    """The tests' environment with stdout block-buffered into a pipe, as a script reading a
    command's output has it: whatever is not flushed before the exit is lost."""
    env = cli_env()
    del env["PYTHONUNBUFFERED"]
    return env


def test_piped_output_is_whole_and_the_exit_code_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "node"
    shown = subprocess.run(
        [*COMMAND, "--data-dir", str(data_dir), "id", "--json"],
        capture_output=True,
        text=True,
        env=buffered_env(),
        check=False,
        timeout=60,
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["data_dir"] == str(data_dir)
    failed = subprocess.run(
        [*COMMAND, "--data-dir", str(data_dir), "get", "rdrop:notaticket", "--json"],
        capture_output=True,
        text=True,
        env=buffered_env(),
        check=False,
        timeout=60,
    )
    assert failed.returncode not in (0, 1), failed
    error = json.loads(failed.stdout)["error"]
    assert error["exit_code"] == failed.returncode
    assert failed.stderr.startswith("ringdrop: ")


def test_a_thread_still_running_at_the_end_is_waited_for(tmp_path: Path) -> None:
    marker = tmp_path / "written-by-the-thread"
    script = (
        "import sys, threading\n"
        "from ringdrop.cli.app import exit_now\n"
        "def late():\n"
        "    sys.stdin.read()  # until the test closes our stdin\n"
        f"    open({str(marker)!r}, 'w').write('done')\n"
        "threading.Thread(target=late).start()\n"
        "print('output', flush=True)\n"
        "exit_now(3)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=buffered_env(),
    )
    assert process.stdout is not None
    assert process.stdin is not None
    try:
        assert process.stdout.readline() == "output\n"
        # The thread waits for our stdin: a process that does not wait for it ends now.
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=2)
        process.stdin.close()
        assert process.wait(timeout=60) == 3
    finally:
        process.kill()
        process.wait()
    assert marker.read_text() == "done", "the process ended before its thread did"


def test_a_get_killed_the_moment_it_reports_success_keeps_what_it_reported(
    alice: Node, bob: Node, server: Process, tmp_path: Path
) -> None:
    original = tmp_path / "big.bin"
    original.write_bytes(os.urandom(24 * MIB))
    ticket = alice.share(original, "--open")
    get = Process(
        subprocess.Popen(
            [*COMMAND, "--data-dir", str(bob.data_dir), "get", ticket, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=cli_env(),
            cwd=bob.cwd,
        )
    )
    get.wait_for(r"^}$", timeout=120)  # the last line of the result
    get.stop(signal.SIGKILL)
    result = json.loads("".join(get.lines[get.lines.index("{\n") :]))
    received = Path(result["dest"])
    assert result["total"] == original.stat().st_size
    assert result["present"] == 0, "it was all fetched by this run"
    assert received.read_bytes() == original.read_bytes()
    again = bob.json("get", ticket)
    assert isinstance(again, dict)
    assert again["present"] == again["total"] == original.stat().st_size, "nothing fetched again"
    bob.run("store", "check")
    assert received.read_bytes() == original.read_bytes()
