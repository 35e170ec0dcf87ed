"""Site sub-streams: disjoint whatever the counts, accounted exactly, close to a prefix."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.sites.streams import StreamPlan, account, first_layout, layouts, position_range


@st.composite
def plans_and_histories(draw: st.DrawFn) -> tuple[StreamPlan, list[list[int]]]:
    outer_every = draw(st.integers(1, 6))
    sites = draw(st.integers(1, 4))
    batches = tuple(draw(st.lists(st.integers(1, 5), min_size=sites, max_size=sites)))
    rounds = draw(st.integers(0, 6))
    history = draw(
        st.lists(
            st.lists(st.integers(0, outer_every), min_size=sites, max_size=sites),
            min_size=rounds,
            max_size=rounds,
        )
    )
    return StreamPlan(outer_every, batches), history


def _every_step(plan: StreamPlan, history: list[list[int]]) -> list[tuple[int, int, int, int]]:
    """(site, inner step over the run, start, end) for every inner step of the recorded rounds."""
    steps = []
    for site in range(plan.sites):
        done = sum(counts[site] for counts in history)
        for step in range(done):
            steps.append((site, step, *position_range(plan, history, site, step)))
    return steps


@settings(max_examples=200, deadline=None)
@given(plans_and_histories())
def test_no_position_is_handed_out_twice(case: tuple[StreamPlan, list[list[int]]]) -> None:
    plan, history = case
    steps = _every_step(plan, history)
    covered: set[int] = set()
    for site, _, start, end in steps:
        assert end - start == plan.batch_sizes[site]
        chunk = set(range(start, end))
        assert not covered & chunk
        covered |= chunk
    # The accounting agrees with the steps themselves: used + skipped tile [0, end).
    accounting = account(plan, history)
    used = {p for s, e in accounting.used for p in range(s, e)}
    skipped = {p for s, e in accounting.skipped for p in range(s, e)}
    assert used == covered
    assert not used & skipped
    assert used | skipped == set(range(accounting.end))
    expected = sum(n * plan.batch_sizes[i] for counts in history for i, n in enumerate(counts))
    assert accounting.used_samples == expected


@settings(max_examples=100, deadline=None)
@given(plans_and_histories())
def test_the_open_round_starts_after_everything_used(
    case: tuple[StreamPlan, list[list[int]]],
) -> None:
    plan, history = case
    open_round = layouts(plan, history)[-1]
    highest = max((end for *_, end in _every_step(plan, history)), default=0)
    # Not only after: right after. Nothing beyond the last used position is skipped.
    assert open_round.base == account(plan, history).end == highest
    for site in range(plan.sites):
        start, _ = open_round.step_range(site, 0)
        assert start >= highest


def test_two_sites_of_different_speeds_skip_nothing() -> None:
    # Site 0 twice as fast: 4 steps per round against 2, 8 samples per step each.
    plan = StreamPlan(outer_every=4, batch_sizes=(8, 8))
    history = [[4, 2]] * 5
    accounting = account(plan, history)
    assert accounting.skipped == () and accounting.used == ((0, 5 * 48),)


def test_slow_site_listed_first_wastes_only_round_zero_then_goes_last() -> None:
    plan = StreamPlan(outer_every=4, batch_sizes=(8, 8))
    history = [[2, 4], [2, 4], [2, 4]]
    first, second, *_ = layouts(plan, history)
    assert first.order == (0, 1) and second.order == (1, 0)
    accounting = account(plan, history)
    assert accounting.skipped == ((16, 32),)  # site 0's unused half-block of round 0
    assert accounting.skipped_samples == 16


def test_step_numbers_are_global_steps_when_batches_are_equal() -> None:
    plan = StreamPlan(outer_every=3, batch_sizes=(4, 4, 4))
    history = [[3, 3, 1], [3, 2, 2]]
    for _, _, start, end in _every_step(plan, history):
        assert start % 4 == 0 and end - start == 4


def test_a_step_beyond_h_in_the_open_round_is_refused() -> None:
    plan = StreamPlan(outer_every=2, batch_sizes=(1, 1))
    assert position_range(plan, [], 1, 1) == (3, 4)
    with pytest.raises(ValueError, match="beyond"):
        position_range(plan, [], 1, 2)


def test_counts_above_h_or_of_the_wrong_length_are_refused() -> None:
    layout = first_layout(StreamPlan(outer_every=2, batch_sizes=(1, 1)))
    with pytest.raises(ValueError, match="one per site"):
        layout.next_layout([3, 1])
    with pytest.raises(ValueError, match="one per site"):
        layout.next_layout([1])


def test_bad_plans_are_refused() -> None:
    with pytest.raises(ValueError, match="outer_every"):
        StreamPlan(0, (1,))
    with pytest.raises(ValueError, match="batch"):
        StreamPlan(1, (1, 0))
