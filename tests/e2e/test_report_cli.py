"""`phalanx report RUN_DIR` as a user runs it, also on a damaged events.jsonl."""

import shutil
from pathlib import Path

import pytest

from phalanx.observe.report import SECTIONS
from tests.fleet_helpers import phalanx

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]

RECORDED = Path(__file__).resolve().parents[1] / "data" / "recorded_run"


def test_report_on_truncated_events_renders_with_a_warning(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RECORDED, run)
    events = run / "events.jsonl"
    events.write_bytes(events.read_bytes()[:-30])  # the last line cut mid-record
    result = phalanx("report", str(run))
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "last line is cut" in warnings[0]
    assert "report:" in result.stdout and "4 plots" in result.stdout
    html = (run / "report.html").read_text()
    for section in SECTIONS:
        assert f'<section id="{section}">' in html


def test_report_to_another_path(tmp_path):
    out = tmp_path / "elsewhere.html"
    result = phalanx("report", str(RECORDED), "--out", str(out))
    assert result.returncode == 0, result.stderr
    assert out.read_text().startswith("<!doctype html>")
    assert not (RECORDED / "report.html").exists()  # the recorded run stays as recorded


def test_report_on_a_directory_without_events(tmp_path):
    result = phalanx("report", str(tmp_path))
    assert result.returncode == 2
    assert result.stderr.startswith("error: RUN_DIR") and "events.jsonl" in result.stderr
