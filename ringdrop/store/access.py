"""Moved to `ringdrop.access`. Only `ringdrop/cli/exits.py` still imports from here; delete this
module when the errors rework moves `InvalidNameError` into `ringdrop.errors`."""

from ringdrop.access.records import InvalidNameError

__all__ = ["InvalidNameError"]
