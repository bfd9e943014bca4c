"""The application service shared by the CLI and the TUI: start at `Node`."""

from ringdrop.node.download import RetryPolicy, TransferStats
from ringdrop.node.node import Node, Received, Share
from ringdrop.node.progress import Progress
from ringdrop.node.server import ServeEvent

__all__ = ["Node", "Progress", "Received", "RetryPolicy", "ServeEvent", "Share", "TransferStats"]
