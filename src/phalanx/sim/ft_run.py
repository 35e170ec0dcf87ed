"""Fault-tolerant policies (phalanx, phalanx-nobalance): the fleet keeps stepping.

A failure costs the step in flight (half a step on average) plus a stall to
detect it and form a new quorum; the chip rejoins restart_s later. A detected
silent corruption costs the step (not committed) and keeps the chip out for
requalify_s. Only when every chip is down at once does the run fall back to
its last durable checkpoint.
"""

from __future__ import annotations

import math

import numpy as np

from phalanx.plan.fleet_classes import SyncParams
from phalanx.sim.events import FAIL, SDC, THR_ON, Timeline
from phalanx.sim.fleet_state import Rows, split_states
from phalanx.sim.policies import Policy, SimConfig
from phalanx.sim.rates import Columns, costs_of_states
from phalanx.sim.results import PolicyResult
from phalanx.sim.timeline_math import curve, finish_time, integral_until


def run_fault_tolerant(
    policy: Policy,
    rows: Rows,
    tl: Timeline,
    cols: Columns,
    batch: int,
    bw_bytes_s: float,
    grad_bytes: float,
    sync: SyncParams,
    cfg: SimConfig,
    ideal_sps: float,
) -> PolicyResult:
    out = np.minimum(rows.down + rows.quarantined, rows.used)
    up = rows.used - out
    costs = costs_of_states(
        policy.split, cols, split_states(up, rows.throttled), batch, bw_bytes_s, grad_bytes, sync
    )
    finite = np.isfinite(costs.step_s)
    rate = np.where(finite, batch / np.where(finite, costs.step_s, 1.0), 0.0)
    k = len(rows.used)
    power = costs.power_w + (out * cols.idle_w[:k]).sum(axis=1)

    # Row k+1 starts with event k: charge that event's stall to the row.
    prev_step = np.where(finite[:-1], costs.step_s[:-1], 0.0)
    stall = np.zeros(rows.t_s.size)
    stall[1:] = np.where(tl.kind == FAIL, cfg.stall_s + 0.5 * prev_step, 0.0)
    stall[1:] += np.where(tl.kind == SDC, prev_step, 0.0)
    progress = rate * np.clip(rows.dt_s - stall, 0.0, None)

    restarts, lost = 0, 0.0
    all_down = up.sum(axis=1) == 0
    starts = np.flatnonzero(all_down & ~np.concatenate([[False], all_down[:-1]]))
    for a in starts:
        # The whole fleet is gone: resume from the last durable checkpoint.
        after = np.flatnonzero(~all_down[a:])
        if after.size == 0:
            break
        b = a + int(after[0])
        done = np.concatenate([[0.0], np.cumsum(progress)])
        t_ckpt = (
            math.floor(rows.t_s[a] / cfg.ft_checkpoint_interval_s) * cfg.ft_checkpoint_interval_s
        )
        saved = float(np.interp(t_ckpt, rows.t_points, done))
        lost_here = max(0.0, float(done[a]) - saved)
        stall[b] += cfg.world_restart_s
        progress[b] = rate[b] * max(0.0, rows.dt_s[b] - stall[b]) - lost_here
        restarts += 1
        lost += lost_here

    target = cfg.target_samples if cfg.target_samples is not None else math.inf
    t_end = finish_time(rows, progress, stall, rate, target)
    finished = t_end is not None
    wall = t_end if t_end is not None else tl.horizon_s
    samples = min(target, float(progress.sum())) if not finished else target
    energy_j = integral_until(rows, power, wall)
    t_curve, s_curve = curve(rows, progress, wall, cfg.curve_points)
    return PolicyResult(
        name=policy.name,
        finished=finished,
        time_to_target_s=t_end,
        wall_s=wall,
        samples=samples,
        goodput_sps=samples / wall,
        goodput_frac=samples / wall / ideal_sps,
        energy_kwh=energy_j / 3.6e6,
        cost_usd=energy_j / 3.6e6 * cfg.usd_per_kwh,
        failures=tl.count(FAIL, wall),
        restarts=restarts,
        lost_samples=lost,
        sdc_detected=tl.count(SDC, wall),
        sdc_undetected=0,
        throttle_episodes=tl.count(THR_ON, wall),
        checkpoint_interval_s=cfg.ft_checkpoint_interval_s,
        curve_t_s=t_curve,
        curve_samples=s_curve,
    )
