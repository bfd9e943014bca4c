"""The one exception tree of ringdrop. Every message is written for a person and names no
command-line option: the CLI adds its own hints (`ringdrop.cli.exits`), the TUI its own prompts.

    RingdropError                    exit 1   anything else
    ├── UsageError                   exit 2   a setting or argument cannot be used
    │   ├── SettingsError                     a relay or STUN setting (option or variable)
    │   ├── RelayDisabledError                a relay is needed but relaying is disabled here
    │   ├── DiscoveryDisabledError            a peer must be found by its key, discovery is off
    │   └── InvalidNameError                  a ring name or nickname breaks the naming rules
    ├── TicketError                  exit 3   a ticket or peer id is garbled, mistyped, too new
    │   ├── InvalidTicketError                … with `kind`, what is wrong, for programs
    │   └── CodeError                         a short code is mistyped (checked before use)
    ├── AccessDeniedError            exit 4   no ring of the sharer's lets this peer read it
    ├── NotFoundError                exit 5   no such blob, ring, peer, share, file …
    │   └── NotServedError                    … on the peer's side: it does not have the content
    ├── IntegrityError               exit 6   data does not match its BLAKE3 root
    ├── TransferError                exit 7   network, peer gone or busy
    │   ├── UnreachableError                  nothing answered at any address or relay tried
    │   ├── WrongPeerError                    another key than the expected peer id answered
    │   ├── RelayRefusedError                 nothing answered, and the ticket's relay was
    │   │                                     not used (not a public https:// relay)
    │   ├── RendezvousError                   a short code's exchange ended (`kind` says how)
    │   ├── DiscoveryError                    a peer could not be found by its key
    │   │   └── InvalidRecordError            … a service's record is forged, stale or garbled
    │   └── ProtocolError                     the peer broke the wire protocol (never retried)
    │       ├── InvalidManifestError          a ring manifest is garbled, too large or forged
    │       └── InvalidAnnouncementError      a ring announcement is garbled or forged
    ├── UnsafePathError              exit 9   a name would escape its destination
    ├── DestinationError             exit 11  the destination folder cannot be written
    └── StoreError                   exit 10  the data directory cannot do what was asked
        ├── DiskFullError            exit 8   not enough free space
        ├── AmbiguousError                    text matches several peers or shares
        ├── OpenRingError                     the open ring takes no rename, delete or member
        ├── ExistsError                       the destination exists and may not be replaced
        └── AlreadyServedError                another process serves this data directory

    LocalProtocolError               exit 1   this side was asked to send what the protocol
                                              does not allow: a bug, so not a RingdropError,
                                              which no `except RingdropError` may swallow

Each class carries its exit code (`exit_code`) and the label its message starts with (`label`),
and each error the context it is about, where it has one: `peer` (peer id as text), `root`
(content hash), `address`, `path`, and `kind`, which case of its class it is (the CLI's hints
are chosen by class and kind). Errors from foreign code (apsw, aioquic, the OS) are
translated where they enter, so callers catch `RingdropError` only. The native module raises
these same classes.
"""

from __future__ import annotations

from enum import IntEnum
from typing import ClassVar, Literal

__all__ = [
    "AccessDeniedError",
    "AlreadyServedError",
    "AmbiguousError",
    "CodeError",
    "DestinationError",
    "DiscoveryDisabledError",
    "DiscoveryError",
    "DiskFullError",
    "ExistsError",
    "ExitCode",
    "IntegrityError",
    "InvalidAnnouncementError",
    "InvalidManifestError",
    "InvalidNameError",
    "InvalidRecordError",
    "InvalidTicketError",
    "LocalProtocolError",
    "NotFoundError",
    "NotServedError",
    "OpenRingError",
    "ProtocolError",
    "RelayDisabledError",
    "RelayRefusedError",
    "RendezvousError",
    "RendezvousErrorKind",
    "RingdropError",
    "SettingsError",
    "StoreError",
    "TicketError",
    "TicketErrorKind",
    "TransferError",
    "UnreachableError",
    "UnsafePathError",
    "UsageError",
    "WrongPeerError",
]


class ExitCode(IntEnum):
    """The process exit codes, one per class of error; `MEANINGS` says what each means."""

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
    DESTINATION = 11
    INTERRUPTED = 130


MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success",
    ExitCode.ERROR: "any other error (a file that cannot be read, a bug)",
    ExitCode.USAGE: "the command line is wrong (unknown option, bad name, --expires, relay)",
    ExitCode.BAD_TICKET: "a ticket or peer id cannot be read (garbled, cut short, too new)",
    ExitCode.ACCESS_DENIED: "the sharer does not let this peer read the content or catalog",
    ExitCode.NOT_FOUND: "no such ring, peer, share, file, or content on the sharer's side",
    ExitCode.INTEGRITY: "data does not match its BLAKE3 hash (corrupt sender or store)",
    ExitCode.TRANSFER: "the transfer failed: network, sharer unreachable or gone, protocol",
    ExitCode.DISK_FULL: "not enough free disk space",
    ExitCode.UNSAFE_PATH: "a name would escape the destination folder",
    ExitCode.STORE: "the data directory cannot do it (already served, file in the way, ...)",
    ExitCode.DESTINATION: "the destination cannot be written (read-only, no permission)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C); a download keeps what it verified",
}
"""What each exit code means: the one table, shown by `ringdrop --help`."""


class RingdropError(Exception):
    """Root of every error ringdrop raises on purpose."""

    exit_code: ClassVar[ExitCode] = ExitCode.ERROR
    label: ClassVar[str] = "error"

    def __init__(
        self,
        message: str,
        *,
        peer: str | None = None,
        root: bytes | None = None,
        address: str | None = None,
        path: str | None = None,
        kind: str | None = None,
    ) -> None:
        super().__init__(message)
        self.kind = kind
        """Which case of its class the error is, for hints and programs."""
        self.peer = peer
        """The peer id (as text) the error is about."""
        self.root = root
        """The content hash the error is about."""
        self.address = address
        """The network address the error is about."""
        self.path = path
        """The file or folder the error is about."""


class UsageError(RingdropError):
    """An argument or setting cannot be used as given."""

    exit_code = ExitCode.USAGE


class SettingsError(UsageError):
    """A relay, STUN or discovery setting cannot be used. `setting` names it (`relay`, `stun`,
    `discovery`, `relay-policy`, `discovery-dns`), `variable` the environment variable it came
    from (None: given by the caller), and `problem` is the message without its source."""

    def __init__(
        self,
        message: str,
        *,
        setting: str | None = None,
        variable: str | None = None,
        problem: str | None = None,
    ) -> None:
        super().__init__(message, kind=setting)
        self.setting = setting
        self.variable = variable
        self.problem = message if problem is None else problem


class RelayDisabledError(UsageError):
    """A relay is needed (a ticket without addresses) but relaying is disabled here."""


class DiscoveryDisabledError(UsageError):
    """A peer named by its key alone (a key-only ticket, a peer id with no known address) must
    be looked up, but discovery is disabled here."""


class InvalidNameError(UsageError):
    """A ring name or nickname breaks the naming rules."""


class TicketError(RingdropError):
    """A ticket or peer id could not be read."""

    exit_code = ExitCode.BAD_TICKET


TicketErrorKind = Literal[
    "prefix", "character", "length", "truncated", "mangled", "version", "flags", "format",
    "peer_id", "hash", "size", "address", "no_addresses", "relay", "name", "file",
    "trailing_bytes",
]  # fmt: skip


