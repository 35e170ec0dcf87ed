"""A site's replicas meet in one outer round, or none of them take part in it: real
processes, a real lighthouse, `OuterRounds` driven by each replica.

torchft's lighthouse forms a quorum once every member of the last one has asked,
without a replica it hears that asks a moment later. A sites run's restarted
replica, at its first outer round in step with its site's peer, was left out that
way: the peer applied the round alone, then waited for it in the site's next inner
quorum while it waited in the outer quorum for a round the other sites had already
applied (tests/e2e/test_sites_run.py hung for 300 s). Here a/r0 and site b ask for
round 0 while a/r1 has not even joined the lighthouse; a/r0 says its site trained
with two replicas, so the round is refused until a/r1 is in it, and the three then
train every round together, a/r1 never a follower.
"""

from __future__ import annotations

import pytest
import torch

from tests.dist.outer_rounds_fleet import replica_events as _events
from tests.dist.outer_rounds_fleet import run_replicas

pytestmark = [pytest.mark.dist, pytest.mark.timeout(180)]

# a/r0 and b/r0 ask for round 0 at once; a/r1 joins the lighthouse only once a/r0 was
# refused the round for coming without it. Each says how many replicas its site has.
REPLICAS = [
    ("a", "r0", ["--site-replicas", "2"]),
    ("b", "r0", ["--site-replicas", "1"]),
    ("a", "r1", ["--site-replicas", "2", "--after-refusal"]),
]


def test_a_site_meets_in_one_outer_round_or_not_at_all(tmp_path):
    run_replicas(REPLICAS, tmp_path)
    # a/r0 was refused round 0 while a/r1 was away (the refusal a/r1 waited for) ...
    first = _events(tmp_path, "a", "r0")
    refusals = [e for e in first if e["kind"] == "outer_retry" and e["round"] == 0]
    assert any("site 0 came with 1 of its 2 replicas" in e["reason"] for e in refusals)
    # ... and every replica then applied the same four rounds, site a's work counted
    # once in each, and a/r1 was never a follower of its own site.
    records = {}
    for site, replica, _ in REPLICAS:
        log = _events(tmp_path, site, replica)
        assert not [e for e in log if e["kind"] in ("outer_follow", "outer_heal")], log
        for event in log:
            if event["kind"] == "outer_round":
                record = {k: event[k] for k in ("sites", "counted", "anchor_checksum")}
                assert records.setdefault(event["round"], record) == record
        rounds = sorted(e["round"] for e in log if e["kind"] == "outer_round")
        assert rounds == [0, 1, 2, 3], (site, replica, rounds)
    assert all(record["counted"] == [0, 1] for record in records.values()), records
    anchors = [torch.load(tmp_path / f"{s}.anchor.pt") for s in ("a-r0", "a-r1", "b-r0")]
    assert all(torch.equal(x, y) for x, y in zip(anchors[0], anchors[1]))
    assert all(torch.equal(x, y) for x, y in zip(anchors[0], anchors[2]))
