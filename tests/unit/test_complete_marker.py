"""The run's completion marker says how far the run was finished (runtime/fleet_watch.py)."""

from __future__ import annotations

from pathlib import Path

from phalanx.runtime.fleet_watch import COMPLETE_MARKER, completed_steps


def test_a_run_finished_at_60_steps_is_not_finished_for_100(tmp_path: Path):
    assert completed_steps(tmp_path) == 0
    (tmp_path / COMPLETE_MARKER).write_text("60")
    assert completed_steps(tmp_path) >= 60 and not completed_steps(tmp_path) >= 100


def test_a_marker_without_a_number_counts_as_the_whole_run(tmp_path: Path):
    (tmp_path / COMPLETE_MARKER).touch()  # as versions before the step was written left it
    assert completed_steps(tmp_path) >= 10**9
