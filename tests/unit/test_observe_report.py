"""report.html from the recorded faulty run: every section, every plot embedded, offline."""

import base64
import json
import re
import shutil
import warnings
from pathlib import Path

import pytest

from phalanx.observe.events import read_events
from phalanx.observe.report import SECTIONS, ReportError, render_report, write_report
from phalanx.observe.series import extract_series

pytestmark = pytest.mark.timeout(60)

RECORDED = Path(__file__).resolve().parents[1] / "data" / "recorded_run"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _plots(html: str) -> dict[str, bytes]:
    return {
        m.group(1): base64.b64decode(m.group(2))
        for m in re.finditer(r'data-plot="(\w+)"[^>]*src="data:image/png;base64,([^"]+)"', html)
    }


@pytest.fixture(scope="module")
def report():
    return render_report(RECORDED)


def test_every_section_and_plot(report):
    for section in SECTIONS:
        assert f'<section id="{section}">' in report.html
    plots = _plots(report.html)
    assert set(plots) == {"loss", "throughput", "shares", "timeline"} == set(report.plots)
    for png in plots.values():
        assert png.startswith(PNG_MAGIC) and len(png) > 10_000
    assert "No device reported temperature or power" in report.html
    assert report.warnings == []


def test_self_contained(report):
    # No fetch from anywhere: no external src, href, stylesheet or script.
    assert not re.search(r'(src|href)="(?!data:|#)', report.html)
    assert "<script" not in report.html and "@import" not in report.html


def test_summary_and_data_accounting_content(report):
    html = report.html
    summary = json.loads((RECORDED / "summary.json").read_text())
    assert "60 of 60" in html
    assert "Every sample was used exactly once per epoch." in html
    assert "kill" in html and "hang" in html
    for device in summary["devices"]:
        assert f'<td class="">{device["id"]}</td>' in html


def test_series_shares_tile_the_batch():
    series = extract_series(read_events(RECORDED))
    totals = [sum(series.shares[n][i] for n in series.replicas) for i in range(len(series.steps))]
    assert set(totals) == {series.global_batch_size}
    assert series.steps == list(range(60))
    kinds = {m.kind for m in series.marks}
    assert {"fault", "heal", "quorum", "checkpoint", "exit", "restart"} <= kinds
    # r1 was out of the fleet between its kill and its heal: two spans of participation.
    assert len(series.participation["r1"]) == 2


def test_telemetry_plot_when_devices_report_it(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RECORDED, run)
    t0 = read_events(run)[0]["t"]
    with (run / "events.jsonl").open("a") as handle:
        for i in range(5):
            for name in ("r0", "r1"):
                handle.write(
                    json.dumps(
                        {
                            "t": t0 + 8 + i,
                            "kind": "telemetry",
                            "replica": name,
                            "source": name,
                            "temperature_c": 60 + i,
                            "power_w": 150 + 10 * i,
                            "energy_j": 100.0 * i,
                        }
                    )
                    + "\n"
                )
    report = render_report(run)
    assert "telemetry" in _plots(report.html)
    assert "No device reported" not in report.html


def test_truncated_last_line_renders_with_a_warning(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RECORDED, run)
    events = run / "events.jsonl"
    events.write_bytes(events.read_bytes()[:-25])
    path, report = write_report(run)
    assert path == run / "report.html" and path.exists()
    assert len(report.warnings) == 1 and "cut" in report.warnings[0]
    assert 'class="warning"' in report.html
    assert set(_plots(report.html)) >= {"loss", "throughput", "shares", "timeline"}


@pytest.mark.filterwarnings("always::ResourceWarning")
def test_only_the_events_own_warnings_reach_the_report(tmp_path, monkeypatch):
    # The collector may close some other test's leaked file while the events are read;
    # its ResourceWarning is not about this run (CI stop 36 failed on exactly that).
    import phalanx.observe.report as report_module

    original = report_module.read_events

    def read_with_noise(*args, **kwargs):
        warnings.warn("unclosed file <_io.BufferedWriter name=24>", ResourceWarning, stacklevel=1)
        return original(*args, **kwargs)

    monkeypatch.setattr(report_module, "read_events", read_with_noise)
    run = tmp_path / "run"
    shutil.copytree(RECORDED, run)
    events = run / "events.jsonl"
    events.write_bytes(events.read_bytes()[:-25])
    report = render_report(run)
    assert len(report.warnings) == 1 and "cut" in report.warnings[0]


def test_no_events_is_a_clear_error(tmp_path):
    with pytest.raises(ReportError, match=r"events\.jsonl"):
        render_report(tmp_path)
