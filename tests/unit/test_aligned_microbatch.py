"""Trainer(aligned_microbatch=N): fixed blocks of the global batch, whole blocks per replica."""

import pytest
import torch
from torch.utils.data import TensorDataset

import phalanx
from phalanx.errors import UsageError
from phalanx.runtime.state import FleetState
from phalanx.runtime.validate import check_fleet_blocks
from phalanx.shares.apportion import whole_units
from phalanx.shares.learning import SharePolicy


def test_shares_round_to_whole_blocks_keeping_the_batch_and_the_proportions():
    assert whole_units([16, 9, 7], 8, [None] * 3) == [16, 8, 8]
    assert whole_units([20, 6, 6], 8, [None] * 3) == [16, 8, 8]
    assert whole_units([30, 1, 1], 8, [None] * 3) == [32, 0, 0]  # a chip may get no block
    # A memory cap of 12 samples holds one block of 8, so the other chips take the rest.
    assert whole_units([12, 10, 10], 8, [12, None, None]) == [8, 16, 8]
    with pytest.raises(ValueError, match="whole blocks"):
        whole_units([16, 9, 6], 8, [None] * 3)


def test_a_share_policy_with_a_unit_gives_whole_blocks_from_any_speeds():
    policy = SharePolicy(48, {"a": 3.0, "b": 1.0, "c": 1.7}, {}, unit=8)
    shares = policy.shares(FleetState(), ["a", "b", "c"])
    assert sum(shares) == 48 and all(s % 8 == 0 for s in shares)
    assert shares[0] > shares[1]  # still by speed


def _trainer(**overrides):
    arguments = dict(
        model=torch.nn.Linear(2, 1), optimizer=lambda p: torch.optim.SGD(p, lr=0.1),
        dataset=TensorDataset(torch.zeros(64, 2), torch.zeros(64, 1)),
        loss_fn=lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), global_batch_size=32, steps=1,
    )  # fmt: skip
    return phalanx.Trainer(**{**arguments, **overrides})


@pytest.mark.parametrize(
    ("overrides", "fix"),
    [
        ({"aligned_microbatch": 5}, "divisor of the global batch"),
        ({"aligned_microbatch": 0}, "divisor of global_batch_size"),
        ({"aligned_microbatch": 8, "max_microbatch": 4}, "pass one of them"),
    ],
)
def test_a_bad_aligned_microbatch_names_the_argument_and_the_fix(overrides, fix):
    with pytest.raises(UsageError) as caught:
        _trainer(**overrides)
    assert "aligned_microbatch" in str(caught.value) and fix in str(caught.value)


def test_fewer_blocks_than_replicas_is_refused_with_the_largest_block_that_fits():
    check_fleet_blocks(32, 8, 4)  # four blocks, four replicas: fine
    with pytest.raises(UsageError, match="aligned_microbatch <= 6"):
        check_fleet_blocks(32, 8, 5)


def test_the_blocks_are_the_micro_batches_of_a_one_process_run():
    trainer = _trainer(aligned_microbatch=8)
    assert trainer.feed.chunks(8, 32) == [(8, 16), (16, 24), (24, 32)]
