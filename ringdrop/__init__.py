"""ringdrop: peer-to-peer file transfer over QUIC, BLAKE3-verified, gated by access rings."""

from importlib.metadata import version

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

__version__ = version("ringdrop")

__all__ = [
    "AccessDeniedError",
    "DiskFullError",
    "IntegrityError",
    "NotFoundError",
    "ProtocolError",
    "RingdropError",
    "StoreError",
    "TicketError",
    "TransferError",
    "UnsafePathError",
    "__version__",
]
