"""The one exception tree of ringdrop; every message is written for a person.

    RingdropError
    ├── IntegrityError        data does not match its BLAKE3 root (corrupt peer, changed file)
    ├── StoreError            the data directory cannot do what was asked
    │   ├── NotFoundError     no such blob, ring, peer, tag …
    │   └── DiskFullError     not enough free space for the operation
    ├── UnsafePathError       a name would escape its destination or is otherwise unsafe
    ├── TicketError           a ticket or peer id is garbled, mistyped or unsupported
    ├── AccessDeniedError     the sharer's rings do not admit this peer for this content
    ├── ProtocolError         the peer broke the wire protocol
    ├── LocalProtocolError    this side was asked to send what the wire protocol does not allow
    └── TransferError         the transfer could not complete (network, peer gone, busy)
        └── WrongPeerError    a different key than the expected peer id answered at an address

Errors from foreign code (apsw, aioquic, OS) are translated where they enter, so callers catch
`RingdropError` only. The native module raises these same classes.
"""

from __future__ import annotations

__all__ = [
    "AccessDeniedError",
    "DiskFullError",
    "IntegrityError",
    "LocalProtocolError",
    "NotFoundError",
    "ProtocolError",
    "RingdropError",
    "StoreError",
    "TicketError",
    "TransferError",
    "UnsafePathError",
    "WrongPeerError",
]


class RingdropError(Exception):
    """Root of every error ringdrop raises on purpose."""


class IntegrityError(RingdropError):
    """Bytes failed verification against their BLAKE3 root hash.

    `group` is the index of the 16 KiB chunk group that failed, when known.
    """

    def __init__(self, message: str, group: int | None = None) -> None:
        super().__init__(message)
        self.group = group


class StoreError(RingdropError):
    """The data directory could not do what was asked."""


class NotFoundError(StoreError):
    """The named blob, ring, peer or tag does not exist."""


class DiskFullError(StoreError):
    """There is not enough free space for the operation."""


class UnsafePathError(RingdropError):
    """A name is absolute, climbs out with `..`, or holds characters no file name may hold."""


class TicketError(RingdropError):
    """A ticket or peer id could not be read."""


class AccessDeniedError(RingdropError):
    """The sharer does not let this peer read this content."""


class ProtocolError(RingdropError):
    """The peer sent something the protocol does not allow."""


class LocalProtocolError(RingdropError):
    """This side tried to send something the wire protocol does not allow (a caller's bug)."""


class TransferError(RingdropError):
    """A transfer could not complete."""


class WrongPeerError(TransferError):
    """The key that answered at an address is not the peer id that was expected there.

    `expected` and `actual` are the two peer ids, as text.
    """

    def __init__(self, message: str, expected: str, actual: str) -> None:
        super().__init__(message)
        self.expected = expected
        self.actual = actual
