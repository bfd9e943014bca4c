"""The error tree: what a handler of `RingdropError` catches, and where a peer's answers land."""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import pytest

import ringdrop.errors
from ringdrop.cli.exits import report
from ringdrop.errors import (
    ExitCode,
    LocalProtocolError,
    NotFoundError,
    ProtocolError,
    RingdropError,
    StoreError,
    TransferError,
)
from ringdrop.protocol import ResponseHeader


def _handled(bug: Exception) -> str:
    """What a handler of ringdrop's errors does with `bug`: `handled`, or it passes."""
    try:
        raise bug
    except RingdropError:
        return "handled"
    except Exception:
        return "passed"


def test_a_bug_is_no_ringdrop_error_so_no_handler_of_those_swallows_it() -> None:
    with pytest.raises(LocalProtocolError) as raised:
        ResponseHeader("maybe")  # type: ignore[arg-type]  # this side's bug
    assert _handled(raised.value) == "passed"


def test_the_cli_reports_a_local_protocol_error_as_a_bug() -> None:
    out = io.StringIO()
    assert report(LocalProtocolError("Cannot send CATALOG in state DONE."), out) == 1
    assert "this is a bug in ringdrop" in out.getvalue()


def test_a_peer_that_has_not_the_content_is_not_a_store_error_here() -> None:
    with pytest.raises(NotFoundError) as raised:
        ResponseHeader("not_found", "it was removed").raise_for_status()
    assert not isinstance(raised.value, StoreError)
    assert raised.value.exit_code == ExitCode.NOT_FOUND


def test_a_peer_that_breaks_the_protocol_fails_the_transfer() -> None:
    assert issubclass(ProtocolError, TransferError)
    assert ProtocolError.exit_code == ExitCode.TRANSFER


def test_the_tree_in_the_docstring_nests_each_class_under_its_parent() -> None:
    doc = ringdrop.errors.__doc__ or ""
    parents: list[str] = []
    checked = 0
    for line in doc.splitlines():
        found = re.match(r"^    [│├└─ ]*([A-Z]\w*Error)\b", line)
        if found is None:
            continue
        depth = (found.start(1) - 4) // 4
        name = found.group(1)
        parent = getattr(ringdrop.errors, name).__mro__[1].__name__
        # The roots (RingdropError, and LocalProtocolError drawn apart) derive from Exception.
        expected = parents[depth - 1] if depth else "Exception"
        assert parent == expected, line
        del parents[depth:]
        parents.append(name)
        checked += 1
    assert checked >= 30


# An option (`--relay`) or a command (`ringdrop serve`) in a string the layers beneath the CLI
# may show: an error's message, a note, a default that ends up in one.
_CLI_WORDS = re.compile(r"--[a-z]|`ringdrop ")


def cli_words_beneath_the_cli(package: Path) -> list[str]:
    """`file:line: text` for every string literal outside cli/ and tui/ that names an option or
    a command; docstrings and comments, which no user reads, are left out, and so is
    `errors.MEANINGS`, the exit-code table written for `ringdrop --help`."""
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] in ("cli", "tui"):
            continue
        tree = ast.parse(path.read_text(), str(path))
        skipped = {
            id(node.value)
            for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.AnnAssign | ast.Assign) and "MEANINGS" in ast.dump(node):
                skipped |= {id(inner) for inner in ast.walk(node)}
        found += [
            f"{path.relative_to(package)}:{node.lineno}: {node.value!r}"
            for node in ast.walk(tree)
            if isinstance(node, ast.Constant)
            and isinstance(node.value, str)
            and id(node) not in skipped
            and _CLI_WORDS.search(node.value)
        ]
    return found


def test_no_message_beneath_the_cli_names_an_option_or_a_command() -> None:
    assert cli_words_beneath_the_cli(Path(ringdrop.__file__).parent) == []


def test_the_scan_finds_an_option_in_a_message(tmp_path: Path) -> None:
    (tmp_path / "store").mkdir()
    (tmp_path / "store" / "x.py").write_text(
        '"""Run `ringdrop x` --now."""\n'
        'raise StoreError(f"{path} moved (shared with --reference)")\n'
        'hint = "is `ringdrop serve` running?"\n'
    )
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "y.py").write_text('HINT = "use --force"\n')
    assert sorted(line.split(": ")[0] for line in cli_words_beneath_the_cli(tmp_path)) == [
        "store/x.py:2",
        "store/x.py:3",
    ]
