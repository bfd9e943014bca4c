"""What a node received is kept in its data directory: every finished get, newest first, from
any process, and never more than about twice `KEEP` lines."""

from __future__ import annotations

from pathlib import Path

from ringdrop.node import Node
from ringdrop.node.receipts import KEEP, RECEIPTS_FILE, Receipt, read_receipts, record_receipt
from tests.files import pseudo_random, write


async def test_each_finished_get_is_recorded_newest_first(
    serving: Node, receiver: Node, tmp_path: Path, a_folder: Path
) -> None:
    file = serving.share(write(tmp_path / "notes.txt", pseudo_random(5000)), open=True)
    folder = serving.share(a_folder, open=True)
    (tmp_path / "out").mkdir()
    got_file = await receiver.get(file.ticket, tmp_path / "out")
    got_folder = await receiver.get(folder.ticket, tmp_path / "out")
    second, first = receiver.receipts()
    assert (first.peer_id, first.root, first.name, first.format, first.size, first.path) == (
        serving.peer_id, file.root, "notes.txt", "blob", 5000, got_file.path
    )  # fmt: skip
    assert (second.root, second.name, second.format, second.path) == (
        folder.root, "photos", "collection", got_folder.path
    )  # fmt: skip
    assert second.size == folder.size
    assert first.at <= second.at
    with Node(receiver.data_dir) as again:
        assert again.receipts(limit=1) == [second]


def test_the_list_is_trimmed_and_unreadable_lines_are_passed_over(
    tmp_path: Path, receiver: Node
) -> None:
    def receipt(n: int) -> Receipt:
        return Receipt(float(n), receiver.peer_id, bytes(32), f"n{n}", "blob", n, tmp_path)

    for n in range(2 * KEEP + 1):
        record_receipt(receiver.data_dir, receipt(n))
    lines = (receiver.data_dir / RECEIPTS_FILE).read_text().splitlines()
    assert len(lines) == KEEP
    with (receiver.data_dir / RECEIPTS_FILE).open("a") as file:
        file.write("not json\n{}\n")
    assert read_receipts(receiver.data_dir, 2) == [receipt(2 * KEEP), receipt(2 * KEEP - 1)]
