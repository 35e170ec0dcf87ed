"""The fleet simulator: fault-free runs match the planner, seeds replay, failures cost."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.errors import UsageError
from phalanx.plan.fleet_classes import parse_fleet
from phalanx.plan.model_profile import ModelProfile
from phalanx.plan.planner import make_plan
from phalanx.sim.engine import simulate
from phalanx.sim.events import FAIL, make_timeline
from phalanx.sim.policies import SimConfig, parse_policies

GIB = 1024**3
MODEL = ModelProfile("m", 1e8, 16, 4, 0.5 * GIB, None, 256, None)
ALL = parse_policies("phalanx,ddp-restart,phalanx-nobalance")


def _fleet(*classes: dict, **sync: float):
    tables = [{"name": f"c{i}", "memory_gib": 40, **c} for i, c in enumerate(classes)]
    return parse_fleet({"class": tables, "sync": {"overhead_s": 0.01, **sync}})


def _run(fleet, cfg: SimConfig, policies=ALL, model: ModelProfile = MODEL):
    plan = make_plan(fleet, model)
    return plan, simulate(fleet, model, plan, cfg, policies)


@settings(max_examples=25, deadline=None)
@given(
    speeds=st.lists(st.floats(0.5, 30.0), min_size=1, max_size=3),
    counts=st.lists(st.integers(1, 30), min_size=3, max_size=3),
    batch=st.integers(16, 2000),
)
def test_no_failures_reproduces_the_planner(
    speeds: list[float], counts: list[int], batch: int
) -> None:
    fleet = _fleet(
        *({"count": n, "throughput_sps": s} for s, n in zip(speeds, counts, strict=False))
    )
    model = ModelProfile("m", 1e8, 16, 4, 0.5 * GIB, None, batch, None)
    plan, res = _run(fleet, SimConfig(days=2, seed=1), model=model)
    by = {p.name: p for p in res.policies}
    assert by["phalanx"].goodput_sps == pytest.approx(plan.throughput_sps, rel=1e-9)
    assert by["phalanx"].failures == 0 and by["phalanx"].restarts == 0
    # Equal split never beats speed-weighted shares on the same chips.
    assert by["phalanx-nobalance"].goodput_sps <= plan.throughput_sps * (1 + 1e-9)
    # Fault-free, the restart baseline differs from nobalance only by its checkpoint stalls.
    keep = 2 * 86400 / (2 * 86400 + SimConfig().checkpoint_s)
    assert by["ddp-restart"].goodput_sps == pytest.approx(
        by["phalanx-nobalance"].goodput_sps * keep, rel=1e-9
    )
    assert by["phalanx"].energy_kwh == pytest.approx(plan.power_w * 2 * 86400 / 3.6e6, rel=1e-6)


def test_time_to_target_without_failures() -> None:
    fleet = _fleet({"count": 10, "throughput_sps": 8.0}, {"count": 5, "throughput_sps": 2.0})
    plan, res = _run(fleet, SimConfig(days=1, target_samples=1e6))
    ph = res.policies[0]
    assert ph.finished and ph.samples == 1e6
    assert ph.time_to_target_s == pytest.approx(1e6 / plan.throughput_sps, rel=1e-9)


FAULTY = (
    {
        "count": 40,
        "throughput_sps": 10.0,
        "mtbf_h": 200,
        "restart_s": 600,
        "throttle_per_h": 0.2,
        "throttle_speed": 0.5,
        "sdc_rate": 1e-3,
    },
    {
        "count": 60,
        "throughput_sps": 3.0,
        "mtbf_h": 100,
        "weibull_shape": 0.7,
        "restart_s": 900,
        "power_max_w": 400,
    },
)


def test_same_seed_same_result_and_seeds_differ() -> None:
    cfg = SimConfig(days=5, seed=7, target_samples=5e7)
    a = _run(_fleet(*FAULTY), cfg)[1].to_dict(with_curves=True)
    b = _run(_fleet(*FAULTY), cfg)[1].to_dict(with_curves=True)
    assert a == b
    c = _run(_fleet(*FAULTY), SimConfig(days=5, seed=8, target_samples=5e7))[1].to_dict()
    assert c["events"] != a["events"]


def test_failures_cost_more_when_the_world_restarts() -> None:
    plan, res = _run(_fleet(*FAULTY), SimConfig(days=10, seed=0))
    by = {p.name: p for p in res.policies}
    ph, ddp, nob = by["phalanx"], by["ddp-restart"], by["phalanx-nobalance"]
    assert ph.failures > 10 and ddp.restarts > 0 and ddp.lost_samples > 0
    assert ph.goodput_sps < plan.throughput_sps  # failures and throttling are not free
    assert ph.goodput_sps > nob.goodput_sps > ddp.goodput_sps
    assert ph.sdc_detected > 0 and ddp.sdc_undetected > 0 and ddp.sdc_detected == 0
    for p in res.policies:
        assert all(b >= a - 1e-6 for a, b in zip(p.curve_t_s, p.curve_t_s[1:], strict=False))
        assert min(p.curve_samples) >= 0 and p.energy_kwh > 0 and p.cost_usd > 0


def test_young_daly_interval_and_explicit_interval() -> None:
    pols = parse_policies("ddp-restart,ddp-restart:interval_s=600")
    _, res = _run(_fleet(*FAULTY), SimConfig(days=3, seed=0, checkpoint_s=60), policies=pols)
    mtbf_s = res.fleet_mtbf_h * 3600
    assert res.young_daly_interval_s == pytest.approx(math.sqrt(2 * 60 * mtbf_s))
    assert res.policies[0].checkpoint_interval_s == pytest.approx(res.young_daly_interval_s)
    assert res.policies[1].checkpoint_interval_s == 600


def test_whole_fleet_loss_falls_back_to_a_checkpoint() -> None:
    fleet = _fleet({"count": 1, "throughput_sps": 10.0, "mtbf_h": 2, "restart_s": 1800})
    _, res = _run(fleet, SimConfig(days=3, seed=3), policies=parse_policies("phalanx"))
    ph = res.policies[0]
    assert ph.restarts == ph.failures > 5
    assert ph.lost_samples > 0
    assert 0 < ph.samples < 10.0 * 3 * 86400


def test_timeline_rates_are_plausible() -> None:
    fleet = _fleet({"count": 1000, "throughput_sps": 1.0, "mtbf_h": 1000, "restart_s": 60})
    tl = make_timeline(fleet.classes, [1000], 100 * 3600.0, seed=0, requalify_s=3600)
    expected = 1000 * 100 / 1000  # chips * hours / mtbf
    assert abs(tl.count(FAIL) - expected) < 5 * math.sqrt(expected)


@pytest.mark.parametrize(
    "spec",
    ["phalanx,foo", "ddp-restart:interval_s=-1", "phalanx:interval_s=5", "phalanx,phalanx", ""],
)
def test_bad_policies(spec: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_policies(spec)
    assert err.value.field == "--policies"


def test_absurd_rates_are_refused_not_ground_through() -> None:
    fleet = _fleet({"count": 1000, "throughput_sps": 1.0, "mtbf_h": 0.001, "restart_s": 0})
    with pytest.raises(UsageError) as err:
        make_timeline(fleet.classes, [1000], 30 * 86400.0, seed=0, requalify_s=3600)
    assert err.value.field == "class[0].mtbf_h"
