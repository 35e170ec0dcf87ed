"""A model that changes its parameters inside forward, found before a fleet's first step."""

from __future__ import annotations

import types

import pytest
import torch

from phalanx.errors import UsageError
from phalanx.runtime.setup import check_writes_in_forward


class _Feed:
    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def read_now(self, start: int, end: int, whole: bool = False) -> list:
        return [types.SimpleNamespace(batch=self.x[start:end])]


def _work(model: torch.nn.Module, x: torch.Tensor) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        model=model, loss_fn=lambda m, batch: m(batch).sum(), device=torch.device("cpu"),
        seed=0, num_samples=len(x), feed=_Feed(x),
    )  # fmt: skip


class Shrinking(torch.nn.Module):
    """Scales the rows its batch selects, in place, inside forward."""

    def __init__(self) -> None:
        super().__init__()
        self.table = torch.nn.Parameter(torch.ones(8, 3))
        self.head = torch.nn.Linear(3, 1)

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.table[rows] *= 0.5
        return self.head(self.table[rows])


def test_a_parameter_written_inside_forward_is_named():
    warning = check_writes_in_forward(_work(Shrinking(), torch.tensor([1, 2, 5])))
    assert warning is not None and warning.startswith("table changed inside a training forward")


def test_a_model_that_only_reads_its_parameters_passes():
    model = torch.nn.Sequential(torch.nn.Embedding(8, 3), torch.nn.Linear(3, 1))
    assert check_writes_in_forward(_work(model, torch.tensor([1, 2, 5]))) is None


def test_an_embedding_with_max_norm_is_refused_whatever_its_rows_hold():
    """Rows within the norm at start are not renormalised yet: refused all the same,
    by the layer, not by what one probe saw (training would grow them past it)."""
    model = torch.nn.Sequential(torch.nn.Embedding(8, 3, max_norm=100.0), torch.nn.Linear(3, 1))
    with pytest.raises(UsageError) as refused:
        check_writes_in_forward(_work(model, torch.tensor([1, 2, 5])))
    assert "0: nn.Embedding(max_norm=...)" in refused.value.message()
