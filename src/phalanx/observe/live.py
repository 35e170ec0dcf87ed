"""The live terminal view: a header and a table of replicas, redrawn in place.

Redraws happen on the caller's thread (no rich auto-refresh thread), at most
`refresh_s` apart and only when something changed or the clock moved a
second, so the view never reads a FleetView while it is being folded and costs
nothing between redraws. `render_fleet(state)` is reusable on its own: any
command that can build a fleet-state dict can show it.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.live import Live
from rich.table import Table
from rich.text import Text

from phalanx.observe.fleet_state import (
    REPLICA_COLUMNS,
    STATE_COLORS,
    fleet_state,
    header_fields,
    replica_cells,
)
from phalanx.observe.fleet_view import FleetView

REFRESH_S = 0.25


def _rows_to_show(rows: list[dict[str, Any]], max_rows: int | None) -> list[dict[str, Any]]:
    """All rows if they fit; else the replicas in trouble first, then the rest in order."""
    if max_rows is None or len(rows) <= max_rows:
        return rows
    calm = ("training", "done")
    troubled = [r for r in rows if r["state"] not in calm]
    return (troubled + [r for r in rows if r["state"] in calm])[:max_rows]


def render_fleet(
    state: dict[str, Any], title: str = "phalanx", max_rows: int | None = None
) -> RenderableType:
    items = [Text(title, style="bold")]
    for label, value in header_fields(state):
        item = Text()
        item.append(f"{label} ", style="dim")
        item.append(value, style="bold")
        items.append(item)
    header = _FieldLine(items)
    table = Table(expand=False, pad_edge=False, show_edge=False, header_style="bold")
    for column in REPLICA_COLUMNS:
        right = column in ("share", "samples/s", "°C", "W")
        if column == "last event":  # the one column that gives way on a narrow terminal
            table.add_column(column, no_wrap=True, overflow="ellipsis", max_width=48)
        else:
            table.add_column(
                column,
                justify="right" if right else "left",
                no_wrap=True,
                min_width=10 if column == "state" else len(column),  # "restarting" in full
            )
    shown = _rows_to_show(state["replicas"], max_rows)
    for row in shown:
        cells = replica_cells(row)
        color = STATE_COLORS.get(row["state"], "white")
        cells[2] = f"[{color}]{cells[2]}[/]"
        table.add_row(*cells)
    hidden = len(state["replicas"]) - len(shown)
    if hidden:
        filler = [""] * (len(REPLICA_COLUMNS) - 3)
        table.add_row(f"… {hidden} more", "", "training or done", *filler, style="dim")
    return Group(header, table)


class _FieldLine:
    """Fields side by side, wrapped between fields (never inside one) at the console's width."""

    def __init__(self, items: list[Text], gap: int = 3) -> None:
        self.items = items
        self.gap = gap

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        line = Text()
        for item in self.items:
            if line.cell_len and line.cell_len + self.gap + item.cell_len > options.max_width:
                yield line
                line = Text()
            if line.cell_len:
                line.append(" " * self.gap)
            line.append_text(item)
        yield line


class LiveProgress:
    """Same interface as ProgressPrinter (say, maybe_print, close), drawn in place."""

    def __init__(self, console: Console, refresh_s: float = REFRESH_S) -> None:
        self.console = console
        self.refresh_s = refresh_s
        self._live: Live | None = None
        self._view: FleetView | None = None
        self._drawn_version = -1
        self._drawn_at_s = float("-inf")  # the first call draws at once
        self.redraws = 0
        self.redraw_cpu_s = 0.0  # measured, so the view's cost can be reported

    def say(self, text: str) -> None:
        # Printed above the live area by rich; the table stays at the bottom.
        self.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def maybe_print(self, view: FleetView) -> None:
        self._view = view
        now = time.monotonic()
        due = now - self._drawn_at_s >= self.refresh_s
        changed = view.version != self._drawn_version
        if not due or (not changed and now - self._drawn_at_s < 1.0):
            return  # unchanged views still redraw once a second: elapsed and ETA move
        self._draw(view, now)

    def _draw(self, view: FleetView, now: float) -> None:
        cpu0 = time.process_time()
        # A table taller than the terminal would scroll and flicker: keep it on screen.
        max_rows = max(4, self.console.size.height - 8)
        renderable = render_fleet(fleet_state(view, time.time()), max_rows=max_rows)
        if self._live is None:
            self._live = Live(
                renderable,
                console=self.console,
                auto_refresh=False,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=False,
            )
            self._live.start()
        self._live.update(renderable, refresh=True)
        self._drawn_version = view.version
        self._drawn_at_s = now
        self.redraws += 1
        cost_s = time.process_time() - cpu0
        self.redraw_cpu_s += cost_s
        # Never spend more than ~5% of a core on drawing, however large the fleet.
        self.refresh_s = max(self.refresh_s, 20 * cost_s)

    def close(self) -> None:
        if self._view is not None:
            self._draw(self._view, time.monotonic())  # the final picture stays on screen
        if self._live is not None:
            self._live.stop()
            self._live = None
