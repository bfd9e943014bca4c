"""The error tree: what a handler of `RingdropError` catches, and where a peer's answers land."""

from __future__ import annotations

import io
import re

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
