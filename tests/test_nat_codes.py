"""Short codes in the NAT lab: sender and receiver each behind a NAT, the iroh-relay and STUN on
the lab's "internet" (tests/test_nat.py's world). The two meet on the relay by the code alone,
then the transfer finds its path as any other.

Root only (CI runs as root): skipped otherwise, except under CI=true, where test_nat.py fails.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from tests.files import pseudo_random
from tests.netlab import NatKind
from tests.test_nat import _LINE_TIMEOUT, _REASON, World, _Lines, world

pytestmark = pytest.mark.skipif(_REASON is not None, reason=_REASON or "")


class _Send:
    """`ringdrop send PATH --code …` in the left host, its output read as it comes."""

    def __init__(self, w: World, path: Path, *options: str) -> None:
        self.process = w.lab.popen(
            w.lab.left.host,
            w.ringdrop(w.lab.left, "send", str(path), "--code", *options),
            env=w.env(w.lab.left),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines = _Lines(self.process.stdout)
        found = re.search(r"Code: (\S+)", self.lines.wait_for("Code: ", _LINE_TIMEOUT))
        assert found is not None
        self.code = found.group(1)

    def exit_code(self) -> int:
        return self.process.wait(timeout=300)


def receive(w: World, code: str, *options: str) -> subprocess.CompletedProcess[str]:
    return w.run(w.lab.right, "receive", code, *options)


@pytest.mark.parametrize("right", ["port-preserving", "symmetric"])
def test_a_file_goes_by_code_between_two_hosts_behind_nats(tmp_path: Path, right: NatKind) -> None:
    with world("port-preserving", right, tmp_path) as w:
        data = pseudo_random(4 * 1024 * 1024, seed=26)
        (tmp_path / "film.bin").write_bytes(data)
        send = _Send(w, tmp_path / "film.bin")

        done = receive(w, send.code, "--dest", f"{tmp_path}/out/", "--json")

        assert done.returncode == 0, done.stderr
        assert (tmp_path / "out" / "film.bin").read_bytes() == data
        assert json.loads(done.stdout)["path"] in ("direct", "relay")
        assert send.exit_code() == 0, send.lines.seen


def test_a_folder_goes_by_code_between_two_hosts_behind_nats(tmp_path: Path) -> None:
    with world("port-preserving", "port-preserving", tmp_path) as w:
        folder = tmp_path / "album"
        (folder / "deep").mkdir(parents=True)
        files = {"a.txt": b"alpha", "deep/b.bin": pseudo_random(300_000, seed=3)}
        for name, content in files.items():
            (folder / name).write_bytes(content)
        send = _Send(w, folder)

        done = receive(w, send.code, "--dest", f"{tmp_path}/out/")

        assert done.returncode == 0, done.stderr
        for name, content in files.items():
            assert (tmp_path / "out" / "album" / name).read_bytes() == content
        assert send.exit_code() == 0, send.lines.seen


def test_a_wrong_code_behind_nats_ends_it_for_both_and_the_right_one_then_fails(
    tmp_path: Path,
) -> None:
    with world("port-preserving", "port-preserving", tmp_path) as w:
        (tmp_path / "secret.txt").write_text("secret")
        send = _Send(w, tmp_path / "secret.txt", "31-revenge-guitarist")

        wrong = receive(w, "31-revenge-passenger")

        assert wrong.returncode == 7
        assert "someone may have guessed" in wrong.stderr
        assert send.exit_code() == 7
        send.lines.wait_for("someone may have guessed", _LINE_TIMEOUT)
        right = receive(w, send.code, "--timeout", "3")
        assert right.returncode == 7
        assert "Nobody answered" in right.stderr
