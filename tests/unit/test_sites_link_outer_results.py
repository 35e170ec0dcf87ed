"""The outer-sync rows of bench/results/sites_link.json hold together (what the doc renders)."""

import json

from tests.fleet_helpers import ROOT

RESULTS = ROOT / "bench" / "results" / "sites_link.json"


def _outer_runs() -> dict:
    return json.loads(RESULTS.read_text())["outer"]


def test_the_slow_link_carried_at_least_both_payloads_of_every_round():
    # Each round moves site A's payload down and site B's up: the counters over whole
    # rounds must see at least that, or the window or the counters missed traffic.
    for run in _outer_runs().values():
        assert run["link_bytes_per_round"] >= run["payload_bytes_per_round"]


def test_every_round_of_every_run_counted_both_sites_and_the_samples_agree():
    for run in _outer_runs().values():
        assert run["window_rounds"] == run["rounds_run"] - 1  # all but the warm-up round
        for site in run["sites"].values():
            assert site["counted_every_round"]
            assert site["samples"] == site["round_samples"]  # step events = outer_round
        assert run["steady_samples"] == sum(site["samples"] for site in run["sites"].values())
        fastest = next(iter(run["sites"].values()))  # site A
        assert fastest["inner_steps"] == [run["outer_every"]] * run["window_rounds"]
