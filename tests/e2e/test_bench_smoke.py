"""The bench's smallest configuration runs end to end, so the bench code cannot rot.

Checks structure and sanity only: every contender really ran and produced finite,
positive figures. Never timing thresholds (performance is bench/'s job, not a test's).
"""

import json
import math
import subprocess
import sys

import pytest

from tests.fleet_helpers import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]


def _positive(value):
    return value is not None and math.isfinite(value) and value > 0


def test_bench_smoke_suite(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.suite",
            "--suite",
            "smoke",
            "--work-dir",
            str(tmp_path / "runs"),
            "--results-dir",
            str(tmp_path / "results"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "heterogeneous efficiency" in result.stdout  # the table was printed

    data = json.loads((tmp_path / "results" / "smoke.json").read_text())
    assert {"date", "cores", "cpu", "torch"} <= data["machine"].keys()
    runs = data["runs"]
    assert [r for r in runs if "error" in r] == []
    assert {r["contender"] for r in runs} == {"phalanx", "ddp", "ideal"}
    for run in runs:
        assert _positive(run["steady_sps"]), run

    (row,) = data["figures"]["efficiency"]
    for ratio in ("phalanx_over_ideal", "ddp_over_ideal", "phalanx_over_ddp"):
        assert row[ratio]["n"] == 1 and _positive(row[ratio]["median"]), ratio
    assert _positive(row["phalanx_phases"]["compute_s"])
