"""A replica group's ranks shard the model (groups/sharding.py), exactly, and heal.

Real processes over gloo: three ranks with unequal samples per step (one with
none in some steps) train a float64 model sharded by FSDP2 and end where one
process ends; three fresh ranks that load the first ranks' local states halfway
(what a restarted group gets from the same ranks of a peer group) end there too,
and so do two ranks that load the whole state gathered halfway (a checkpoint,
read back on another grouping).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch.distributed import TCPStore

from tests.dist import group_rank_script as script

pytestmark = [pytest.mark.dist, pytest.mark.timeout(240)]
WORLD = 3


def _run_ranks(out: Path, mode: str, world: int = WORLD) -> None:
    store = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)
    ranks = [
        subprocess.Popen(
            [sys.executable, script.__file__, str(r), str(world), str(store.port), str(out), mode],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )  # fmt: skip
        for r in range(world)
    ]
    outputs = [rank.communicate(timeout=180)[0].decode() for rank in ranks]
    for rank, output in zip(ranks, outputs):
        assert rank.returncode == 0, output[-3000:]


def test_a_sharded_group_trains_exactly_and_a_fresh_group_resumes_from_its_rank_states(tmp_path):
    _run_ranks(tmp_path, "train")
    _run_ranks(tmp_path, "resume")
    _run_ranks(tmp_path, "regroup", world=2)
    expected = script.one_process()
    for mode in ("train", "resume", "regroup"):
        got = torch.load(tmp_path / f"{mode}.pt")
        diff = max((got[k] - v).abs().max().item() for k, v in expected.items())
        assert diff < 1e-12, (mode, diff)
    # each rank held a third of every sharded weight, not the whole model
    rank_state = torch.load(tmp_path / "rank1.pt")
    held = sum(t.numel() for t in rank_state["params"])
    assert held < sum(v.numel() for v in expected.values()) / 2

