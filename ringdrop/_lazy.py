"""Names a package imports only when they are first used (PEP 562): its `__getattr__`."""

import importlib
import sys
from collections.abc import Callable, Mapping


def lazy_names(package: str, where: Mapping[str, str]) -> Callable[[str], object]:
    """The module `__getattr__` of `package`: each name in `where` is imported from the module
    it maps to on first use, then kept in the package, so it is looked up once."""

    def getattr_(name: str) -> object:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    return getattr_
