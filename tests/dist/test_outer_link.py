"""The outer link between sites: real processes, a real lighthouse, a site killed mid-round.

Three one-replica sites run outer rounds through `OuterLink` (a second torchft quorum).
Site 2 is SIGKILLed just before a round's exchange and restarted: the others' exchange
fails, they ask again with a new quorum, and the restarted site heals the outer state
(anchor, momentum, round) from a live site and takes part again. Every site must end with the same
anchor, bit for bit, as a one-process replay of the recorded rounds.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from phalanx.launch.lighthouse import Lighthouse, LighthouseSettings
from phalanx.sites.compression import ErrorFeedback
from phalanx.sites.outer_link import outer_quorum_size
from phalanx.sites.outer_optimizer import OuterOptimizer
from phalanx.sites.outer_step import prepare_upload
from tests.dist import outer_site_script as site_script

pytestmark = [pytest.mark.dist, pytest.mark.timeout(240)]

ROUNDS = 6
DIE_AT_ROUND = 2
BACK_BY_ROUND = 4  # the survivors wait for the restarted site before this round
SCRIPT = Path(site_script.__file__)
ROOT = SCRIPT.parents[2]


def _start(site: int, lighthouse: str, out: Path, *extra: str) -> subprocess.Popen[bytes]:
    with (out / f"site{site}.log").open("ab") as log:  # the child holds its own copy
        return subprocess.Popen(
            [sys.executable, str(SCRIPT), str(site), lighthouse, str(out), str(ROUNDS), *extra],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            env={**__import__("os").environ, "PYTHONPATH": f"{ROOT}/src:{ROOT}"},
        )  # fmt: skip


def _records(out: Path, site: int) -> list[dict]:
    lines = (out / f"site{site}.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def _replay(rounds: list[dict], restarted_at_round: int) -> list[torch.Tensor]:
    """The whole run in one process: each round, the recorded sites' uploads.

    Site 2's residuals (float64 deltas sent as float32) die with its first process.
    """
    model = site_script.initial_model()
    params = list(model.parameters())
    outer = OuterOptimizer([p.detach() for p in params], site_script.SETTINGS)
    feedback = {site: ErrorFeedback(site_script.CODEC) for site in range(3)}
    for record in rounds:
        if record["round"] == restarted_at_round:
            feedback[2] = ErrorFeedback(site_script.CODEC)
        uploads = []
        for site in record["sites"]:
            with torch.no_grad():
                for param, value in zip(params, outer.anchor):
                    param.copy_(value)
            samples = site_script.train_round(model, site, record["round"])
            uploads.append(prepare_upload(site, samples, outer.anchor, params, feedback[site]))
        site_script.outer_round(model, outer, uploads, site_script.CODEC)
    return outer.anchor


def test_a_site_killed_mid_round_is_left_out_then_heals_and_ends_on_the_same_anchor(tmp_path):
    lighthouse = Lighthouse(
        LighthouseSettings(min_replicas=outer_quorum_size(3), heartbeat_timeout_ms=1000)
    )
    processes: dict[int, subprocess.Popen[bytes]] = {}
    try:
        for site in range(3):
            extra = ["--die-at-round", str(DIE_AT_ROUND)] if site == 2 else []
            extra += ["--hold-at-round", str(BACK_BY_ROUND)] if site != 2 else []
            processes[site] = _start(site, lighthouse.address, tmp_path, *extra)
        restarted = False
        deadline = time.monotonic() + 200
        while any(p.poll() is None for p in processes.values()) or not restarted:
            assert time.monotonic() < deadline, "the sites did not finish"
            if not restarted and processes[2].poll() is not None:
                assert processes[2].returncode == -9  # it killed itself, as asked
                processes[2] = _start(2, lighthouse.address, tmp_path)
                restarted = True
            time.sleep(0.1)  # polling the processes, with a deadline
        assert [processes[s].returncode for s in range(3)] == [0, 0, 0]
    finally:
        for process in processes.values():
            if process.poll() is None:
                process.kill()
        lighthouse.shutdown()
    # Every participant of a round recorded it, and they agree on who took part.
    by_round: dict[int, dict] = {}
    for site in range(3):
        for record in _records(tmp_path, site):
            if record["kind"] == "round":
                assert by_round.setdefault(record["round"], record) == record
                assert site in record["sites"]
    rounds = [by_round[r] for r in sorted(by_round)]
    assert [r["round"] for r in rounds] == list(range(ROUNDS))
    # (A site still starting may miss round 0: it heals into a later one, like a returner.)
    # The survivors' exchange of that round failed when site 2 died inside it; they asked
    # again (with or without the restarted site 2, whichever joined the new quorum).
    failed = [r for s in (0, 1) for r in _records(tmp_path, s) if r["kind"] == "failed"]
    assert failed and all(r["round"] == DIE_AT_ROUND for r in failed)
    assert rounds[-1]["sites"] == [0, 1, 2]  # healed and back
    # The restarted site joined later and saw only the rounds after it healed.
    second_life = _records(tmp_path, 2)
    starts = [i for i, r in enumerate(second_life) if r["kind"] == "start"]
    assert len(starts) == 2
    healed_rounds = [r["round"] for r in second_life[starts[1] :] if r["kind"] == "round"]
    assert healed_rounds and healed_rounds[0] >= DIE_AT_ROUND  # healed, not from round 0
    anchors = [torch.load(tmp_path / f"site{s}.pt") for s in range(3)]
    expected = _replay(rounds, healed_rounds[0])
    for anchor in anchors:
        assert all(torch.equal(a, e) for a, e in zip(anchor, expected))
