"""The chip-by-chip layout planner (plan/layout.py): groups only where memory demands them."""

from __future__ import annotations

import pytest

from phalanx.errors import UsageError
from phalanx.plan.layout import Chip, ModelNeeds, hosted_ranks, plan_layout

# The float64 MLP of tests/dist/test_groups.py as profile mode measures it.
MLP = ModelNeeds("mlp", 667_680, 166_920, 0, 3_344, 48, 1000.0)
KB = 1000


def _chips(*specs: tuple[float, int]) -> list[Chip]:
    return [Chip(f"c{i}", speed, mem) for i, (speed, mem) in enumerate(specs)]


def _shape(layout) -> list[list[tuple[str, int]]]:
    return [[(p.chip.id, p.ranks) for p in r.chips] for r in layout.replicas]


def test_chips_too_small_alone_form_groups_whose_ranks_follow_memory():
    layout = plan_layout(_chips((1, 800 * KB), *[(1, 400 * KB)] * 4), MLP)
    assert layout.ranks_per_group == 3
    assert _shape(layout) == [[("c0", 2), ("c4", 1)], [("c1", 1), ("c3", 1), ("c2", 1)]]
    assert layout.left_out == ()
    for replica in layout.replicas:
        for placed in replica.chips:  # every chip holds its ranks with the planned micro-batch
            assert placed.micro_batch >= 1
            assert placed.need_bytes(MLP, 3) <= placed.chip.memory_bytes
    assert layout.speed == pytest.approx(1.5 + 3.0)
    assert layout.predicted_samples_per_s == pytest.approx(4500.0)


def test_chips_that_hold_the_model_alone_train_alone():
    layout = plan_layout(_chips((1, 2_000 * KB), (0.5, 1_000 * KB)), MLP)
    assert layout.ranks_per_group == 1
    assert _shape(layout) == [[("c0", 1)], [("c1", 1)]]


def test_ranks_go_to_the_faster_chip_within_what_its_memory_allows():
    # Two chips that each hold two of four ranks' worth; the fast one takes them.
    layout = plan_layout(_chips((1, 600 * KB), (0.25, 600 * KB), (1, 250 * KB)), MLP)
    for replica in layout.replicas:
        for placed in replica.chips:
            assert placed.ranks <= hosted_ranks(placed.chip, MLP, layout.ranks_per_group)
    fast, slow = layout.replicas[0].chips[0], layout.replicas[0].chips[1]
    assert fast.chip.speed > slow.chip.speed and fast.ranks >= slow.ranks


def test_a_chip_too_small_for_any_rank_is_left_out_with_the_reason():
    layout = plan_layout(_chips((1, 800 * KB), *[(1, 400 * KB)] * 4, (1, 50 * KB)), MLP)
    assert [c.id for c, _ in layout.left_out] == ["c5"]
    assert "holds no rank" in layout.left_out[0][1]


def test_no_layout_is_one_usage_error_naming_the_need():
    with pytest.raises(UsageError) as err:
        plan_layout(_chips((1, 100 * KB), (1, 100 * KB)), MLP)
    assert err.value.field == "--emulate" and "no layout" in err.value.problem