class InvalidTicketError(TicketError):
    """A ticket could not be read or made; `kind` names what is wrong, for programs."""

    def __init__(self, kind: TicketErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: TicketErrorKind = kind


class CodeError(TicketError):
    """A short code is not one that could have been made: a word not in the list, words out of
    their order, no nameplate. Found before any network use, so a typo costs no guess."""


class AccessDeniedError(RingdropError):
    """The sharer does not let this peer read this content."""

    exit_code = ExitCode.ACCESS_DENIED
    label = "access denied"


class NotFoundError(RingdropError):
    """The named blob, ring, peer, share or file does not exist. Not a `StoreError`: the data
    directory is fine, the thing is not there (or, as `NotServedError`, not on the peer).
    `kind` says what was not found: `ring`, `peer`, `share`, `peer-address`, `source` (the file
    a reference blob is served from), `stored-file` (a file of the store itself), …"""

    exit_code = ExitCode.NOT_FOUND
    label = "not found"

    def __init__(
        self,
        message: str,
        *,
        kind: str | None = None,
        name: str | None = None,
        peer: str | None = None,
    ) -> None:
        super().__init__(message, peer=peer, kind=kind)
        self.name = name
        """The name that was looked for."""


class NotServedError(NotFoundError):
    """The peer answered that it does not have (or no longer has) the content asked for: a
    remote "not found", which no check of this data directory can fix."""


class IntegrityError(RingdropError):
    """Bytes failed verification against their BLAKE3 root hash.

    `group` is the index of the 16 KiB chunk group that failed, when known.
    """

    exit_code = ExitCode.INTEGRITY
    label = "integrity failure"

    def __init__(
        self, message: str, group: int | None = None, *, root: bytes | None = None
    ) -> None:
        super().__init__(message, root=root)
        self.group = group


class TransferError(RingdropError):
    """A transfer could not complete; `kind` `gave-up` when a download gave up retrying (what it
    verified is kept, so running it again continues)."""

    exit_code = ExitCode.TRANSFER
    label = "transfer failed"


class UnreachableError(TransferError):
    """Nothing answered a connection attempt: no address of the peer, nor its relay; `kind`
    `not-serving` when the likely cause is that the sharer's node is not serving."""


class WrongPeerError(TransferError):
    """The key that answered at an address is not the peer id that was expected there.

    `expected` and `actual` are the two peer ids, as text.
    """

    def __init__(self, message: str, expected: str, actual: str) -> None:
        super().__init__(message, peer=expected)
        self.expected = expected
        self.actual = actual


class RelayRefusedError(TransferError):
    """Nothing reached the sharer, and the relay its ticket names was not tried: a relay named
    by someone else is used only at public https:// addresses unless configured here.

    `relay` is the URL that was refused."""

    def __init__(self, message: str, relay: str) -> None:
        super().__init__(message)
        self.relay = relay


class DiscoveryError(TransferError):
    """No discovery service gave a usable record of the peer's key (none published, none
    answered, or each record was refused)."""


class InvalidRecordError(DiscoveryError):
    """A discovery service answered with a record that fails verification: signed by another
    key, older than one already seen, garbled, too large, or naming what may not be used."""


RendezvousErrorKind = Literal["guessed", "expired", "unanswered", "taken", "busy"]


class RendezvousError(TransferError):
    """The exchange of a short code ended without a ticket; `kind` says how, for programs:
    `guessed` (a key confirmation failed: the code is ended for good), `expired`, `unanswered`
    (nobody answered on its nameplate), `taken` (another transfer holds the nameplate),
    `busy` (another receiver is using the code)."""

    def __init__(self, kind: RendezvousErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind: RendezvousErrorKind = kind


class ProtocolError(TransferError):
    """The peer sent something the protocol does not allow. A download retries other transfer
    errors, never this one: a peer that breaks the protocol is not asked again."""


class InvalidManifestError(ProtocolError):
    """A ring manifest does not parse, breaks a limit, or is not its owner's signature."""


class InvalidAnnouncementError(ProtocolError):
    """A ring announcement does not parse, breaks a limit, or is not its owner's signature."""


class LocalProtocolError(Exception):
    """This side tried to send something the wire protocol does not allow (a caller's bug).
    Not a `RingdropError`: code that handles the errors ringdrop raises on purpose must let a
    bug through, to be reported as one."""


class UnsafePathError(RingdropError):
    """A name is absolute, climbs out with `..`, or holds characters no file name may hold."""

    exit_code = ExitCode.UNSAFE_PATH
    label = "unsafe path"


class DestinationError(RingdropError):
    """The folder a download is written to (`path`) cannot take it: read-only, no permission.
    Not a `StoreError`: the data directory is fine, the destination is not."""

    exit_code = ExitCode.DESTINATION
    label = "destination"


class StoreError(RingdropError):
    """The data directory could not do what was asked; `kind` `damaged` when a check of the
    store is the next step."""

    exit_code = ExitCode.STORE


class DiskFullError(StoreError):
    """There is not enough free space for the operation."""

    exit_code = ExitCode.DISK_FULL
    label = "disk full"


class AmbiguousError(StoreError):
    """Text given for a peer or a share (`kind`) matches more than one."""

    def __init__(self, message: str, *, kind: str | None = None) -> None:
        super().__init__(message, kind=kind)


class OpenRingError(StoreError):
    """The built-in `open` ring cannot be deleted, renamed or given members."""


class ExistsError(StoreError):
    """The destination (`path`) exists, and the caller did not say to replace or avoid it."""


class AlreadyServedError(StoreError):
    """Another process (`pid`, if known) is serving this data directory."""

    def __init__(self, message: str, pid: int | None = None) -> None:
        super().__init__(message)
        self.pid = pid
