"""Simulate a planned fleet under several policies, side by side, for one seed.

    result = simulate(fleet, model, plan, SimConfig(days=30, seed=0), policies)

Event-driven: the fleet state changes only at failures, rejoins, thermal
episodes and corruption detections, and every policy's step time is
evaluated once per distinct fleet state, not once per step.
"""

from __future__ import annotations

import math

from phalanx.plan.fleet_classes import FleetSpec
from phalanx.plan.groups import group_fleet
from phalanx.plan.model_profile import ModelProfile
from phalanx.plan.plan_types import Plan
from phalanx.sim.events import KIND_NAMES, make_timeline
from phalanx.sim.fleet_state import columns, make_rows
from phalanx.sim.ft_run import run_fault_tolerant
from phalanx.sim.policies import Policy, SimConfig
from phalanx.sim.restart_run import run_restart, young_daly_interval_s
from phalanx.sim.results import SimResult


def fleet_mtbf_s(fleet: FleetSpec, used: list[int]) -> float:
    """Mean time between failures anywhere among the used chips."""
    per_s = sum(
        n / (c.mtbf_h * 3600.0)
        for c, n in zip(fleet.classes, used, strict=True)
        if n and math.isfinite(c.mtbf_h)
    )
    return math.inf if per_s == 0 else 1.0 / per_s


def simulate(
    fleet: FleetSpec, model: ModelProfile, plan: Plan, cfg: SimConfig, policies: list[Policy]
) -> SimResult:
    # Replicas as units: a group of chips fails, heats and corrupts as one (plan/groups.py).
    fleet = group_fleet(fleet, model).fleet
    used = plan.used_counts()
    tl = make_timeline(fleet.classes, used, cfg.horizon_s, cfg.seed, cfg.requalify_s)
    rows = make_rows(tl, used)
    cols = columns(fleet.classes, [c.speed_sps for c in plan.classes])
    bw = plan.ring_gbps * 1e9 / 8
    mtbf_s = fleet_mtbf_s(fleet, used)
    results = []
    for pol in policies:
        common = (
            rows,
            tl,
            cols,
            model.global_batch,
            bw,
            model.grad_bytes,
            fleet.sync,
            cfg,
            plan.ideal_sps,
        )
        if pol.fault_tolerant:
            results.append(run_fault_tolerant(pol, *common))
        else:
            results.append(run_restart(pol, *common, mtbf_s))
    return SimResult(
        days=cfg.days,
        seed=cfg.seed,
        target_samples=cfg.target_samples,
        devices=sum(used),
        chips=plan.devices_used,
        planned_sps=plan.throughput_sps,
        ideal_sps=plan.ideal_sps,
        fleet_mtbf_h=mtbf_s / 3600.0,
        young_daly_interval_s=young_daly_interval_s(cfg.checkpoint_s, mtbf_s)
        if math.isfinite(mtbf_s)
        else None,
        events={name: tl.count(k) for k, name in enumerate(KIND_NAMES)},
        policies=results,
    )
