"""Which modules a replica group's ranks shard as units (groups/sharding.py)."""

from __future__ import annotations

import torch

from phalanx.groups.sharding import shard_units


def test_units_split_large_modules_and_keep_each_parameter_whole():
    model = torch.nn.Sequential(
        torch.nn.Embedding(100, 8),  # 800: a leaf, a unit even above the share
        torch.nn.Sequential(*[torch.nn.Linear(8, 8) for _ in range(8)]),  # 576: split
        torch.nn.LayerNorm(8),
    )
    units = shard_units(model)
    assert units[0] is model[0]
    assert [u for u in units[1:-1]] == list(model[1])  # 72 each, under 1/8 of 1392
    assert units[-1] is model[2]
    params_in_units = {id(p) for u in units for p in u.parameters()}
    assert params_in_units == {id(p) for p in model.parameters()}
