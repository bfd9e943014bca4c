"""`ringdrop send PATH --code` and `ringdrop receive CODE` as a person runs them, through a real
iroh-relay on loopback: the sender a real process, the receiver the command in this process."""

from __future__ import annotations

import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli_util import RINGDROP, Process, cli_env, ringdrop
from tests.files import pseudo_random
from tests.relay_server import IrohRelay, require_iroh_relay

CODE_LINE = r"^Code: (\d+-[a-z]+-[a-z]+)$"


@pytest.fixture
def relay(tmp_path: Path) -> Iterator[IrohRelay]:
    with IrohRelay(require_iroh_relay(), tmp_path / "iroh-relay") as server:
        yield server


def env(relay: IrohRelay) -> dict[str, str]:
    return cli_env(RINGDROP_RELAY=relay.url)


def send(relay: IrohRelay, tmp_path: Path, path: Path, *options: str) -> tuple[Process, str]:
    """`ringdrop send PATH --code …` in its own process; returns it and the code it shows."""
    popen = subprocess.Popen(
        [*RINGDROP, "--data-dir", str(tmp_path / "sender"), "send", str(path), "--code", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(relay),
        cwd=tmp_path,
    )
    process = Process(popen)
    found = re.match(CODE_LINE, process.wait_for(CODE_LINE, timeout=60).strip())
    assert found is not None
    return process, found.group(1)


def receive(
    relay: IrohRelay, tmp_path: Path, code: str, *options: str
) -> subprocess.CompletedProcess[str]:
    return ringdrop(
        ["--data-dir", tmp_path / "receiver", "receive", code, *options],
        cwd=tmp_path,
        env=env(relay),
        timeout=120,
    )


def finished(process: Process) -> int:
    try:
        return process.popen.wait(60)
    finally:
        process.stop(signal.SIGKILL)


def test_a_file_goes_by_code_and_the_sender_exits_once_it_is_received(
    relay: IrohRelay, tmp_path: Path
) -> None:
    data = pseudo_random(1_000_000, seed=11)
    (tmp_path / "movie.bin").write_bytes(data)
    sender, code = send(relay, tmp_path, tmp_path / "movie.bin")
    assert f"ringdrop receive {code}" in sender.wait_for("On the other side")

    done = receive(relay, tmp_path, code, "--dest", str(tmp_path / "got.bin"))

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "got.bin").read_bytes() == data
    assert finished(sender) == 0
    who = ringdrop(["--data-dir", tmp_path / "receiver", "id"], cwd=tmp_path).stdout.strip()
    assert any(f"Fetched by {who}. " in line for line in sender.lines)
    assert any("the code no longer works" in line for line in sender.lines)


def test_a_folder_goes_by_a_code_the_sender_chose(relay: IrohRelay, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "deep").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "deep" / "b.bin").write_bytes(pseudo_random(70_000, seed=5))
    sender, code = send(relay, tmp_path, folder, "615-revenge-guitarist")
    assert code == "615-revenge-guitarist"

    done = receive(relay, tmp_path, "615 Revenge Guitarist", "--dest", f"{tmp_path}/out/")

    assert done.returncode == 0, done.stderr
    assert (tmp_path / "out" / "docs" / "a.txt").read_text() == "alpha"
    assert (tmp_path / "out" / "docs" / "deep" / "b.bin").read_bytes() == (
        folder / "deep" / "b.bin"
    ).read_bytes()
    assert finished(sender) == 0


def test_a_wrong_code_ends_it_for_both_and_the_right_one_then_fails(
    relay: IrohRelay, tmp_path: Path
) -> None:
    (tmp_path / "secret.txt").write_text("secret")
    sender, code = send(relay, tmp_path, tmp_path / "secret.txt", "99-revenge-guitarist")

    wrong = receive(relay, tmp_path, "99-revenge-passenger")

    assert wrong.returncode == 7
    assert "someone may have guessed" in wrong.stderr
    assert "ringdrop send PATH --code" in wrong.stderr  # the hint: make a new code
    assert finished(sender) == 7
    assert any("someone may have guessed" in line for line in sender.lines)
    right = receive(relay, tmp_path, code, "--timeout", "3")
    assert right.returncode == 7
    assert "Nobody answered on the nameplate 99" in right.stderr
    assert not (tmp_path / "secret.txt.1").exists()


