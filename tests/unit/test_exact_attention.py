"""F.dropout and attention dropout keyed by sample (exact/functional_dropout.py)."""

from __future__ import annotations

import itertools
import types

import pytest
import torch
import torch.nn.functional as F

from phalanx.emulate.memory import ChipMemory
from phalanx.exact import functional_dropout
from phalanx.exact.functional_dropout import SITES, _by_definition
from phalanx.exact.keys import sample_keys
from phalanx.exact.layer_stats import LayerStatsSync
from phalanx.exact.setup import learn_dropout_layouts, make_exact
from phalanx.runtime.memory_probe import probe_activations

CPU = torch.device("cpu")
functional_dropout.install()


def _by_slices(run, data: torch.Tensor, cuts: list[int], dim: int = 0) -> torch.Tensor:
    parts = []
    for start, end in itertools.pairwise(cuts):
        with sample_keys(seed=4, start=start, count=end - start, device=CPU):
            parts.append(run(data.narrow(dim, start, end - start)))
    return torch.cat(parts, dim=dim)


def test_functional_dropout_follows_the_sample_and_is_pytorchs_own_outside_the_keys():
    x = torch.ones(6, 10, dtype=torch.float64)
    whole = _by_slices(lambda t: F.dropout(t, 0.4), x, [0, 6])
    assert torch.equal(whole, _by_slices(lambda t: F.dropout(t, 0.4), x, [0, 2, 3, 6]))
    assert not torch.equal(whole[0], whole[1])
    assert torch.equal(F.dropout(x, 0.4, training=False), x)
    torch.manual_seed(1)
    first = F.dropout(x, 0.4)
    torch.manual_seed(1)
    assert torch.equal(F.dropout(x, 0.4), first)  # torch's stream: no keys published
    y = x.clone()
    with sample_keys(seed=4, start=0, count=6, device=CPU):
        assert F.dropout(y, 0.4, inplace=True) is y
    assert torch.equal(y, whole)


@pytest.mark.parametrize(
    "mask,causal,gqa",
    [(None, False, False), (None, True, False), ("bool", False, False), ("float", False, True)],
)
def test_attention_by_definition_is_the_kernels_when_nothing_is_dropped(
    monkeypatch, mask, causal, gqa
):
    g = torch.Generator().manual_seed(0)
    q = torch.randn(3, 4, 5, 8, generator=g, dtype=torch.float64)
    k = torch.randn(3, 2 if gqa else 4, 7 if not causal else 5, 8, generator=g, dtype=torch.float64)
    v = torch.randn_like(k)
    attn_mask = None
    if mask == "bool":
        attn_mask = torch.rand(5, 7, generator=g) > 0.3
        attn_mask[:, 0] = True  # no row without a key
    elif mask == "float":
        attn_mask = torch.randn(5, 7, generator=g, dtype=torch.float64)
    monkeypatch.setattr(functional_dropout, "dropped_by_sample", lambda site, w, *a: w)
    with sample_keys(seed=0, start=0, count=3, device=CPU):
        ours = _by_definition(q, k, v, attn_mask, 0.1, causal, None, gqa)
    kernel = functional_dropout_original()(q, k, v, attn_mask, 0.0, causal, enable_gqa=gqa)
    assert ours is not None and torch.allclose(ours, kernel, atol=1e-12)


def functional_dropout_original():
    return torch._C._nn.scaled_dot_product_attention


def test_attention_dropout_follows_the_sample():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(6, 2, 4, 8, generator=g, dtype=torch.float64) for _ in range(3))

    def attend(rows: torch.Tensor) -> torch.Tensor:
        return F.scaled_dot_product_attention(rows, rows, rows, dropout_p=0.3, is_causal=True)

    whole = _by_slices(attend, q, [0, 6])
    assert torch.equal(whole, _by_slices(attend, q, [0, 1, 4, 6]))
    with sample_keys(seed=4, start=0, count=6, device=CPU):
        without = F.scaled_dot_product_attention(q, k, v)  # no dropout: the kernel
    assert torch.allclose(without, torch._C._nn.scaled_dot_product_attention(q, k, v))


