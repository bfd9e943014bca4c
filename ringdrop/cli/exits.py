"""What a person reads for an error: a line with its message, the CLI's hint (which names
commands and options, as messages from lower layers never do), and the error's exit code."""

from __future__ import annotations

import errno
import shlex
import sys
from collections.abc import Callable
from typing import TextIO, cast

from ringdrop.errors import (
    MEANINGS,
    AlreadyServedError,
    AmbiguousError,
    DestinationError,
    DiscoveryDisabledError,
    ExistsError,
    ExitCode,
    NotFoundError,
    RelayDisabledError,
    RelayRefusedError,
    RendezvousError,
    RingdropError,
    SettingsError,
    StoreError,
    TransferError,
    UnreachableError,
)

__all__ = ["ExitCode", "classify", "error_json", "exit_code_table", "hint", "report"]

_NOT_FOUND_HINTS = {
    "ring": "Run `ringdrop ring list` to see the rings, or `ringdrop ring new {name}` to make one.",
    "peer": "Run `ringdrop peer list` to see the nicknames, or give the whole peer id.",
    "share": "Run `ringdrop blob list` to see what is shared.",
    "peer-address": "Give one of its tickets instead.",
    "source": "It was served from that file (shared with --reference, or received there).",
    "stored-file": "Run `ringdrop store check` to see what else is damaged.",
    "data-dir": (
        "Check --data-dir and $RINGDROP_DATA_DIR; `ringdrop id` (or sharing, or receiving) "
        "creates a data directory."
    ),
}

_AMBIGUOUS_HINTS = {
    "peer": "Give more characters of the peer id, or its nickname.",
    "share": "Give more of the hash.",
}

_RENDEZVOUS_HINTS = {
    "guessed": "Make a new code with `ringdrop send PATH --code`, and read it out carefully.",
    "expired": "Make a new code with `ringdrop send PATH --code` (--expires gives it longer).",
    "unanswered": (
        "Check the code with the sender, and that both sides use the same relays (--relay, "
        "RINGDROP_RELAY); --timeout waits longer."
    ),
    "taken": "Run it again for a new code, or choose another number: --code NUMBER-WORD-WORD.",
    "busy": "Ask the sender for a new code.",
}

# The options that give the settings `SettingsError.setting` names; its message names them in
# words, or by the environment variable they came from.
_SETTING_OPTIONS = {
    "relay": "--relay",
    "stun": "--stun",
    "discovery": "--discovery",
    "relay-policy": "--relay-policy",
}

_TRANSFER_HINTS = {
    "gave-up": "Run the same command again to continue from what was verified.",
}

_STORE_HINTS = {
    "damaged": "Run `ringdrop store check` to see what is damaged.",
}

_HINTS: dict[type[RingdropError], Callable[[RingdropError], str | None]] = {
    TransferError: lambda e: _TRANSFER_HINTS.get(e.kind or ""),
    StoreError: lambda e: _STORE_HINTS.get(e.kind or ""),
    NotFoundError: lambda e: _not_found_hint(cast(NotFoundError, e)),
    ExistsError: lambda e: (
        "Use --force to overwrite it, or --rename to keep both (writes a numbered name)."
    ),
    AlreadyServedError: lambda e: "Stop it first, or use another --data-dir.",
    DestinationError: lambda e: (
        "Choose a folder you can write to with --dest; what was received is kept, so the "
        "same command with another --dest only writes it out."
    ),
    AmbiguousError: lambda e: _AMBIGUOUS_HINTS.get(getattr(e, "kind", None) or ""),
    RelayRefusedError: lambda e: (
        "On a private network or in a lab, accept it with --relay-policy any (or "
        "RINGDROP_RELAY_POLICY=any), or name it with --relay."
    ),
    DiscoveryDisabledError: lambda e: (
        "Turn discovery on (--discovery URL or RINGDROP_DISCOVERY, not 'disabled'), or use a "
        "ticket (or share) that names the sharer's relay or addresses: no --no-relay."
    ),
    RendezvousError: lambda e: _RENDEZVOUS_HINTS.get(cast(RendezvousError, e).kind),
    RelayDisabledError: lambda e: (
        "Choose a relay with --relay URL or RINGDROP_RELAY, or use a "
        "ticket (or share) with addresses: no --no-addresses."
    ),
}


