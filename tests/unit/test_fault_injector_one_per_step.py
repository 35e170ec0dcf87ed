"""Corruptions that waited for the same step fire one per step, never stacked on one value."""

import math

import torch

from phalanx.faults.injector import FaultInjector
from phalanx.faults.spec import parse_faults
from phalanx.observe.events import EventLog, read_events


def _injector(tmp_path, specs):
    return FaultInjector(parse_faults(specs, 3), tmp_path, EventLog(tmp_path, source="r2"))


def test_a_nan_and_a_flip_that_waited_fire_on_two_steps(tmp_path):
    # Chaos schedule 36 of seed 1: r2 was away at steps 12 and 13, came back at 21, and
    # both fired there on the same element: the flip turned the NaN into 1.5 and the step
    # committed a plausible wrong gradient that no check could see.
    injector = _injector(tmp_path, ["nan:replica=2,step=12", "sdc:replica=2,step=13,target=grad"])
    fired = []
    for step in (21, 22, 23):
        param = torch.nn.Parameter(torch.ones(4, dtype=torch.float64))
        param.grad = torch.full((4,), 0.25, dtype=torch.float64)
        assert injector.gradient_fault_due(step) == (step < 23)
        injector.corrupt_gradient(step, [param])
        fired.append(param.grad.clone())
    assert math.isnan(fired[0][0])  # the NaN first (planned first), alone
    assert torch.isfinite(fired[1]).all() and (fired[1] != 0.25).sum() == 1  # then the flip
    assert torch.equal(fired[2], torch.full((4,), 0.25, dtype=torch.float64))  # then nothing
    faults = [e for e in read_events(tmp_path) if e["kind"] == "fault"]
    assert [(e["fault"], e["planned_step"], e["step"]) for e in faults] == [
        ("nan", 12, 21),
        ("sdc", 13, 22),
    ]


def test_two_weight_flips_due_together_do_not_undo_each_other(tmp_path):
    injector = _injector(
        tmp_path, ["sdc:replica=2,step=3,target=weight", "sdc:replica=2,step=4,target=weight"]
    )
    param = torch.nn.Parameter(torch.full((4,), 0.5, dtype=torch.float64))
    injector.corrupt_weights(9, [param])
    after_first = param.detach().clone()
    assert (after_first != 0.5).sum() == 1  # one flip landed and stays
    injector.corrupt_weights(10, [param])  # the next step (a run heals the first in between)
    faults = [e for e in read_events(tmp_path) if e["kind"] == "fault"]
    assert [(e["planned_step"], e["step"]) for e in faults] == [(3, 9), (4, 10)]
