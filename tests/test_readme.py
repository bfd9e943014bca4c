"""The README's quickstart: its run command works from a clean copy of the repository, and CI
runs its test command."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.ci import skip_unless_ci

ROOT = Path(__file__).resolve().parent.parent


def quickstart_commands() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Quickstart", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```sh\n(.+?)\n```", section, flags=re.DOTALL)


def test_the_quickstart_has_a_run_and_a_test_command() -> None:
    run, test = quickstart_commands()
    assert "pip install ." in run
    assert "ringdrop demo" in run
    assert "pytest" in test


def test_ci_runs_the_readme_test_command() -> None:
    _, test = quickstart_commands()
    ci = (ROOT / ".ci" / "run").read_text()
    assert "pip install --quiet -e '.[test]'" in ci
    assert "python -m pytest" in test
    assert re.search(r"^python -m pytest$", ci, flags=re.MULTILINE)


@pytest.mark.slow
def test_the_run_command_works_in_a_clean_copy(tmp_path: Path) -> None:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        skip_unless_ci("it needs the git checkout to know which files are the project's")
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.split(b"\0")
    copy = tmp_path / "ringdrop"
    for name in filter(None, files):
        source = ROOT / name.decode()
        if source.is_file():
            (copy / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name.decode())
    run, _ = quickstart_commands()
    result = subprocess.run(
        ["bash", "-c", run], cwd=copy, capture_output=True, text=True, timeout=900
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "refused, as she should be" in result.stdout
    assert "received 22 files, 256.0 MiB" in result.stdout