def _not_found_hint(error: NotFoundError) -> str | None:
    found = _NOT_FOUND_HINTS.get(error.kind or "")
    return found and found.format(name=shlex.quote(error.name or "NAME"))


def exit_code_table() -> str:
    """The exit codes as lines of text, for help output."""
    return "\n".join(f"  {int(code):>3}  {text}" for code, text in MEANINGS.items())


def classify(error: BaseException) -> tuple[ExitCode, str]:
    """The exit code and the message label for `error`."""
    if isinstance(error, RingdropError):
        return error.exit_code, error.label
    if isinstance(error, OSError):
        if error.errno in (errno.ENOSPC, errno.EDQUOT):
            return ExitCode.DISK_FULL, "disk full"
        if isinstance(error, FileNotFoundError):
            return ExitCode.NOT_FOUND, "not found"
        return ExitCode.ERROR, "error"
    return ExitCode.ERROR, "unexpected error"


def hint(error: BaseException) -> str | None:
    """What the CLI suggests doing about `error`, if it has a suggestion."""
    for cls in type(error).__mro__:
        found = _HINTS.get(cls)
        if found is not None:
            assert isinstance(error, RingdropError)
            return found(error)
    return None


def error_json(error: BaseException) -> dict[str, object]:
    """`error` for programs (`--json`): its class, exit code, message, hint and context."""
    code, _ = classify(error)
    fields: dict[str, object] = {
        "type": type(error).__name__,
        "exit_code": int(code),
        "message": describe(error),
        "hint": hint(error),
    }
    notes = getattr(error, "__notes__", None)
    if notes:
        fields["notes"] = list(notes)
    if isinstance(error, RingdropError):
        context = {"peer": error.peer, "address": error.address, "path": error.path}
        context["root"] = error.root.hex() if error.root is not None else None
        fields |= {key: value for key, value in context.items() if value is not None}
    return {"error": fields}


def describe(error: BaseException) -> str:
    """The error's message; an OS error names its file, other foreign errors their type. Where
    the message names a setting or a node in words, the CLI's own names take their place: the
    option that gave the setting, the command that serves."""
    if isinstance(error, OSError) and not isinstance(error, RingdropError):
        message = error.strerror or str(error)
        return f"{message}: {error.filename}" if error.filename else message
    if isinstance(error, SettingsError) and error.variable is None:
        option = _SETTING_OPTIONS.get(error.setting or "")
        if option is not None:
            return f"{option}: {error.problem}"
    if isinstance(error, UnreachableError) and error.kind == "not-serving":
        return (
            "the sharer did not answer: is `ringdrop serve` (or the TUI) running on the sharer's "
            "machine?"
        )
    if isinstance(error, RingdropError):
        return str(error)
    return f"{type(error).__name__}: {error}"


def report(error: BaseException, out: TextIO | None = None) -> ExitCode:
    """Prints `error` for a person (its notes, then the CLI's hint, become the following
    lines); returns its exit code."""
    code, label = classify(error)
    out = out or sys.stderr
    print(f"ringdrop: {label}: {describe(error)}", file=out)
    for note in getattr(error, "__notes__", ()):
        print(f"  {note}", file=out)
    suggestion = hint(error)
    if suggestion:
        print(f"  {suggestion}", file=out)
    if code == ExitCode.ERROR and not isinstance(error, OSError | RingdropError):
        print(
            "  this is a bug in ringdrop: run again with --debug and report the traceback", file=out
        )
    return code
