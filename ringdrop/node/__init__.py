"""The application service shared by the CLI and the TUI: start at `Node`.

This package is all the CLI and the TUI import of the layers beneath (tests/test_layers.py holds
them to it): `Node`, what its methods take and return, and the few names they show.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ringdrop._lazy import lazy_names

if TYPE_CHECKING:
    from ringdrop.access import OPEN_RING, AccessLogEntry, Member, Upload
    from ringdrop.access.news import Follow
    from ringdrop.bao import keep_freed_memory
    from ringdrop.discovery import Published
    from ringdrop.node.codes import CODE_EXPIRES, RECEIVE_TIMEOUT, CodeOffer
    from ringdrop.node.download import TransferStats
    from ringdrop.node.hashing import Hashed, hash_file
    from ringdrop.node.news import NewsEvent
    from ringdrop.node.node import InboxItem, Node, Received, Sent, Share
    from ringdrop.node.progress import Progress
    from ringdrop.node.receipts import Receipt
    from ringdrop.node.retry import RetryPolicy
    from ringdrop.node.send import TEXT_NAME, Fetched, is_text
    from ringdrop.node.server import ServeEvent
    from ringdrop.protocol import CatalogEntry
    from ringdrop.shortcode import ShortCode, looks_like_code
    from ringdrop.store import OnExisting
    from ringdrop.store.collection import IGNORE_FILE
    from ringdrop.store.files import replace_atomically

# Each name is imported from its module when first used, so that a command that never opens a
# node (`ringdrop --version`, `--help`, `info`) does not load the network stack to start.
_WHERE = {
    "IGNORE_FILE": "ringdrop.store.collection",
    "OPEN_RING": "ringdrop.access",
    "AccessLogEntry": "ringdrop.access",
    "CatalogEntry": "ringdrop.protocol",
    "CODE_EXPIRES": "ringdrop.node.codes",
    "CodeOffer": "ringdrop.node.codes",
    "Follow": "ringdrop.access.news",
    "Hashed": "ringdrop.node.hashing",
    "InboxItem": "ringdrop.node.node",
    "Member": "ringdrop.access",
    "NewsEvent": "ringdrop.node.news",
    "Node": "ringdrop.node.node",
    "OnExisting": "ringdrop.store",
    "Progress": "ringdrop.node.progress",
    "Published": "ringdrop.discovery",
    "RECEIVE_TIMEOUT": "ringdrop.node.codes",
    "Receipt": "ringdrop.node.receipts",
    "Received": "ringdrop.node.node",
    "RetryPolicy": "ringdrop.node.retry",
    "ServeEvent": "ringdrop.node.server",
    "Sent": "ringdrop.node.node",
    "Share": "ringdrop.node.node",
    "ShortCode": "ringdrop.shortcode",
    "TEXT_NAME": "ringdrop.node.send",
    "Fetched": "ringdrop.node.send",
    "is_text": "ringdrop.node.send",
    "keep_freed_memory": "ringdrop.bao",
    "looks_like_code": "ringdrop.shortcode",
    "TransferStats": "ringdrop.node.download",
    "Upload": "ringdrop.access",
    "hash_file": "ringdrop.node.hashing",
    "replace_atomically": "ringdrop.store.files",
}

__all__ = [
    "CODE_EXPIRES",
    "IGNORE_FILE",
    "OPEN_RING",
    "RECEIVE_TIMEOUT",
    "TEXT_NAME",
    "AccessLogEntry",
    "CatalogEntry",
    "CodeOffer",
    "Fetched",
    "Follow",
    "Hashed",
    "InboxItem",
    "Member",
    "NewsEvent",
    "Node",
    "OnExisting",
    "Progress",
    "Published",
    "Receipt",
    "Received",
    "RetryPolicy",
    "Sent",
    "ServeEvent",
    "Share",
    "ShortCode",
    "TransferStats",
    "Upload",
    "hash_file",
    "is_text",
    "keep_freed_memory",
    "looks_like_code",
    "replace_atomically",
]


__getattr__ = lazy_names(__name__, _WHERE)


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