@pytest.mark.parametrize("need_weights", [True, False])
def test_pytorchs_sequence_first_transformer_layers_are_exact(need_weights):
    torch.manual_seed(0)
    layer = torch.nn.TransformerEncoderLayer(16, 2, 32, dropout=0.2).double()  # (L, B, E)
    attention = torch.nn.MultiheadAttention(16, 2, dropout=0.3).double()
    model = torch.nn.ModuleDict({"layer": layer, "attention": attention})
    found = make_exact(model, True, None, LayerStatsSync(allreduce=lambda tensor: None))
    length = 6  # a multiple of the slices' sample counts below

    def run(x: torch.Tensor) -> torch.Tensor:  # x: (length, batch, 16)
        h = layer(x)
        return attention(h, h, h, need_weights=need_weights)[0]

    def forward_of(count: int):
        return lambda: run(torch.ones(length, count, 16, dtype=torch.float64))

    assert (
        learn_dropout_layouts(model, {**found.keyed_modules, **SITES}, forward_of, (2, 3), 4)
        is None
    )
    x = torch.randn(length, 6, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    whole = _by_slices(run, x, [0, 6], dim=1)
    assert torch.allclose(whole, _by_slices(run, x, [0, 2, 3, 6], dim=1), atol=1e-12)
    with sample_keys(seed=5, start=0, count=6, device=CPU):
        assert not torch.allclose(run(x), whole)  # another run seed: other masks


class _Attention(torch.nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.proj = torch.nn.Linear(8, 24)
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q, k, v = self.proj(x).unsqueeze(1).chunk(3, dim=-1)  # (batch, 1 head, length, 8)
        return F.scaled_dot_product_attention(q, k, v, dropout_p=self.p, is_causal=True)


class _Feed:
    num_samples = 4

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def read_now(self, start: int, end: int, whole: bool = False) -> list:
        return [types.SimpleNamespace(batch=self.x[start:end])]


def _activation_bytes_per_sample(p: float) -> int:
    model = _Attention(p)
    work = types.SimpleNamespace(
        model=model, loss_fn=lambda m, x: m(x).sum(), device=CPU, seed=0,
        feed=_Feed(torch.randn(4, 32, 8)),
    )  # fmt: skip
    memory = ChipMemory("r0", 1 << 30, model, torch.optim.SGD(model.parameters()))
    probe_activations(memory, work)
    return memory.per_sample_bytes


def _keyed_training_bytes_per_sample(p: float) -> int:
    model = _Attention(p)
    memory = ChipMemory("r0", 1 << 30, model, torch.optim.SGD(model.parameters()))
    x, held = torch.randn(2, 32, 8), []
    for n in (1, 2):
        with sample_keys(0, 0, n, CPU), torch.enable_grad(), memory.counting() as saved:
            model(x[:n]).sum()
        held.append(saved[0])
    return held[1] - held[0]


def test_the_memory_probe_measures_the_attention_training_runs():
    """An emulated chip's cap is set from the probe: it must see keyed attention (its
    weights held for backward), not PyTorch's kernel (on a GPU the fused kernel holds
    no weights at all; on this CPU its math path held 17,408 bytes a sample, 15,360 keyed)."""
    for p in (0.0, 0.2):
        assert _activation_bytes_per_sample(p) == _keyed_training_bytes_per_sample(p)
    assert _keyed_training_bytes_per_sample(0.2) > _keyed_training_bytes_per_sample(0.0)


def test_arguments_the_definition_does_not_know_go_to_the_kernel(monkeypatch):
    q = torch.randn(2, 1, 3, 4)
    seen = []
    monkeypatch.setattr(
        functional_dropout,
        "_by_definition",
        lambda *a, **k: seen.append(k) or _by_definition(*a, **k),
    )
    with sample_keys(seed=0, start=0, count=2, device=CPU), pytest.raises(TypeError):
        F.scaled_dot_product_attention(q, q, q, dropout_p=0.5, future_option=True)
    assert seen == [{"dropout_p": 0.5, "future_option": True}]  # tried, then torch's own
