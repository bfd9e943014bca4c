"""Exit codes, one per error class, and the one or two lines a person reads for each error."""

from __future__ import annotations

import errno
import sys
from enum import IntEnum
from typing import TextIO

from ringdrop.errors import (
    AccessDeniedError,
    DiskFullError,
    IntegrityError,
    NotFoundError,
    ProtocolError,
    RingdropError,
    StoreError,
    TicketError,
    TransferError,
    UnsafePathError,
)
from ringdrop.node.config import SettingsError
from ringdrop.store.access import InvalidNameError


class ExitCode(IntEnum):
    OK = 0
    ERROR = 1
    USAGE = 2
    BAD_TICKET = 3
    ACCESS_DENIED = 4
    NOT_FOUND = 5
    INTEGRITY = 6
    TRANSFER = 7
    DISK_FULL = 8
    UNSAFE_PATH = 9
    STORE = 10
    INTERRUPTED = 130


# What each exit code means, for `ringdrop --help` and the package docstring.
MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.ERROR: "any other error (a file that cannot be read, a bug)",
    ExitCode.USAGE: "the command line is wrong (unknown option, bad ring name, --expires, relay)",
    ExitCode.BAD_TICKET: "a ticket or peer id cannot be read (garbled, cut short, too new)",
    ExitCode.ACCESS_DENIED: "the sharer does not let this peer read the content or catalog",
    ExitCode.NOT_FOUND: "no such ring, peer, share, file, or content on the sharer's side",
    ExitCode.INTEGRITY: "data does not match its BLAKE3 hash (corrupt sender or store)",
    ExitCode.TRANSFER: "the transfer failed: network, sharer unreachable or gone, protocol",
    ExitCode.DISK_FULL: "not enough free disk space",
    ExitCode.UNSAFE_PATH: "a name would escape the destination folder",
    ExitCode.STORE: "the data directory cannot do it (already served, file in the way, ...)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C); a download keeps what it verified",
}

# The label that starts the message, most specific class first in the method resolution order.
_CLASSES: dict[type[BaseException], tuple[ExitCode, str]] = {
    InvalidNameError: (ExitCode.USAGE, "error"),
    SettingsError: (ExitCode.USAGE, "error"),
    DiskFullError: (ExitCode.DISK_FULL, "disk full"),
    NotFoundError: (ExitCode.NOT_FOUND, "not found"),
    StoreError: (ExitCode.STORE, "error"),
    TicketError: (ExitCode.BAD_TICKET, "error"),
    AccessDeniedError: (ExitCode.ACCESS_DENIED, "access denied"),
    IntegrityError: (ExitCode.INTEGRITY, "integrity failure"),
    TransferError: (ExitCode.TRANSFER, "transfer failed"),
    ProtocolError: (ExitCode.TRANSFER, "transfer failed"),
    UnsafePathError: (ExitCode.UNSAFE_PATH, "unsafe path"),
    RingdropError: (ExitCode.ERROR, "error"),
}


def exit_code_table() -> str:
    """The exit codes as lines of text, for help output."""
    return "\n".join(f"  {int(code):>3}  {text}" for code, text in MEANINGS.items())


def classify(error: BaseException) -> tuple[ExitCode, str]:
    """The exit code and the message label for `error`."""
    if isinstance(error, OSError) and not isinstance(error, RingdropError):
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return ExitCode.DISK_FULL, "disk full"
        if isinstance(error, FileNotFoundError):
            return ExitCode.NOT_FOUND, "not found"
        return ExitCode.ERROR, "error"
    for cls in type(error).__mro__:
        if cls in _CLASSES:
            return _CLASSES[cls]
    return ExitCode.ERROR, "unexpected error"


def describe(error: BaseException) -> str:
    """The error's message; an OS error names its file, other foreign errors their type."""
    if isinstance(error, OSError) and not isinstance(error, RingdropError):
        message = error.strerror or str(error)
        return f"{message}: {error.filename}" if error.filename else message
    if isinstance(error, RingdropError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def report(error: BaseException, out: TextIO | None = None) -> ExitCode:
    """Prints `error` for a person (its notes become the following lines); returns its code."""
    code, label = classify(error)
    out = out or sys.stderr
    print(f"ringdrop: {label}: {describe(error)}", file=out)
    for note in getattr(error, "__notes__", ()):
        print(f"  {note}", file=out)
    if code == ExitCode.ERROR and not isinstance(error, OSError | RingdropError):
        print(
            "  this is a bug in ringdrop: run again with --debug and report the traceback", file=out
        )
    return code
