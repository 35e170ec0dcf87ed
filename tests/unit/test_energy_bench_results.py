"""The energy tables in docs/ are what bench/energy.py renders from its results file."""

import argparse
import json

from tests.fleet_helpers import ROOT


def test_docs_table_is_rendered_from_the_results_not_typed():
    import bench.energy as energy_bench

    stored = json.loads((ROOT / "bench" / "results" / "energy.json").read_text())
    args = argparse.Namespace(repeats=stored["repeats"], steps=stored["steps"], date=stored["date"])
    text = energy_bench.render(stored["power"], stored["thermal"], args)
    assert (ROOT / "docs" / "_generated" / "energy_bench.md").read_text() == text
    assert text.strip() in (ROOT / "docs" / "benchmarks.md").read_text()


def test_every_budget_run_stayed_under_its_budget():
    import bench.energy as energy_bench

    stored = json.loads((ROOT / "bench" / "results" / "energy.json").read_text())
    budget_runs = stored["power"][f"budget {energy_bench.BUDGET_W} W"]
    assert budget_runs and all(r["max_draw_w"] <= energy_bench.BUDGET_W for r in budget_runs)
