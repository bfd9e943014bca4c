"""The committed block-size-4 regression vectors still hold for the current build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import blake3
import pytest

from ringdrop.bao import ChunkRanges, Decoder, outboard_from_bytes
from tests.bao_util import encode
from tests.files import pseudo_random

CASES: list[dict[str, Any]] = json.loads(
    (Path(__file__).parent / "vectors" / "bao_block4.json").read_text()
)["cases"]


def test_vectors_cover_the_interesting_sizes() -> None:
    assert {c["size"] for c in CASES} >= {0, 1, 16384, 16385}
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c['size']}-{c['ranges']}")
def test_vector(case: dict[str, Any]) -> None:
    data = pseudo_random(case["size"], seed=case["seed"])
    ranges = ChunkRanges([tuple(r) for r in case["ranges"]])
    assert ranges.to_bytes().hex() == case["ranges_wire"]
    root, outboard = outboard_from_bytes(data)
    assert root.hex() == case["root"]
    assert blake3.blake3(outboard).hexdigest() == case["outboard_blake3"]
    stream = encode(data, ranges)
    assert (len(stream), blake3.blake3(stream).hexdigest()) == (
        case["stream_len"],
        case["stream_blake3"],
    )
    decoder = Decoder(root, ranges)
    decoder.feed(stream)
    decoder.finish()
