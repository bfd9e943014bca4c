"""The name validator: every accepted name stays below its destination; tricks are refused."""

from __future__ import annotations

import posixpath

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ringdrop.errors import UnsafePathError
from ringdrop.store import validate_name

from .helpers import SAFE_PART


@given(st.lists(SAFE_PART, min_size=1, max_size=6))
def test_names_of_plain_parts_are_accepted(parts: list[str]) -> None:
    name = "/".join(parts)
    assert validate_name(name) == name


@given(st.text(max_size=60))
def test_an_accepted_name_never_leaves_the_destination(name: str) -> None:
    try:
        validate_name(name)
    except UnsafePathError:
        return
    joined = posixpath.normpath(posixpath.join("/dest", name))
    assert joined.startswith("/dest/")
    assert "\x00" not in name
    assert "\\" not in name
    assert posixpath.join("/dest", name) == joined


@given(
    st.lists(SAFE_PART, max_size=3),
    st.sampled_from(["..", ".", "", "a\x00b", "a\\b", "\x1b[31m", "x\u202ey", "a\nb", "\x7f"]),
    st.lists(SAFE_PART, max_size=3),
)
def test_a_name_with_any_bad_part_is_refused(before: list[str], bad: str, after: list[str]) -> None:
    with pytest.raises(UnsafePathError):
        validate_name("/".join([*before, bad, *after]))


@pytest.mark.parametrize(
    "name",
    [
        "",
        "/etc/passwd",
        "../up",
        "a/../../up",
        "a/./b",
        "a//b",
        "a/",
        "C:evil",
        "c:/windows",
        "..\\..\\windows",
        "dir\\file",
        "nul\x00byte",
        "bell\x07",
        "csi\x9b",
        "x" * 256,
        "a/" * 2049 + "a",
        "bad\udcff",
    ],
)
def test_hostile_names_are_refused(name: str) -> None:
    with pytest.raises(UnsafePathError):
        validate_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "a/b/c.txt",
        "..hidden",
        "...",
        "a..b",
        "日本語/ファイル.txt",
        "emoji 👩‍👩‍👧",
        "x" * 255,
        "10:30",
    ],
)
def test_ordinary_names_are_accepted(name: str) -> None:
    assert validate_name(name) == name
