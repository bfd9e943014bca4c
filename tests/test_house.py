"""House rules the code is held to: no function in `ringdrop/` longer than one can read at once
unless its docstring says why."""

from __future__ import annotations

import ast
from pathlib import Path

import ringdrop

PACKAGE = Path(ringdrop.__file__).parent

MAX_LINES = 60
# A function may be longer only where its docstring gives the reason after these words.
REASON = "Long because"


def long_functions(source: str, filename: str) -> list[tuple[int, str, int]]:
    """(line, name, length) of each function in `source` over MAX_LINES lines with no reason given;
    length counts from `def` to the last line, decorators left out."""
    found = []
    for node in ast.walk(ast.parse(source, filename)):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        assert node.end_lineno is not None
        length = node.end_lineno - node.lineno + 1
        if length > MAX_LINES and REASON not in (ast.get_docstring(node) or ""):
            found.append((node.lineno, node.name, length))
    return found


def test_the_counter_finds_a_long_function_and_accepts_a_reason() -> None:
    body = "".join(f"    x = {i}\n" for i in range(MAX_LINES))
    assert long_functions(f"def f():\n{body}", "f.py") == [(1, "f", MAX_LINES + 1)]
    short = "".join(f"    x = {i}\n" for i in range(MAX_LINES - 1))
    assert long_functions(f"def f():\n{short}", "f.py") == []
    reasoned = f'def f():\n    """{REASON} it is one table."""\n{body}'
    assert long_functions(reasoned, "f.py") == []
    nested = f"class C:\n    async def g(self):\n{body.replace('    ', '        ')}"
    assert long_functions(nested, "f.py") == [(2, "g", MAX_LINES + 1)]


def test_no_function_is_over_the_limit_without_a_reason() -> None:
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{line} {name} ({length} lines)"
        for path in sorted(PACKAGE.rglob("*.py"))
        for line, name, length in long_functions(path.read_text(), str(path))
    ]
    assert found == [], f"over {MAX_LINES} lines with no '{REASON}' in the docstring: {found}"