def test_a_mistyped_code_is_refused_before_it_costs_the_guess(
    relay: IrohRelay, tmp_path: Path
) -> None:
    (tmp_path / "f.txt").write_text("still offered")
    sender, code = send(relay, tmp_path, tmp_path / "f.txt", "5-revenge-guitarist")

    typo = receive(relay, tmp_path, "5-guitarist-revenge")  # swapped words

    assert typo.returncode == 3
    assert "out of order" in typo.stderr
    done = receive(relay, tmp_path, code, "--dest", str(tmp_path / "got.txt"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "got.txt").read_text() == "still offered"
    assert finished(sender) == 0


def test_an_expired_code_ends_the_sender_and_finds_nobody(relay: IrohRelay, tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("too late")
    sender, code = send(relay, tmp_path, tmp_path / "f.txt", "--expires", "2s")

    assert finished(sender) == 7
    assert any("expired unused" in line for line in sender.lines)
    late = receive(relay, tmp_path, code, "--timeout", "3")
    assert late.returncode == 7
    assert "Nobody answered" in late.stderr


def test_a_second_send_on_the_same_nameplate_is_told_to_pick_another(
    relay: IrohRelay, tmp_path: Path
) -> None:
    (tmp_path / "one.txt").write_text("one")
    (tmp_path / "two.txt").write_text("two")
    first, code = send(relay, tmp_path, tmp_path / "one.txt", "8-revenge-guitarist")
    command = [*RINGDROP, "--data-dir", str(tmp_path / "other"), "send", str(tmp_path / "two.txt")]
    command += ["--code", "8-zulu-yucatan"]
    popen = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(relay),
        cwd=tmp_path,
    )
    second = Process(popen)
    assert finished(second) == 7
    assert any("pick a code with another number" in line for line in second.lines)

    done = receive(relay, tmp_path, code, "--dest", str(tmp_path / "got.txt"))
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "got.txt").read_text() == "one"
    assert finished(first) == 0


def test_a_text_goes_by_code_and_is_shown(relay: IrohRelay, tmp_path: Path) -> None:
    command = ["--data-dir", str(tmp_path / "sender"), "send", "--text", "door: 4711", "--code"]
    popen = subprocess.Popen(
        [*RINGDROP, *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(relay),
        cwd=tmp_path,
    )
    sender = Process(popen)
    found = re.match(CODE_LINE, sender.wait_for(CODE_LINE, timeout=60).strip())
    assert found is not None

    done = receive(relay, tmp_path, found.group(1))

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "door: 4711"
    assert finished(sender) == 0
    assert list(tmp_path.glob("ringdrop-message*")) == []  # shown, not written


@pytest.mark.parametrize(
    ("options", "says"),
    [
        (["--code", "--ring", "family"], "one receiver may fetch it, through a ring of its own"),
        (["--code", "--times", "2"], "to send to several, leave out --code"),
        (["--expires", "5m"], "add --code"),
    ],
)
def test_send_refuses_options_a_code_cannot_keep(
    tmp_path: Path, options: list[str], says: str
) -> None:
    (tmp_path / "f.txt").write_text("f")
    done = ringdrop(
        ["--data-dir", tmp_path / "sender", "send", tmp_path / "f.txt", *options], cwd=tmp_path
    )
    assert done.returncode == 2
    assert says in done.stderr
    assert not (tmp_path / "sender").exists()  # refused before anything was made


def test_a_path_after_code_is_not_taken_for_a_mistyped_code(tmp_path: Path) -> None:
    (tmp_path / "f.txt").write_text("f")
    done = ringdrop(
        ["--data-dir", tmp_path / "sender", "send", "--code", tmp_path / "f.txt"], cwd=tmp_path
    )
    assert done.returncode == 2
    assert "put the PATH before it" in done.stderr
