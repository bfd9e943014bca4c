"""Access policy: who may fetch what from this node. Start at `Access`.

It keeps rings, the peer book (with the addresses peers were reached at), grants, the links
between content and rings, and the access and upload logs in the store's database, as its own
tables with its own migrations. Modules: `schema` (tables, migrations, the whole database's
sequence), `records` (value types, errors, naming rules), `decision` (the one query per request),
`access` (`Access`), `log_writer` (the server's batched log writes).
"""

from ringdrop.access.access import Access
from ringdrop.access.log_writer import LogWriter
from ringdrop.access.records import (
    AccessLogEntry,
    Attachment,
    CatalogRow,
    Decision,
    Member,
    Operation,
    Peer,
    PeerRef,
    Permission,
    Privilege,
    Retention,
    RingInfo,
    Upload,
    UploadOutcome,
    check_nickname,
    check_ring_name,
)
from ringdrop.access.schema import MIGRATIONS, OPEN_RING, OPEN_RING_ID

__all__ = [
    "MIGRATIONS",
    "OPEN_RING",
    "OPEN_RING_ID",
    "Access",
    "AccessLogEntry",
    "Attachment",
    "CatalogRow",
    "Decision",
    "LogWriter",
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
]
