"""The application service shared by the CLI and the TUI: start at `Node`.

This package is all the CLI and the TUI import of the layers beneath (tests/test_layers.py holds
them to it): `Node`, what its methods take and return, and the few names they show.
"""

from ringdrop.access import OPEN_RING, AccessLogEntry, Member, Upload
from ringdrop.node.codes import CODE_EXPIRES, RECEIVE_TIMEOUT, CodeOffer
from ringdrop.node.download import RetryPolicy, TransferStats
from ringdrop.node.hashing import Hashed, hash_file
from ringdrop.node.node import Node, Received, Share
from ringdrop.node.progress import Progress
from ringdrop.node.server import ServeEvent
from ringdrop.protocol import CatalogEntry
from ringdrop.shortcode import ShortCode, looks_like_code
from ringdrop.store import OnExisting
from ringdrop.store.collection import IGNORE_FILE
from ringdrop.store.files import replace_atomically

__all__ = [
    "CODE_EXPIRES",
    "IGNORE_FILE",
    "OPEN_RING",
    "RECEIVE_TIMEOUT",
    "AccessLogEntry",
    "CatalogEntry",
    "CodeOffer",
    "Hashed",
    "Member",
    "Node",
    "OnExisting",
    "Progress",
    "Received",
    "RetryPolicy",
    "ServeEvent",
    "Share",
    "ShortCode",
    "TransferStats",
    "Upload",
    "hash_file",
    "looks_like_code",
    "replace_atomically",
]
