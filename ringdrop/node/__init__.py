"""The application service shared by the CLI and the TUI: start at `Node`.

This package is all the CLI and the TUI import of the layers beneath (tests/test_layers.py holds
them to it): `Node`, what its methods take and return, and the few names they show.
"""

from ringdrop.access import OPEN_RING, AccessLogEntry, Member, Upload
from ringdrop.access.news import Follow
from ringdrop.discovery import Published
from ringdrop.node.download import RetryPolicy, TransferStats
from ringdrop.node.hashing import Hashed, hash_file
from ringdrop.node.news import NewsEvent
from ringdrop.node.node import InboxItem, Node, Received, Share
from ringdrop.node.progress import Progress
from ringdrop.node.server import ServeEvent
from ringdrop.protocol import CatalogEntry
from ringdrop.store import OnExisting
from ringdrop.store.collection import IGNORE_FILE
from ringdrop.store.files import replace_atomically

__all__ = [
    "IGNORE_FILE",
    "OPEN_RING",
    "AccessLogEntry",
    "CatalogEntry",
    "Follow",
    "Hashed",
    "InboxItem",
    "Member",
    "NewsEvent",
    "Node",
    "OnExisting",
    "Progress",
    "Published",
    "Received",
    "RetryPolicy",
    "ServeEvent",
    "Share",
    "TransferStats",
    "Upload",
    "hash_file",
    "replace_atomically",
]
