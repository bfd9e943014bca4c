"""The blob store: a crash-safe, content-addressed data directory (SQLite via apsw, plus files).

Start at `Store`. Modules: `db` (connection, migrations, transactions), `schema` (the store's
migrations), `layout` (paths), `blobs` (staging and reading blobs), `state` (a blob's state and
every change of it), `importer` (imports), `partial` (downloads), `collection` and `names`
(folders as blobs, safe names), `tags`, `gc`, `check`, `export`, `reader` (a server's lookups).
Who may read what is the `ringdrop.access` layer's."""

from typing import TYPE_CHECKING

from ringdrop._lazy import lazy_names
from ringdrop.store.blobs import INLINE_MAX, BlobInfo, ImportMode, Location
from ringdrop.store.collection import Collection, Entry
from ringdrop.store.db import Database, Migration
from ringdrop.store.export import ExportResult, OnExisting
from ringdrop.store.importer import ImportedCollection
from ringdrop.store.layout import default_data_dir
from ringdrop.store.names import validate_name
from ringdrop.store.partial import PartialBlob, PartialInfo, PartialWriter
from ringdrop.store.progress import ProgressFn
from ringdrop.store.store import Store
from ringdrop.store.tags import Format, Tag, TempTag, default_tag_name

if TYPE_CHECKING:
    from ringdrop.store.check import ChangedReference, CheckProblem, CheckReport
    from ringdrop.store.gc import GcReport

# The maintenance reports' names are imported when first used (`store check`, `store gc`), so
# that the other commands do not load those modules to start.
_MAINTENANCE = {
    "ChangedReference": "ringdrop.store.check",
    "CheckProblem": "ringdrop.store.check",
    "CheckReport": "ringdrop.store.check",
    "GcReport": "ringdrop.store.gc",
}

__all__ = [
    "INLINE_MAX",
    "BlobInfo",
    "ChangedReference",
    "CheckProblem",
    "CheckReport",
    "Collection",
    "Database",
    "Entry",
    "ExportResult",
    "Format",
    "GcReport",
    "ImportMode",
    "ImportedCollection",
    "Location",
    "Migration",
    "OnExisting",
    "PartialBlob",
    "PartialInfo",
    "PartialWriter",
    "ProgressFn",
    "Store",
    "Tag",
    "TempTag",
    "default_data_dir",
    "default_tag_name",
    "validate_name",
]


__getattr__ = lazy_names(__name__, _MAINTENANCE)
