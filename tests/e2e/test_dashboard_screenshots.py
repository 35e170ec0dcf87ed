"""Screenshots in real headless Chromium: the report, the terminal view, the web page.

Each test checks the browser rendered something real; with PHALANX_DOCS_IMG=1
the images are also saved to docs/img/ for the README.
"""

import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from rich.console import Console

from phalanx.observe.dashboard import Dashboard
from phalanx.observe.events import read_events
from phalanx.observe.fleet_state import fleet_state
from phalanx.observe.fleet_view import FleetView
from phalanx.observe.live import render_fleet
from phalanx.observe.report import write_report
from tests.fleet_helpers import ROOT

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("chromium") is None,
        reason="chromium not installed (apt-get install -y chromium)",
    ),
]

RECORDED = ROOT / "tests" / "data" / "recorded_run"
DOCS = ROOT / "docs" / "img"


def _screenshot(tmp_path: Path, url: str, out: Path, size: str) -> None:
    result = subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / f'profile-{time.monotonic_ns()}'}",
            f"--screenshot={out}",
            f"--window-size={size}",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert out.read_bytes().startswith(b"\x89PNG") and out.stat().st_size > 10_000
    if os.environ.get("PHALANX_DOCS_IMG"):
        shutil.copyfile(out, DOCS / out.name)


def _view_during_the_hang() -> FleetView:
    """The recorded run folded up to the first step committed while r2 is frozen."""
    view = FleetView()
    hung = False
    for event in read_events(RECORDED):
        view.apply(event)
        hung = hung or (event["kind"] == "fault" and event["fault"] == "hang")
        if hung and event["kind"] == "step" and view.replicas["r1"].state == "training":
            break
    assert view.replicas["r2"].state == "hung"
    return view


def test_report_page(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(RECORDED, run)
    path, _ = write_report(run)
    _screenshot(tmp_path, path.as_uri(), tmp_path / "report_page.png", "1150,2400")


def test_terminal_view(tmp_path):
    with open(os.devnull, "w") as sink:
        console = Console(record=True, width=112, file=sink, force_terminal=True)
        console.print(render_fleet(fleet_state(_view_during_the_hang())))
    svg = tmp_path / "live_terminal.svg"
    svg.write_text(console.export_svg(title="phalanx run --emulate 1,0.5,0.25"))
    assert "r2" in svg.read_text() and "hung" in svg.read_text()
    _screenshot(tmp_path, svg.as_uri(), tmp_path / "live_terminal.png", "1130,250")


def test_dashboard_page(tmp_path):
    board = Dashboard(0)
    try:
        view = _view_during_the_hang()
        board.publish(view, force=True, now_s=view.last_t)
        _screenshot(tmp_path, board.url, tmp_path / "live_dashboard.png", "1100,360")
    finally:
        board.close()
