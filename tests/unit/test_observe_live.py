"""The terminal view: live on a terminal, plain lines in a pipe, nothing under --quiet."""

import io
from pathlib import Path

import pytest
from rich.console import Console

from phalanx.observe.console import ProgressPrinter, fleet_progress
from phalanx.observe.events import read_events
from phalanx.observe.fleet_state import fleet_state
from phalanx.observe.fleet_view import FleetView
from phalanx.observe.live import LiveProgress, render_fleet

pytestmark = pytest.mark.timeout(30)

RECORDED = Path(__file__).resolve().parents[1] / "data" / "recorded_run"


def _console(terminal: bool, width: int = 120) -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=terminal, width=width, color_system=None), out


def _half_run() -> FleetView:
    events = read_events(RECORDED)
    return FleetView().apply_all(events[: len(events) // 2])


def test_render_shows_header_and_every_replica():
    console, out = _console(terminal=False)
    console.print(render_fleet(fleet_state(_half_run())))
    text = out.getvalue()
    for needle in ("step 34/60", "ETA", "loss", "samples/s", "efficiency", "faults survived 1/1"):
        assert needle in text
    for name in ("r0", "r1", "r2"):
        assert f"\n{name} " in text
    assert "energy" not in text  # unknown energy is left out, not shown as 0


def test_header_wraps_between_fields_on_a_narrow_terminal():
    console, out = _console(terminal=False, width=60)
    console.print(render_fleet(fleet_state(_half_run())))
    lines = out.getvalue().splitlines()
    assert all(len(line) <= 60 for line in lines)
    assert any(line.startswith("efficiency") or "   efficiency" in line for line in lines)


def test_fleet_progress_picks_by_terminal():
    assert isinstance(fleet_progress(_console(terminal=True)[0]), LiveProgress)
    assert isinstance(fleet_progress(_console(terminal=False)[0]), ProgressPrinter)
    assert isinstance(fleet_progress(_console(terminal=True)[0], quiet=True), ProgressPrinter)


def test_plain_lines_every_n_steps_and_quiet_prints_nothing():
    console, out = _console(terminal=False)
    printer = ProgressPrinter(console, every_steps=20)
    view = FleetView()
    for event in read_events(RECORDED):
        view.apply(event)
        printer.maybe_print(view)
    printer.close()
    lines = [line for line in out.getvalue().splitlines() if line.startswith("step")]
    assert [line.split()[1] for line in lines] == ["20/60", "40/60", "60/60"]
    quiet_console, quiet_out = _console(terminal=False)
    quiet = ProgressPrinter(quiet_console, every_steps=1, quiet=True)
    quiet.say("hello")
    quiet.maybe_print(view)
    assert quiet_out.getvalue() == ""


def test_live_view_redraws_in_place_and_keeps_the_final_picture():
    console, out = _console(terminal=True)
    live = LiveProgress(console, refresh_s=0.0)
    view = FleetView()
    for event in read_events(RECORDED):
        view.apply(event)
        live.maybe_print(view)
    live.close()
    text = out.getvalue()
    assert live.redraws >= 2
    assert "\x1b[1A" in text or "\x1b[2K" in text  # cursor moves: redrawn in place, not appended
    assert "step 60/60" in text.split("\x1b[2K")[-1]  # the last picture shows the end


def test_live_view_is_throttled():
    console, _ = _console(terminal=True)
    live = LiveProgress(console, refresh_s=3600.0)
    view = FleetView()
    for event in read_events(RECORDED):
        view.apply(event)
        live.maybe_print(view)
    assert live.redraws == 1  # the first draw only; the rest fell inside the refresh interval
    live.close()


def test_refresh_interval_grows_with_the_cost_of_a_redraw():
    console, _ = _console(terminal=True)
    live = LiveProgress(console, refresh_s=0.0)
    live.maybe_print(_half_run())
    # At most ~5% of a core: the interval is at least 20 times what the redraw cost.
    assert live.refresh_s >= 20 * live.redraw_cpu_s > 0
    live.close()
