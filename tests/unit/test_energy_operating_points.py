"""Operating points: which devices train and at what power limit, per objective."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.devices.config import PowerCurve
from phalanx.energy.operating_points import (
    DeviceEnergyModel,
    NoFeasibleChoice,
    _options,
    choose_operating_points,
)

NEW = PowerCurve(idle_w=60, max_w=300)
OLD = PowerCurve(idle_w=50, max_w=300)
FLEET = [
    DeviceEnergyModel("new-0", 1.0, NEW),
    DeviceEnergyModel("new-1", 1.0, NEW),
    DeviceEnergyModel("old-0", 0.35, OLD),
    DeviceEnergyModel("old-1", 0.35, OLD),
]


def test_time_runs_every_device_at_full_power():
    choice = choose_operating_points(FLEET, "time")
    assert all(p.train and p.limit_w is None for p in choice.points)
    assert choice.work_rate == pytest.approx(2.7)
    assert choice.power_w == pytest.approx(1200)


def test_energy_cuts_joules_per_sample_within_the_slowdown_allowed():
    choice = choose_operating_points(FLEET, "energy", max_slowdown=0.10)
    assert choice.slowdown <= 0.10 + 1e-12
    assert choice.j_per_work <= 0.8 * choice.full_j_per_work
    # The inefficient old chips are the first to be capped.
    limits = {p.device_id: p.limit_w for p in choice.points}
    assert limits["old-0"] is not None and limits["old-0"] <= 200


def test_a_tighter_slowdown_allowance_saves_less():
    loose = choose_operating_points(FLEET, "energy", max_slowdown=0.10)
    tight = choose_operating_points(FLEET, "energy", max_slowdown=0.02)
    assert tight.slowdown <= 0.02 + 1e-12
    assert tight.j_per_work >= loose.j_per_work


def test_energy_weight_trades_energy_for_time():
    pure = choose_operating_points(FLEET, "energy", max_slowdown=0.5, energy_weight=1.0)
    mixed = choose_operating_points(FLEET, "energy", max_slowdown=0.5, energy_weight=0.3)
    assert mixed.work_rate >= pure.work_rate
    assert mixed.j_per_work >= pure.j_per_work


def test_budget_is_never_exceeded_and_is_used():
    choice = choose_operating_points(FLEET, "time", power_budget_w=700)
    assert choice.power_w <= 700
    assert choice.power_w >= 650  # the top-up pass spends what is left
    assert choice.work_rate > 2.0


def test_without_limit_control_the_budget_picks_devices():
    fixed = PowerCurve(idle_w=50, max_w=300, limit_control=False)
    fleet = [DeviceEnergyModel(f"d{i}", s, fixed) for i, s in enumerate((1.0, 0.8, 0.3))]
    choice = choose_operating_points(fleet, "time", power_budget_w=650)
    assert [p.train for p in choice.points] == [True, True, False]
    assert all(p.limit_w is None for p in choice.points)


def test_impossible_budget_says_how_close_it_got():
    with pytest.raises(NoFeasibleChoice, match="150 W"):
        choose_operating_points(FLEET, "time", power_budget_w=100)


def test_cost_needs_a_tariff_and_values_time():
    with pytest.raises(ValueError, match="tariff"):
        choose_operating_points(FLEET, "cost")
    cheap_time = choose_operating_points(FLEET, "cost", tariff_per_kwh=0.1, fleet_cost_per_h=0)
    dear_time = choose_operating_points(FLEET, "cost", tariff_per_kwh=0.1, fleet_cost_per_h=50)
    assert dear_time.work_rate >= cheap_time.work_rate
    assert dear_time.work_rate == pytest.approx(2.7)  # an expensive hour: everything at full


curves = st.builds(
    lambda idle, extra, control: PowerCurve(idle_w=idle, max_w=idle + extra, limit_control=control),
    st.floats(10, 100),
    st.floats(50, 600),
    st.booleans(),
)
fleets = st.lists(
    st.builds(DeviceEnergyModel, st.uuids().map(str), st.floats(0.05, 2.0), curves),
    min_size=1,
    max_size=6,
)


@settings(max_examples=60)
@given(fleets, st.floats(100, 3000), st.sampled_from(["time", "energy"]))
def test_any_fleet_any_budget_stays_under_it(fleet, budget_w, objective):
    try:
        choice = choose_operating_points(fleet, objective, power_budget_w=budget_w)
    except NoFeasibleChoice:
        # Refusing is right only when no single device fits at its lowest setting.
        lowest_w = min(o.power_w for d in fleet for o in _options(d) if o.train)
        assert lowest_w > budget_w
        return
    assert choice.power_w <= budget_w + 1e-6
    assert choice.work_rate > 0


@settings(max_examples=60)
@given(fleets, st.floats(0.0, 0.5))
def test_energy_never_slows_more_than_allowed_and_never_costs_more(fleet, max_slowdown):
    choice = choose_operating_points(fleet, "energy", max_slowdown=max_slowdown)
    assert choice.slowdown <= max_slowdown + 1e-9
    assert choice.j_per_work <= choice.full_j_per_work + 1e-9
