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

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from phalanx.launch.lighthouse import Lighthouse, LighthouseSettings
from phalanx.sites.outer_link import outer_quorum_size
from tests.dist import outer_rounds_script as script

pytestmark = [pytest.mark.dist, pytest.mark.timeout(180)]

SCRIPT = Path(script.__file__)
ROOT = SCRIPT.parents[2]
# (site, replica, its site's replicas, options)
REPLICAS = (
    ("a", "r0", 2, []),
    ("b", "r0", 1, []),
    ("a", "r1", 2, ["--after-refusal"]),
)


def _start(site: str, replica: str, options: list[str], lighthouse: str, out: Path):
    log = (out / f"{site}-{replica}.log").open("ab")
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), site, replica, lighthouse, str(out), *options],
        cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        env={**os.environ, "PYTHONPATH": f"{ROOT}/src:{ROOT}"},
    )  # fmt: skip


def _events(out: Path, site: str, replica: str) -> list[dict]:
    lines = (out / f"{site}-{replica}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def test_a_site_meets_in_one_outer_round_or_not_at_all(tmp_path):
    lighthouse = Lighthouse(
        LighthouseSettings(min_replicas=outer_quorum_size(2), heartbeat_timeout_ms=1000)
    )
    processes = {}
    try:
        for site, replica, whole, options in REPLICAS:
            options = [*options, "--site-replicas", str(whole)]
            processes[(site, replica)] = _start(site, replica, options, lighthouse.address, tmp_path)
        deadline = time.monotonic() + 150
        while any(p.poll() is None for p in processes.values()):
            if time.monotonic() > deadline:
                logs = {k: (tmp_path / f"{k[0]}-{k[1]}.log").read_text()[-1500:] for k in processes}
                pytest.fail(f"the replicas did not finish: {logs}")
            time.sleep(0.1)  # polling the processes, with a deadline
        assert {k: p.returncode for k, p in processes.items()} == {k: 0 for k in processes}
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
        lighthouse.shutdown()
    # a/r0 was refused round 0 while a/r1 was away (the refusal a/r1 waited for) ...
    first = _events(tmp_path, "a", "r0")
    refusals = [e for e in first if e["kind"] == "outer_retry" and e["round"] == 0]
    assert any("site 0 came with 1 of its 2 replicas" in e["reason"] for e in refusals)
    # ... and every replica then applied the same four rounds, site a's work counted
    # once in each, and a/r1 was never a follower of its own site.
    records = {}
    for site, replica, _, _ in REPLICAS:
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
