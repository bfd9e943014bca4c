"""The layers the README's "How it works" names, each importing only from the ones above it,
and the CLI and the TUI reaching the layers beneath through `ringdrop.node`'s public API alone."""

from __future__ import annotations

import ast
import dataclasses
import inspect
from pathlib import Path

import pytest

import ringdrop
from ringdrop.node import Node

PACKAGE = Path(ringdrop.__file__).parent

# The README's order; modules of one rank may import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "_lazy"),
    ("_native", "bao"),
    ("identity", "ticket", "shortcode"),
    ("store",),
    ("access",),
    ("protocol", "rendezvous"),
    ("transport",),
    ("discovery",),
    ("node",),
    ("display",),
    ("cli", "tui"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}

# What the CLI and the TUI may import besides themselves: the node and what every layer shares.
FRONT_ENDS = ("cli", "tui")
FRONT_END_MAY_IMPORT = {"errors", "identity", "ticket", "node", "display", "cli", "tui"}


def layer_of(module: str) -> str | None:
    """`ringdrop.store.blobs` → `store`; None for anything outside the package's layers."""
    parts = module.split(".")
    if parts[0] != "ringdrop" or len(parts) < 2:
        return None
    return parts[1]


def imports(path: Path) -> list[tuple[int, str]]:
    """Every ringdrop module `path` imports (at any depth: in functions, under TYPE_CHECKING)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return [(line, name) for line, name in found if layer_of(name) is not None]


def modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        top = path.relative_to(PACKAGE).parts[0].removesuffix(".py")
        if top in RANK:
            found.append((top, path))
    return found


def test_every_module_belongs_to_a_layer() -> None:
    tops = {p.relative_to(PACKAGE).parts[0].removesuffix(".py") for p in PACKAGE.rglob("*.py")}
    assert tops - set(RANK) == {"__init__"}  # the package's own, which re-exports the errors


@pytest.mark.parametrize(("layer", "path"), modules(), ids=lambda v: str(v).split("ringdrop/")[-1])
def test_no_import_runs_upward(layer: str, path: Path) -> None:
    upward = [
        f"line {line}: {name}"
        for line, name in imports(path)
        if RANK[layer_of(name) or layer] > RANK[layer]
    ]
    assert not upward, f"{layer} may import only from the layers above it"


@pytest.mark.parametrize(
    ("layer", "path"),
    [(layer, path) for layer, path in modules() if layer in FRONT_ENDS],
    ids=lambda v: str(v).split("ringdrop/")[-1],
)
def test_the_cli_and_the_tui_reach_the_layers_beneath_only_through_the_node(
    layer: str, path: Path
) -> None:
    beneath = [
        f"line {line}: {name}"
        for line, name in imports(path)
        if layer_of(name) not in FRONT_END_MAY_IMPORT
    ]
    assert not beneath, "use what ringdrop.node offers"


def foreign_private_attributes(path: Path) -> list[tuple[int, str]]:
    """Every `x._name` in `path` where `x` is not the code's own object (`self`, `cls`,
    `super()`) nor a module from outside ringdrop that it imports (`argparse._SubParsersAction`):
    the private attributes of another module's objects."""
    tree = ast.parse(path.read_text(), str(path))
    foreign_modules = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
        if layer_of(alias.name) is None
    }
    own = {"self", "cls"} | foreign_modules
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute):
            continue
        name = node.attr
        if not name.startswith("_") or (name.startswith("__") and name.endswith("__")):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id in own:
            continue
        if isinstance(value, ast.Call) and ast.unparse(value.func) == "super":
            continue
        found.append((node.lineno, ast.unparse(node)))
    return found


@pytest.mark.parametrize(
    ("layer", "path"),
    [(layer, path) for layer, path in modules() if layer in FRONT_ENDS],
    ids=lambda v: str(v).split("ringdrop/")[-1],
)
def test_the_cli_and_the_tui_touch_no_private_attribute_of_the_node_or_another_object(
    layer: str, path: Path
) -> None:
    private = [f"line {line}: {text}" for line, text in foreign_private_attributes(path)]
    assert not private, "add a public Node method named for what the front end needs"


def _frozen_dataclass(value: object) -> bool:
    params = getattr(type(value), "__dataclass_params__", None)
    return dataclasses.is_dataclass(value) and params is not None and bool(params.frozen)


def test_the_node_hands_the_front_ends_no_layer_beneath(tmp_path: Path) -> None:
    # The import rule alone would let `node._store.…` through: a public attribute holding the
    # store or the access layer is that layer's whole API. Values (settings, ids) are fine.
    with Node(tmp_path / "data", relays=(), stun=(), discovery=("disabled",)) as node:
        public = {
            name: getattr(node, name)
            for name in dir(node)
            if not name.startswith("_") and not inspect.ismethod(getattr(node, name))
        }
    beneath = {
        name: f"{type(value).__module__}.{type(value).__name__}"
        for name, value in public.items()
        if layer_of(type(value).__module__) not in FRONT_END_MAY_IMPORT | {None}
        and not _frozen_dataclass(value)
    }
    assert "peer_id" in public, "found no public attribute at all"
    assert not beneath, "make it private to the node package; add Node methods for the uses"
