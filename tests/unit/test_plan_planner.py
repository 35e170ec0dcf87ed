"""Planner invariants: exact shares, memory respected, monotone, reasons for every chip."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from phalanx.errors import UsageError
from phalanx.plan.candidates import evaluate
from phalanx.plan.fleet_classes import load_fleet, parse_fleet
from phalanx.plan.groups import group_fleet
from phalanx.plan.model_profile import ModelProfile, load_model
from phalanx.plan.plan_types import PlanOptions
from phalanx.plan.planner import class_arrays, make_plan

ROOT = Path(__file__).resolve().parents[2]
GIB = 1024**3

MODEL = ModelProfile(
    name="m",
    params=1e8,
    bytes_per_param=16,
    grad_bytes_per_param=4,
    activation_bytes_per_sample=0.5 * GIB,
    flops_per_sample=None,
    global_batch=64,
)

class_st = st.fixed_dictionaries(
    {
        "count": st.integers(1, 12),
        "throughput_sps": st.floats(0.1, 40.0),
        "memory_gib": st.sampled_from(
            [1.0, 2.0, 3.0, 8.0, 40.0]
        ),  # 1 GiB cannot hold the 1.5 GiB replica
        "network_gbps": st.sampled_from([10.0, 100.0, 400.0]),
        "power_max_w": st.floats(50.0, 800.0),
        "defect_rate": st.sampled_from([0.0, 0.0, 0.1]),
    }
)
fleet_st = st.lists(class_st, min_size=1, max_size=4)
batch_st = st.integers(1, 400)


def _fleet(tables: list[dict], **sync: float):
    classes = [dict(t, name=f"c{i}") for i, t in enumerate(tables)]
    return parse_fleet({"class": classes, "sync": {"latency_s": 1e-3, "overhead_s": 0.01, **sync}})


def _model(batch: int) -> ModelProfile:
    return ModelProfile(**{**MODEL.__dict__, "global_batch": batch})


def _plan_or_none(tables: list[dict], batch: int, **opts: float):
    try:
        return make_plan(_fleet(tables), _model(batch), PlanOptions(**opts))
    except UsageError as err:  # nothing fits in memory: a clear error, not a crash
        assert err.field == "fleet"
        return None


@settings(max_examples=120, deadline=None)
@given(tables=fleet_st, batch=batch_st)
def test_shares_sum_to_batch_and_fit_memory(tables: list[dict], batch: int) -> None:
    plan = _plan_or_none(tables, batch)
    if plan is None:
        return
    assert sum(s * n for c in plan.classes for s, n in c.shares) == batch
    for c in plan.classes:
        assert c.chips_used <= c.usable <= c.count
        # every chip is either used or has a reason to be left out
        assert c.chips_used + sum(e.count for e in c.excluded) == c.count
        if c.used:
            assert c.share_hi >= 1 and c.micro_batch >= 1
            assert c.micro_batch <= c.max_micro_batch
            assert c.micro_batch * c.micro_batches >= c.share_hi
            # each chip of a replica: its shard of the state and its part of a micro-batch
            k = c.group_size
            per_chip = -(-c.micro_batch // k)
            assert (
                MODEL.state_bytes / k + per_chip * MODEL.activation_bytes_per_sample
                <= c.memory_bytes * (1 + 1e-12)
            )
        if c.group_size == 0:
            assert c.used == 0 and any(e.reason == "memory" for e in c.excluded)
    assert plan.throughput_sps <= plan.ideal_sps * (1 + 1e-12)
    assert plan.step_s == pytest.approx(plan.compute_s + plan.sync_s)


@settings(max_examples=120, deadline=None)
@given(tables=fleet_st, batch=batch_st, data=st.data())
def test_removing_a_device_never_raises_throughput(
    tables: list[dict], batch: int, data: st.DataObject
) -> None:
    plan = _plan_or_none(tables, batch)
    if plan is None:
        return
    i = data.draw(st.integers(0, len(tables) - 1))
    smaller = [dict(t) for t in tables]
    smaller[i]["count"] -= 1
    if smaller[i]["count"] == 0:
        del smaller[i]
    if not smaller:
        return
    after = _plan_or_none(smaller, batch)
    if after is not None:
        assert after.throughput_sps <= plan.throughput_sps * (1 + 1e-9)


@settings(max_examples=40, deadline=None)
@given(tables=st.lists(class_st, min_size=1, max_size=3), batch=st.integers(1, 60))
def test_plan_is_the_best_of_all_device_subsets(tables: list[dict], batch: int) -> None:
    """Brute force over every count vector of a small fleet."""
    tables = [dict(t, count=min(t["count"], 4)) for t in tables]
    plan = _plan_or_none(tables, batch)
    if plan is None:
        return
    model = _model(batch)
    grouped = group_fleet(_fleet(tables), model)
    fleet = grouped.fleet
    arr = class_arrays(fleet, model, [g.size for g in grouped.groupings])
    best = 0.0
    for counts in itertools.product(*(range(int(a) + 1) for a in arr.available)):
        if sum(counts) == 0:
            continue
        ev = evaluate(arr, np.array(counts), batch, model.grad_bytes, fleet.sync)
        best = max(best, ev.throughput_sps)
    assert plan.throughput_sps == pytest.approx(best, rel=1e-9)


def test_reasons_memory_network_sync_and_power() -> None:
    tables = [
        {
            "count": 8,
            "throughput_sps": 20.0,
            "memory_gib": 40,
            "network_gbps": 400,
            "power_max_w": 400,
        },
        {
            "count": 4,
            "throughput_sps": 0.05,
            "memory_gib": 40,
            "network_gbps": 400,
            "power_max_w": 300,
        },  # share rounds to 0
        {
            "count": 4,
            "throughput_sps": 5.0,
            "memory_gib": 0.25,
            "network_gbps": 400,
        },  # no room for one sample, even beside a tiny shard
        {
            "count": 4,
            "throughput_sps": 1.0,
            "memory_gib": 40,
            "network_gbps": 1,
            "power_max_w": 300,
        },  # slow NIC
    ]
    plan = make_plan(_fleet(tables), _model(256))
    reasons = {c.name: {e.reason for e in c.excluded} for c in plan.classes}
    assert reasons == {"c0": set(), "c1": {"sync"}, "c2": {"memory"}, "c3": {"network"}}
    assert plan.classes[2].needs_group
    # A hungry, slow class is worth its power only when time is worth enough.
    hungry = [
        tables[0],
        {
            "count": 8,
            "throughput_sps": 4.0,
            "memory_gib": 40,
            "network_gbps": 400,
            "power_max_w": 2000,
        },
    ]
    fast = make_plan(_fleet(hungry), _model(256))
    assert fast.classes[1].used == 8 and fast.classes[1].break_even_usd_per_h > 0
    cheap = make_plan(_fleet(hungry), _model(256), PlanOptions(time_value_usd_per_h=0.0))
    assert cheap.classes[1].used == 0 and {e.reason for e in cheap.classes[1].excluded} == {"power"}
    rich = make_plan(_fleet(hungry), _model(256), PlanOptions(time_value_usd_per_h=1e6))
    assert rich.classes[1].used == 8


def test_nothing_fits_is_a_usage_error() -> None:
    with pytest.raises(UsageError) as err:
        make_plan(_fleet([{"count": 3, "throughput_sps": 1.0, "memory_gib": 0.25}]), _model(8))
    assert err.value.field == "fleet"


def test_chips_too_small_alone_train_in_groups() -> None:
    # The replica needs 1.49 GiB of state and 0.5 GiB per sample: a 1 GiB chip holds
    # a third of the state beside one sample, so three of them form a replica.
    plan = make_plan(_fleet([{"count": 7, "throughput_sps": 2.0, "memory_gib": 1}]), _model(12))
    (c,) = plan.classes
    assert (c.group_size, c.used, c.chips_used) == (3, 2, 6)
    assert [(e.reason, e.count) for e in c.excluded] == [("group", 1)]
    assert 0 < c.group_efficiency < 1
    assert c.speed_sps == pytest.approx(3 * 2.0 * c.group_efficiency)
    assert c.chip_bytes == pytest.approx(MODEL.state_bytes / 3 + MODEL.activation_bytes_per_sample)
    assert plan.solo_sps == pytest.approx(7 * 2.0)
    assert (plan.devices_used, plan.replicas_used) == (6, 2)


def test_ten_thousand_chips_plan() -> None:
    fleet = load_fleet(ROOT / "examples" / "fleets" / "mixed_10k.toml")
    model = load_model(ROOT / "examples" / "models" / "gpt_1b.toml")
    plan = make_plan(fleet, model)
    assert plan.devices_total == 10_000
    assert sum(s * n for c in plan.classes for s, n in c.shares) == model.global_batch
    legacy = plan.classes[3]
    assert legacy.used == 0 and legacy.needs_group
    assert 0 < plan.efficiency <= 1
