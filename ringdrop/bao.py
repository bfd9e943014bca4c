"""Verified streaming (BLAKE3 + bao, 16 KiB chunk groups): the typed facade over the Rust core.

This is the only module that imports `ringdrop._native`; everything else imports from here.
"""

from ringdrop._native import (
    CHUNK_SIZE,
    GROUP_SIZE,
    ChunkRanges,
    Decoder,
    Encoder,
    create_outboard,
    group_count,
    keep_freed_memory,
    outboard_chains,
    outboard_from_bytes,
    outboard_size,
    valid_ranges,
)

__all__ = [
    "CHUNK_SIZE",
    "GROUP_SIZE",
    "ChunkRanges",
    "Decoder",
    "Encoder",
    "create_outboard",
    "group_count",
    "keep_freed_memory",
    "outboard_chains",
    "outboard_from_bytes",
    "outboard_size",
    "valid_ranges",
]
