"""Participants that derive different shares for one step stop it (runtime/step.py)."""

from __future__ import annotations

import pytest
import torch

from phalanx.runtime.control import Control, ControlLayout, plan_code
from phalanx.runtime.step import PlanMismatch, _check_plans

MEMBERS = ["r0", "r1", "r2", "r3"]


def _summed(plans: list[float]) -> Control:
    """The control block after the SUM: each participant wrote its own plan slot."""
    layout = ControlLayout(len(MEMBERS), 0, 0)
    control = Control(torch.zeros(layout.numel, dtype=torch.float32), layout)
    for slot, plan in enumerate(plans):
        control.put("plan", slot, plan)
    return control


def test_a_plan_names_the_step_the_participants_and_their_shares() -> None:
    plan = plan_code(18, MEMBERS, [27, 15, 5, 1])
    assert plan == plan_code(18, MEMBERS, [27, 15, 5, 1])
    others = [
        plan_code(18, MEMBERS, [21, 25, 1, 1]),  # seen: two code versions in one fleet
        plan_code(19, MEMBERS, [27, 15, 5, 1]),
        plan_code(18, ["r0", "r1", "r3", "r2"], [27, 15, 5, 1]),
    ]
    assert plan not in others
    # It rides exactly in a float32 control block (as the replica kinds do).
    assert 1 <= plan <= 32768 and float(torch.tensor(plan, dtype=torch.float32)) == plan


def test_replicas_that_agree_go_on_and_any_disagreement_stops_the_step() -> None:
    mine = plan_code(18, MEMBERS, [27, 15, 5, 1])
    _check_plans(_summed([mine] * 4), MEMBERS, mine, 18)
    theirs = plan_code(18, MEMBERS, [21, 25, 1, 1])
    with pytest.raises(PlanMismatch, match=r"step 18: r1, r2 derived other shares"):
        _check_plans(_summed([mine, theirs, theirs, mine]), MEMBERS, mine, 18)
