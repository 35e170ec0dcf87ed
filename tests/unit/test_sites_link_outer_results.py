"""The outer-sync rows of bench/results/sites_link.json hold together (what the doc renders)."""

import json

from tests.fleet_helpers import ROOT

RESULTS = ROOT / "bench" / "results" / "sites_link.json"


def _outer_runs() -> dict:
    return json.loads(RESULTS.read_text())["outer"]


def test_the_slow_link_carried_at_least_both_uploads_of_every_round():
    # Each round moves site A's upload down and site B's up: the counters over whole
    # rounds must see at least that, or the window or the counters missed traffic.
    for run in _outer_runs().values():
        assert run["link_bytes_per_sample"] >= run["upload_bytes_per_sample"]


def test_every_round_of_every_run_committed_with_both_sites_and_no_retry():
    for run in _outer_runs().values():
        assert run["window_rounds"] == run["rounds_run"] - 1  # all but the warm-up round
        assert all(site["failed_rounds"] == 0 for site in run["sites"].values())
        steps = [site["inner_steps"] for site in run["sites"].values()]
        assert steps == [run["outer_every"], run["outer_every"] // 2]  # planned by speed


def test_the_exchange_timeout_covered_twice_the_uploads_transfer():
    rate_bytes_per_s = json.loads(RESULTS.read_text())["setup"]["link_rate_mbit"] * 1e6 / 8
    for run in _outer_runs().values():
        assert run["timeout_s"] > 2 * run["upload_bytes"] / rate_bytes_per_s
