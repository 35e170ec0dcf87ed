"""A site's replica that missed an outer round is told apart from a corrupt one (runtime/step.py)."""

import torch

from phalanx.runtime.control import PER_PARTICIPANT, Control, ControlLayout
from phalanx.runtime.step import _behind_outer_round


def test_the_members_behind_the_newest_outer_round_are_named():
    assert _behind_outer_round(["r0", "r1", "r2"], [7.0, 8.0, 8.0]) == {"r0"}
    assert _behind_outer_round(["r0", "r1"], [3.0, 3.0]) == set()
    assert _behind_outer_round(["r0", "r1", "r2"], [2.0, 1.0, 1.0]) == {"r1", "r2"}


def test_each_participant_s_outer_round_rides_in_the_control_block():

    assert "outer_round" in PER_PARTICIPANT
    layout = ControlLayout(participants=3, fingerprint_width=0, buffer_numel=0)
    blocks = []
    for slot, open_round in enumerate((5, 6, 6)):  # each writes its own slot only
        control = Control(torch.zeros(layout.numel, dtype=torch.float64), layout)
        control.put("outer_round", slot, float(open_round))
        blocks.append(control.tensor)
    summed = Control(sum(blocks), layout)  # what the allreduce's SUM gives everyone
    assert summed.read("outer_round") == [5.0, 6.0, 6.0]
    assert _behind_outer_round(["a", "b", "c"], summed.read("outer_round")) == {"a"}
