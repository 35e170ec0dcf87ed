"""A replica that enters the outer quorum a round behind its site's peer must not speak for
its site: real processes, a real lighthouse, `OuterRounds` driven by each replica.

Site a has two replicas. a/r0 opens its outer link only after a/r1 applied round 0
without it (the race of a late link, seen in CI at stop 30), so it meets a/r1 and
site b in round 1 with none of the inner steps a/r1 trained since. a/r0 ranks first
in its site: before the follower rule it sent site a's copy (empty: its work had
been counted), and a/r1's steps of that round were lost (before every replica of a
site applied its sender's bytes, a/r1 applied its own upload instead, and the two
sites' anchors differed for good). Now a/r1 speaks for the site and a/r0 votes no.
"""

from __future__ import annotations

import pytest
import torch

from tests.dist.outer_rounds_fleet import replica_events as _events
from tests.dist.outer_rounds_fleet import run_replicas

pytestmark = [pytest.mark.dist, pytest.mark.timeout(180)]

REPLICAS = [("a", "r1", []), ("b", "r0", []), ("a", "r0", ["--late"])]


def test_a_replica_a_round_behind_its_peer_follows_and_the_sites_keep_one_anchor(tmp_path):
    run_replicas(REPLICAS, tmp_path)
    # The two sites applied the same rounds to the same uploads: one anchor, bit for bit.
    records = {}
    for site, replica in (("a", "r1"), ("b", "r0")):
        for event in _events(tmp_path, site, replica):
            if event["kind"] == "outer_round":
                record = {k: event[k] for k in ("sites", "counted", "anchor_checksum")}
                assert records.setdefault(event["round"], record) == record
    assert sorted(records) == [0, 1, 2, 3]
    anchors = [torch.load(tmp_path / f"{s}.anchor.pt") for s in ("a-r1", "b-r0")]
    assert all(torch.equal(x, y) for x, y in zip(*anchors))
    # Site a's work counted in every round, the one the late replica met included (an
    # empty copy from the late replica would have lost a/r1's steps of that round).
    samples = {r: record["sites"][0]["samples"] for r, record in records.items()}
    assert all(n > 0 for n in samples.values()), samples
    late = _events(tmp_path, "a", "r0")
    follows = [e for e in late if e["kind"] == "outer_follow"]
    assert len(follows) == 1 and follows[0]["round"] >= 1, late
    assert not [e for e in late if e["kind"] == "outer_round"]  # it applied nothing
