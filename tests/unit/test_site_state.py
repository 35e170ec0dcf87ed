"""A site's state travels with the training state: heals (state_dict) and checkpoints."""

from __future__ import annotations

import pytest
import torch

from phalanx.runtime.checkpoint import CheckpointError, load_newest, save_checkpoint
from phalanx.runtime.state import TrainState
from phalanx.sites.run_settings import SiteRunSettings
from phalanx.sites.site_state import SiteState


def _state(seed: int) -> tuple[TrainState, SiteState]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 2).double()
    state = TrainState(model, torch.optim.SGD(model.parameters(), lr=0.1), None)
    settings = SiteRunSettings("b", ("a", "b"), "127.0.0.1:1", 5, compression="int8")
    site = SiteState(settings, list(model.parameters()), steps=23)
    state.extra["site"] = site
    return state, site


def _advance(site: SiteState) -> None:
    site.open = site.open.next((3, 2))
    site.round_start_step = 5
    site.counted_through = [5, 5]
    site.step_times_s = [0.1, None]
    site.feedback.encode([torch.randn(8, dtype=torch.float64), torch.randn(2, dtype=torch.float64)])
    site.pending = [torch.ones(2, 4, dtype=torch.float64), torch.ones(2, dtype=torch.float64)]
    site.pending_samples = 64
    site.outer.step([torch.full_like(a, 0.5) for a in site.outer.anchor])


def _same(a: SiteState, b: SiteState) -> None:
    assert a.outer_state_dict()["round"] == b.outer_state_dict()["round"]
    assert a.open == b.open and a.step_times_s == b.step_times_s
    assert a.counted_through == b.counted_through and a.round_start_step == b.round_start_step
    assert a.pending_samples == b.pending_samples
    for x, y in zip(a.outer.anchor + a.pending + a.feedback.residuals,
                    b.outer.anchor + b.pending + b.feedback.residuals):  # fmt: skip
        assert torch.equal(x, y)


def test_a_healing_replica_gets_the_site_state_with_the_rest():
    source, site = _state(0)
    _advance(site)
    target, healed = _state(1)
    target.load_state_dict(source.state_dict())
    _same(site, healed)


def test_a_checkpoint_holds_the_site_state(tmp_path):
    source, site = _state(0)
    _advance(site)
    save_checkpoint(source, tmp_path)
    target, restored = _state(1)
    rounds_loaded = []
    restored.on_round_loaded = rounds_loaded.append
    load_newest(target, tmp_path)
    _same(site, restored)
    assert rounds_loaded == [1]  # the outer link learns the round too


def test_a_checkpoint_without_site_state_is_refused_and_changes_nothing(tmp_path):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 2).double()
    plain = TrainState(model, torch.optim.SGD(model.parameters(), lr=0.1), None)
    save_checkpoint(plain, tmp_path)
    target, _ = _state(1)
    before = [p.detach().clone() for p in target.model.parameters()]
    with pytest.raises(CheckpointError, match="holds no 'site' state"):
        load_newest(target, tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(before, target.model.parameters()))
