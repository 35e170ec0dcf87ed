"""The slow-link table in docs/ is what bench/sites_link.py renders from its results file."""

import json

from tests.fleet_helpers import ROOT

RESULTS = ROOT / "bench" / "results" / "sites_link.json"


def test_docs_table_is_rendered_from_the_results_not_typed():
    from bench import sites_link_doc

    stored = json.loads(RESULTS.read_text())
    text = sites_link_doc.text(stored)
    assert (ROOT / "docs" / "_generated" / "sites_link.md").read_text() == text + "\n"


def test_the_slow_link_carried_at_least_what_the_ring_allreduce_must():
    # The counters count whole frames over the steady window; a ring allreduce of the
    # gradient must cross the link each way every step, so less would mean a wrong window
    # or a counter that missed traffic.
    stored = json.loads(RESULTS.read_text())
    limited = stored["fleet_limited"]
    assert limited["link_bytes_per_step"] >= 2 * stored["ring_bytes_per_step_each_way"]
    assert limited["fewest_replicas"] == sum(
        len(spec.split(",")) for spec in stored["setup"]["sites"].values()
    )
