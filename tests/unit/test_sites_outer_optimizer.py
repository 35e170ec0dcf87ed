"""The outer optimizer: torch's Nesterov SGD bit for bit, averaging at lr 1 / momentum 0,
state that resumes identically, settings refused with one clear line."""

from __future__ import annotations

import pytest
import torch

from phalanx.errors import UsageError
from phalanx.sites.outer_optimizer import OuterOptimizer, OuterSettings


def _tensors(seed: int, dtype: torch.dtype = torch.float64) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=generator, dtype=dtype) for shape in [(3, 4), (5,), ()]]


@pytest.mark.parametrize("nesterov", [True, False])
def test_equals_torch_sgd_bit_for_bit_in_float64(nesterov: bool) -> None:
    anchor = _tensors(0)
    settings = OuterSettings(lr=0.7, momentum=0.9, nesterov=nesterov)
    outer = OuterOptimizer(anchor, settings)
    reference = [t.clone().requires_grad_() for t in anchor]
    sgd = torch.optim.SGD(reference, lr=0.7, momentum=0.9, nesterov=nesterov, foreach=False)
    for round_index in range(6):
        gradient = _tensors(100 + round_index)
        new_anchor = outer.step(gradient)
        for param, g in zip(reference, gradient):
            param.grad = g.clone()
        sgd.step()
        for ours, theirs in zip(new_anchor, reference):
            assert torch.equal(ours, theirs.detach())


def test_nesterov_differs_from_plain_momentum() -> None:
    anchor = _tensors(0)
    gradients = [_tensors(10), _tensors(11)]
    with_nesterov = OuterOptimizer(anchor, OuterSettings(0.7, 0.9, True))
    plain = OuterOptimizer(anchor, OuterSettings(0.7, 0.9, False))
    for g in gradients:
        a = with_nesterov.step(g)
        b = plain.step(g)
    assert not torch.equal(a[0], b[0])


def test_lr_one_momentum_zero_is_averaging() -> None:
    anchor = _tensors(0)
    site_params = [_tensors(1), _tensors(2)]
    weights = [0.25, 0.75]
    pseudo = [
        weights[0] * (a - p0) + weights[1] * (a - p1)
        for a, p0, p1 in zip(anchor, site_params[0], site_params[1])
    ]
    new_anchor = OuterOptimizer(anchor, OuterSettings(lr=1.0, momentum=0.0)).step(pseudo)
    average = [weights[0] * p0 + weights[1] * p1 for p0, p1 in zip(*site_params)]
    for ours, expected in zip(new_anchor, average):
        assert torch.allclose(ours, expected, rtol=0, atol=1e-14)


def test_same_inputs_same_bits_and_the_anchor_is_not_aliased() -> None:
    anchor = _tensors(0)
    runs = []
    for _ in range(2):
        outer = OuterOptimizer(anchor, OuterSettings())
        for r in range(4):
            result = outer.step(_tensors(20 + r))
        runs.append(result)
    assert all(torch.equal(a, b) for a, b in zip(*runs))
    result[0].add_(1.0)  # the caller copies it into its model and trains on
    assert not torch.equal(result[0], outer.anchor[0])
    assert torch.equal(anchor[0], _tensors(0)[0])  # the caller's anchor was copied, not moved


def test_state_dict_resumes_identically() -> None:
    outer = OuterOptimizer(_tensors(0), OuterSettings(lr=0.5, momentum=0.8))
    for r in range(3):
        outer.step(_tensors(30 + r))
    healed = OuterOptimizer(_tensors(99), OuterSettings())  # another anchor and settings
    healed.load_state_dict(outer.state_dict())
    assert healed.rounds == 3 and healed.settings == outer.settings
    a = outer.step(_tensors(40))
    b = healed.step(_tensors(40))
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_state_dict_of_another_model_is_refused() -> None:
    outer = OuterOptimizer(_tensors(0), OuterSettings())
    other = OuterOptimizer([torch.zeros(2, dtype=torch.float64)], OuterSettings())
    with pytest.raises(ValueError, match="anchor"):
        outer.load_state_dict(other.state_dict())


def test_pseudo_gradient_of_another_shape_is_refused() -> None:
    outer = OuterOptimizer(_tensors(0), OuterSettings())
    with pytest.raises(ValueError, match="tensor 0"):
        outer.step([torch.zeros(4, 3, dtype=torch.float64), *_tensors(1)[1:]])


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"lr": 0.0}, "outer_lr"),
        ({"lr": -1.0}, "outer_lr"),
        ({"momentum": 1.0}, "outer_momentum"),
        ({"momentum": -0.1}, "outer_momentum"),
        ({"momentum": True}, "outer_momentum"),
    ],
)
def test_bad_settings_name_the_field_and_the_fix(kwargs: dict[str, float], field: str) -> None:
    with pytest.raises(UsageError) as err:
        OuterSettings(**kwargs)
    assert err.value.field == field
    assert "Fix:" in str(err.value) and "\n" not in str(err.value)
