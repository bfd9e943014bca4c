"""ringdrop: peer-to-peer file transfer over QUIC, BLAKE3-verified, gated by access rings."""

from ringdrop.errors import (
    AccessDeniedError,
    DiskFullError,
    IntegrityError,
    NotFoundError,
    NotServedError,
    ProtocolError,
    RingdropError,
    StoreError,
    TicketError,
    TransferError,
    UnsafePathError,
)

# Kept equal to pyproject.toml's by tests/test_cli.py; read from here rather than from the
# installed metadata, whose lookup (importlib.metadata) costs more than the rest of `--version`.
__version__ = "0.1.0"

__all__ = [
    "AccessDeniedError",
    "DiskFullError",
    "IntegrityError",
    "NotFoundError",
    "NotServedError",
    "ProtocolError",
    "RingdropError",
    "StoreError",
    "TicketError",
    "TransferError",
    "UnsafePathError",
    "__version__",
]
