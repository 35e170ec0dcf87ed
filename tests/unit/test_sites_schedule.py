"""Planned counts and the positions of a sites run: no position twice, no gap."""

from __future__ import annotations

import random

import pytest

from phalanx.sites.schedule import (
    OpenRound,
    first_round,
    plan_counts,
    round_budget,
    total_rounds,
)


def test_the_fastest_site_gets_the_budget_a_half_speed_site_half():
    assert plan_counts(20, [0.1, 0.2, 0.4], [True, True, True]) == (20, 10, 5)


def test_a_site_not_counted_last_round_gets_nothing_and_a_very_slow_one_at_least_one():
    assert plan_counts(20, [0.1, 0.2, 100.0], [True, False, True]) == (20, 0, 1)


def test_without_measured_times_every_counted_site_gets_the_budget():
    assert plan_counts(7, [None, None], [True, True]) == (7, 7)
    assert plan_counts(7, [0.5, None], [True, True]) == (7, 7)


def test_rounds_and_the_last_rounds_budget():
    assert total_rounds(45, 20) == 3
    assert [round_budget(r, 45, 20) for r in range(4)] == [20, 20, 5, 0]


def test_site_blocks_tile_the_stream_whatever_the_counts():
    rng = random.Random(3)
    used: list[int] = []
    open_round = first_round(3, 200, 10)
    for _ in range(25):
        for site, count in enumerate(open_round.counts):
            used += [open_round.stream_step(site, k) for k in range(count)]
        counts = tuple(rng.choice([0, 1, 4, 10]) for _ in range(3))
        open_round = open_round.next(counts)
    assert sorted(used) == list(range(len(used)))  # each step once, no gap
    assert open_round.base_step == len(used)


def test_a_step_beyond_the_plan_is_refused():
    with pytest.raises(ValueError, match="beyond its 2 planned steps"):
        OpenRound(0, 0, (2, 3)).stream_step(0, 2)
