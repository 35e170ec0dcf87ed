"""Layers made independent of the split: keyed dropout, global-batch BatchNorm (exact/)."""

import torch

from phalanx.exact.keyed_dropout import make_keyed
from phalanx.exact.keys import sample_keys
from phalanx.exact.layer_stats import LayerStatsSync
from phalanx.exact.setup import make_exact, randomness_outside_layers

CPU = torch.device("cpu")


def _no_fleet() -> LayerStatsSync:
    return LayerStatsSync(allreduce=lambda tensor: None)  # one process: local sums are global


def test_keyed_dropout_mask_follows_the_sample_not_the_split():
    layer = torch.nn.Dropout(0.3)
    make_keyed(layer, layer_id=5)
    x = torch.ones(6, 40, dtype=torch.float64)
    with sample_keys(seed=1, start=100, count=6, device=CPU):
        whole = layer(x)
    with sample_keys(seed=1, start=100, count=2, device=CPU):
        first = layer(x[:2])
    with sample_keys(seed=1, start=102, count=4, device=CPU):
        rest = layer(x[2:])
    assert torch.equal(whole, torch.cat([first, rest]))
    kept = float((whole != 0).double().mean())
    assert 0.55 < kept < 0.85  # p = 0.3
    assert not torch.equal(whole[0], whole[1])  # each sample its own mask
    with sample_keys(seed=2, start=100, count=6, device=CPU):
        assert not torch.equal(layer(x), whole)  # another run seed, other masks
    layer.eval()
    assert torch.equal(layer(x), x)


def test_keyed_dropout_with_heads_folded_into_the_batch():
    layer = torch.nn.Dropout(0.5)
    make_keyed(layer, layer_id=0)
    x = torch.ones(3 * 4, 8)  # 3 samples x 4 heads, batch-major
    with sample_keys(seed=0, start=0, count=3, device=CPU):
        whole = layer(x)
    with sample_keys(seed=0, start=1, count=2, device=CPU):
        tail = layer(x[4:])
    assert torch.equal(whole[4:], tail)


def test_global_batchnorm_matches_pytorch_on_the_whole_batch():
    torch.manual_seed(0)
    reference = torch.nn.BatchNorm2d(3).double()
    patched = torch.nn.BatchNorm2d(3).double()
    stats = _no_fleet()
    make_exact(patched, exact=True, max_microbatch=None, stats=stats)
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64) * 3 + 1
    x_ref, x_new = x.clone().requires_grad_(), x.clone().requires_grad_()
    weights = torch.randn_like(x)
    (reference(x_ref) * weights).sum().backward()
    with stats.live():
        (patched(x_new) * weights).sum().backward()
    assert torch.allclose(x_ref.grad, x_new.grad, atol=1e-12)
    assert torch.allclose(reference.weight.grad, patched.weight.grad, atol=1e-12)
    assert torch.allclose(reference.running_var, patched.running_var, atol=1e-14)
    assert torch.equal(reference.num_batches_tracked, patched.num_batches_tracked)
    # Forward and backward each reduced one tensor, in order: what a phantom replays.
    assert [(e.phase, e.numel) for e in stats.trace] == [("forward", 7), ("backward", 6)]


def test_a_participant_without_samples_issues_the_same_collectives_with_zeros():
    issued = []
    stats = LayerStatsSync(allreduce=lambda tensor: issued.append(tensor.clone()))
    model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.BatchNorm1d(6)).double()
    make_exact(model, exact=True, max_microbatch=None, stats=stats)
    with stats.live():
        model(torch.randn(3, 4, dtype=torch.float64)).sum().backward()
    live = [t.numel() for t in issued]
    issued.clear()
    with stats.phantom():
        pass
    assert [t.numel() for t in issued] == live and all(float(t.abs().sum()) == 0 for t in issued)
    # A recomputation reuses the recorded sums: no collective at all.
    issued.clear()
    with stats.replay():
        model(torch.randn(3, 4, dtype=torch.float64)).sum().backward()
    assert issued == []


def test_inexact_layers_are_named_once_per_kind():
    model = torch.nn.Sequential(
        torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Dropout(0.1),
        torch.nn.AlphaDropout(0.1), torch.nn.BatchNorm1d(4),
    )  # fmt: skip
    found = make_exact(model, exact=False, max_microbatch=None, stats=_no_fleet())
    assert len(found.warnings) == 3
    assert "1 (BatchNorm1d), 4 (BatchNorm1d) normalise each replica's slice" in found.warnings[0]
    assert "2 (Dropout) draws masks" in found.warnings[1]
    assert "3 (AlphaDropout) is not keyed" in found.warnings[2]
    micro = make_exact(torch.nn.BatchNorm1d(4), exact=True, max_microbatch=8, stats=_no_fleet())
    assert "each micro-batch of 8" in micro.warnings[0] and not micro.global_batchnorms


def test_random_numbers_outside_dropout_modules_are_detected():
    class Noisy(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(4, 1)

        def forward(self, x):
            return self.linear(x) * torch.rand(x.shape[0], 1)  # random, but no dropout

    model = Noisy()
    x = torch.randn(2, 4)
    warning = randomness_outside_layers(model, lambda: model(x).sum(), samples=2, seed=0)
    assert warning is not None and "random numbers outside dropout" in warning
    clean = torch.nn.Sequential(torch.nn.Linear(4, 1), torch.nn.Dropout(0.5))
    make_exact(clean, exact=True, max_microbatch=None, stats=_no_fleet())
    assert randomness_outside_layers(clean, lambda: clean(x).sum(), samples=2, seed=0) is None
