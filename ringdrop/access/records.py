"""What the access layer records and answers with: its value types, its errors, and the rules
for ring names and nicknames."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

from ringdrop.access.schema import OPEN_RING
from ringdrop.errors import InvalidNameError
from ringdrop.identity import PEER_ID_CHARS, PeerId, first_non_base32
from ringdrop.ticket import Format

__all__ = [
    "NICKNAME_MAX",
    "PEER_ID_CHARS",
    "PEER_PREFIX_MIN",
    "RING_NAME_MAX",
    "AccessLogEntry",
    "Attachment",
    "CatalogRow",
    "Decision",
    "Member",
    "Operation",
    "Peer",
    "PeerRef",
    "Permission",
    "Privilege",
    "Retention",
    "RingInfo",
    "Upload",
    "UploadOutcome",
    "check_nickname",
    "check_ring_name",
    "quoted",
]

Permission = Literal["read", "write", "delete"]
"""What a ring may do with attached content; only `read` is asked for so far."""

Operation = Literal["read", "write", "delete", "announce", "since"]
"""What the access log records a decision on: a permission asked for content, or a ring's news
(an owner's announcement to this node, a member asking this node for the news it missed)."""

Privilege = Literal["catalog"]
"""A per-peer privilege on this node: `catalog` lets the peer list what it may read."""

UploadOutcome = Literal["complete", "interrupted", "failed"]

PeerRef = PeerId | str
"""A peer as a caller names it: a PeerId, or text that is a peer id, nickname or id prefix."""

RING_NAME_MAX = 64
NICKNAME_MAX = 32  # shorter than a peer id (52), so a nickname can never be read as one
PEER_PREFIX_MIN = 8  # as many characters as `PeerId.short()` shows

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_SHOWN_MAX = 60


@dataclass(frozen=True)
class RingInfo:
    name: str
    member_count: int
    content_count: int
    created_at: float
    members_serve: bool = True
    """Whether members may serve what they received under the ring (carried in its manifest)."""
    version: int = 0
    """The version of its newest signed manifest."""

    @property
    def is_open(self) -> bool:
        """Whether this is the built-in ring that admits every authenticated peer."""
        return self.name == OPEN_RING


@dataclass(frozen=True)
class Member:
    peer_id: PeerId
    nickname: str | None
    expires_at: float | None
    added_at: float

    def is_active(self, now: float) -> bool:
        """Whether the membership still admits the peer at `now`."""
        return self.expires_at is None or now < self.expires_at


@dataclass(frozen=True)
class Peer:
    peer_id: PeerId
    nickname: str | None
    added_at: float


@dataclass(frozen=True)
class Attachment:
    root: bytes
    ring: str
    permission: Permission
    attached_at: float


@dataclass(frozen=True)
class Decision:
    """The verdict on one request; `ring` names the ring that admitted the peer, if one did."""

    allowed: bool
    reason: str
    ring: str | None
    not_shared: bool = False
    """Refused because no ring may do this with the content at all, to a peer in this node's
    peer book (every ring member is there): such a peer may be told the content is not (or no
    longer) shared; a stranger learns only that it is denied."""


@dataclass(frozen=True)
class AccessLogEntry:
    at: float
    peer_id: PeerId
    root: bytes
    operation: Operation
    allowed: bool
    reason: str
    ring: str | None
    count: int = 1
    """Decisions this entry stands for: a peer's repeated denials share one entry, which names
    the first one's content and reason."""
    last_at: float | None = None
    """When the last of them was made, if more than one."""


@dataclass(frozen=True)
class Retention:
    """How much of the access and upload logs a serving node keeps: of each, the newest
    `entries`, none older than `days`."""

    days: float = 90.0
    entries: int = 100_000

    def __post_init__(self) -> None:
        if not (self.days > 0 and math.isfinite(self.days)):
            raise ValueError(f"a log is kept for a positive number of days, not {self.days}")
        if self.entries < 1:
            raise ValueError(f"a log keeps at least one entry, not {self.entries}")


@dataclass(frozen=True)
class Upload:
    at: float
    peer_id: PeerId
    root: bytes
    bytes_sent: int
    outcome: UploadOutcome
    via: PeerId | None = None
    """A ring member that sent the bytes for this node, as the receiver reported it (None:
    this node sent them)."""


@dataclass(frozen=True)
class CatalogRow:
    """Content a peer may read, as this node's database knows it: the name, format and size are
    those given when it was attached, and may be unknown (content attached before it was stored,
    or through the API without them). The server turns each into the wire's
    `protocol.CatalogEntry`, which always has all three; the two stay apart because the access
    layer sits below the protocol and must not import it."""

    root: bytes
    name: str | None
    format: Format | None
    size: int | None


def check_ring_name(name: str) -> str:
    """Returns `name` if it may name a ring; raises InvalidNameError saying why not."""
    if not _NAME.fullmatch(name) or len(name) > RING_NAME_MAX:
        raise InvalidNameError(
            f"{quoted(name)} cannot be a ring name: use 1 to {RING_NAME_MAX} letters, digits, "
            "'.', '_' or '-', starting with a letter or digit."
        )
    return name


def check_nickname(nickname: str) -> str:
    """Returns `nickname` if it may be a nickname; raises InvalidNameError saying why not."""
    if len(nickname.strip()) == PEER_ID_CHARS and first_non_base32(nickname.strip()) is None:
        raise InvalidNameError(
            f"{quoted(nickname)} looks like a peer id, so it cannot be a nickname. "
            "Choose a short name for the person instead."
        )
    if not _NAME.fullmatch(nickname) or len(nickname) > NICKNAME_MAX:
        raise InvalidNameError(
            f"{quoted(nickname)} cannot be a nickname: use 1 to {NICKNAME_MAX} letters, digits, "
            "'.', '_' or '-', starting with a letter or digit."
        )
    return nickname


def quoted(text: str) -> str:
    """`text` quoted for a message: escaped (no terminal control) and cut short."""
    if len(text) > _SHOWN_MAX:
        return ascii(text[:_SHOWN_MAX]) + "…"
    return ascii(text)
