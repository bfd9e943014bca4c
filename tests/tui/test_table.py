"""The TUI's tables: columns widen to rows added after the screen last drew them."""

from __future__ import annotations

from textual.app import App, ComposeResult

from ringdrop.tui.pane import Table
from tests.tui.conftest import SIZE, screen_text, until


class _OneTable(App[None]):
    def compose(self) -> ComposeResult:
        table = Table(id="t")
        table.add_columns("when", "outcome")
        yield table


async def test_rows_added_after_a_drawing_widen_their_columns_once_measured() -> None:
    app = _OneTable()
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(Table)
        await pilot.pause()
        table.add_row("2026-12-06 21:00", "complete")
        # The screen draws the new row before the table's idle moment measures it: the race
        # the TUI lost now and then. Drawn here on purpose, it is the same drawing each time.
        table.render_line(1)
        when = table.ordered_columns[0]
        await until(pilot, lambda: when.content_width == len("2026-12-06 21:00"))  # measured
        await pilot.pause()
        assert "2026-12-06 21:00  complete" in screen_text(app)
