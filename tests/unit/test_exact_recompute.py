"""Keyed dropout under activation checkpointing: the recompute draws the forward's masks."""

from __future__ import annotations

import threading

import pytest
import torch
from torch.utils.checkpoint import checkpoint

from phalanx.exact import keys as published_keys
from phalanx.exact.keys import sample_keys
from phalanx.exact.layer_stats import LayerStatsSync
from phalanx.exact.recompute import install
from phalanx.exact.setup import make_exact

CPU = torch.device("cpu")
install()  # as make_exact(exact=True) does


class Net(torch.nn.Module):
    """One dropout module used three times (before, inside and after the segment)."""

    def __init__(self, checkpointed: bool | None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.inner = torch.nn.Linear(12, 12)
        self.outer = torch.nn.Linear(12, 3)
        self.drop = torch.nn.Dropout(0.5)
        self.checkpointed = checkpointed  # None: no checkpoint; else use_reentrant
        make_exact(self, True, None, LayerStatsSync(allreduce=lambda tensor: None))

    def segment(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(torch.tanh(self.inner(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(x)
        if self.checkpointed is None:
            x = self.segment(x)
        else:
            x = checkpoint(self.segment, x, use_reentrant=self.checkpointed)
        return self.outer(self.drop(x)).pow(2).mean()


def _gradients(net: Net, backward_outside_keys: bool = False) -> list[torch.Tensor]:
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(3), requires_grad=True)
    with sample_keys(seed=7, start=40, count=5, device=CPU):
        loss = net(x)
        if not backward_outside_keys:
            loss.backward()
    if backward_outside_keys:  # a user's own loop: backward after the forward's keys
        loss.backward()
    return [p.grad.clone() for p in net.parameters()]


@pytest.mark.parametrize("reentrant", [False, True])
def test_a_checkpointed_segment_gets_the_gradient_of_the_masks_it_was_run_with(reentrant):
    plain = _gradients(Net(None))
    assert all(g.abs().sum() > 0 for g in plain)
    assert all(torch.equal(a, b) for a, b in zip(plain, _gradients(Net(reentrant))))


def test_a_recompute_outside_the_keys_uses_the_forwards_keys_and_leaves_none_behind():
    plain = _gradients(Net(None))
    assert all(torch.equal(a, b) for a, b in zip(plain, _gradients(Net(False), True)))
    assert published_keys.current() is None


def test_a_backward_on_another_thread_recomputes_with_the_forwards_masks():
    plain = _gradients(Net(None))
    net = Net(False)
    x = torch.randn(5, 12, generator=torch.Generator().manual_seed(3), requires_grad=True)
    with sample_keys(seed=7, start=40, count=5, device=CPU):
        loss = net(x)
    worker = threading.Thread(target=loss.backward)  # as a device's autograd thread
    worker.start()
    worker.join(30)
    assert all(torch.equal(a, p.grad) for a, p in zip(plain, net.parameters()))


def test_states_made_elsewhere_still_set_the_generator_and_publish_nothing():
    torch.manual_seed(5)
    state = torch.get_rng_state()
    first = torch.rand(3)
    torch.set_rng_state(state)
    assert torch.equal(torch.rand(3), first)
    assert published_keys.current() is None
    torch.set_rng_state(torch.ByteTensor(state.clone()))  # a copy: no keys ride along
    assert published_keys.current() is None


def test_a_state_read_during_a_forward_pickles_as_a_plain_tensor(tmp_path):
    """Users save torch.get_rng_state() in checkpoints, loaded with weights_only=True."""
    with sample_keys(seed=7, start=0, count=2, device=CPU):
        state = torch.get_rng_state()
    torch.save({"rng": state}, tmp_path / "rng.pt")
    loaded = torch.load(tmp_path / "rng.pt", weights_only=True)["rng"]
    assert torch.equal(loaded, state) and not loaded.__dict__
