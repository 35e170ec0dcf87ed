"""Keyed dropout on inputs whose batch is not the first dimension (exact/layouts.py)."""

from __future__ import annotations

import itertools

import torch

from phalanx.exact.keys import sample_keys
from phalanx.exact.layer_stats import LayerStatsSync
from phalanx.exact.layouts import scaling_dim
from phalanx.exact.setup import learn_dropout_layouts, make_exact

CPU = torch.device("cpu")
LENGTH, WIDTH = 8, 5  # a length that is a multiple of every slice below: the old trap


class SequenceFirst(torch.nn.Module):
    """(length, batch, width) through one reused dropout, as nn.LSTM's default layout."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (batch, length, width)
        h = self.drop(x.transpose(0, 1))  # sequence-first
        return self.drop(h).transpose(0, 1)  # a second call, same layout


def _exact(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    found = make_exact(model, True, None, LayerStatsSync(allreduce=lambda tensor: None))
    return found.keyed_modules


def _data(count: int) -> torch.Tensor:
    return torch.ones(count, LENGTH, WIDTH, dtype=torch.float64)


def _by_slices(model: torch.nn.Module, cuts: list[int]) -> torch.Tensor:
    parts = []
    for start, end in itertools.pairwise(cuts):
        with sample_keys(seed=3, start=start, count=end - start, device=CPU):
            parts.append(model(_data(end - start)))
    return torch.cat(parts)


def _learn(model: torch.nn.Module, keyed: dict[str, torch.nn.Module]) -> str | None:
    return learn_dropout_layouts(model, keyed, lambda n: lambda: model(_data(n)), (2, 3), 3)


def test_a_sequence_first_input_is_keyed_by_sample_once_its_layout_is_learnt():
    model = SequenceFirst()
    keyed = _exact(model)
    before = [_by_slices(model, [0, 8]), _by_slices(model, [0, 4, 8])]
    assert not torch.equal(*before)  # the length passed for a folded batch: split-dependent
    assert _learn(model, keyed) is None
    whole = _by_slices(model, [0, 8])
    assert torch.equal(whole, _by_slices(model, [0, 4, 8]))
    assert torch.equal(whole, _by_slices(model, [0, 1, 3, 8]))
    assert not torch.equal(whole[0], whole[1])  # each sample its own mask
    kept = float((whole != 0).double().mean())
    assert 0.15 < kept < 0.35  # two dropouts of p = 0.5


def test_batch_first_layouts_keep_the_first_dimension():
    assert scaling_dim((1, 7, 3), (2, 7, 3), (1, 2)) == 0
    assert scaling_dim((4, 7, 7), (8, 9, 9), (1, 2)) == 0  # heads folded, padding grew
    assert scaling_dim((7, 1, 3), (7, 2, 3), (1, 2)) == 1
    assert scaling_dim((7, 1, 3), (9, 2, 3), (1, 2)) == 1  # sequence-first, padding grew
    assert scaling_dim((7, 3), (7, 3), (1, 2)) is None  # nothing follows the batch
    assert scaling_dim((7, 1, 1), (7, 2, 2), (1, 2)) is None  # two candidates


class Pooled(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(x.sum(dim=0))  # the batch summed away before the dropout


def test_a_dropout_whose_input_has_no_batch_is_named():
    model = Pooled()
    warning = _learn(model, _exact(model))
    assert warning is not None and warning.startswith("drop (Dropout): no one dimension")
    assert "batch_first=True" in warning


def test_a_probe_that_fails_proves_nothing():
    model = SequenceFirst()
    keyed = _exact(model)

    def broken(count: int):
        raise ValueError("no batch")

    assert learn_dropout_layouts(model, keyed, broken, (2, 3), 0) is None
