"""The restart-the-world baseline (ddp-restart): any failure stops every chip.

The job runs with an equal split at the slowest chip's pace and writes a
checkpoint every `interval_s` of running time, stalling checkpoint_s each
time. A failure throws away the work since the last checkpoint; the job
resumes world_restart_s after the failed chip is back. A failure during an
outage lengthens it. Nothing detects silent corruption: it is only counted.
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


def young_daly_interval_s(checkpoint_s: float, fleet_mtbf_s: float) -> float:
    """First-order optimal checkpoint interval sqrt(2 * delta * M) (Young 1974, Daly 2006)."""
    return math.sqrt(2.0 * checkpoint_s * fleet_mtbf_s)


def run_restart(
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
    fleet_mtbf_s: float,
) -> PolicyResult:
    # While running, every chip is up; only thermal episodes change the pace.
    full = np.broadcast_to(rows.used, rows.throttled.shape)
    costs = costs_of_states(
        "equal", cols, split_states(full, rows.throttled), batch, bw_bytes_s, grad_bytes, sync
    )
    rate = batch / costs.step_s
    t_pts = rows.t_points
    work = np.concatenate([[0.0], np.cumsum(rate * rows.dt_s)])  # fault-free samples by time t
    joules = np.concatenate([[0.0], np.cumsum(costs.power_w * rows.dt_s)])
    idle_w = float((rows.used * cols.idle_w[: rows.used.size]).sum())

    def work_at(t: float) -> float:
        return float(np.interp(t, t_pts, work))

    interval = policy.interval_s or young_daly_interval_s(cfg.checkpoint_s, fleet_mtbf_s)
    interval = min(interval, tl.horizon_s)
    cycle = interval + cfg.checkpoint_s
    keep = interval / cycle  # share of running time not spent writing checkpoints
    target = cfg.target_samples if cfg.target_samples is not None else math.inf

    committed, lost, failures, restarts = 0.0, 0.0, 0, 0
    seg_start = 0.0
    segments: list[tuple[float, float, float, float]] = []  # start, end, base, after
    t_end: float | None = None
    fails = np.flatnonzero(tl.kind == FAIL)
    for i in fails:
        t_fail, t_back = float(tl.t_s[i]), float(tl.back_s[i])
        if t_fail < seg_start:  # already down: the outage waits for this chip too
            seg_start = max(seg_start, t_back + cfg.world_restart_s)
            failures += 1
            continue
        gained = keep * (work_at(t_fail) - work_at(seg_start))
        if committed + gained >= target:
            break
        t_ckpt = seg_start + math.floor((t_fail - seg_start) / cycle) * cycle
        saved = keep * (work_at(t_ckpt) - work_at(seg_start))
        segments.append((seg_start, t_fail, committed, committed + saved))
        lost += gained - saved
        committed += saved
        seg_start = t_back + cfg.world_restart_s
        failures += 1
        restarts += 1
    # The last segment runs to the target or the horizon.
    if seg_start < tl.horizon_s:
        need = (target - committed) / keep + work_at(seg_start)
        if need <= work[-1]:
            t_end = float(np.interp(need, work, t_pts))
        end = t_end if t_end is not None else tl.horizon_s
        gained = keep * (work_at(end) - work_at(seg_start))
        segments.append((seg_start, end, committed, committed + gained))
        committed += gained
    wall = t_end if t_end is not None else tl.horizon_s
    samples = min(committed, target)

    running_j = sum(
        float(np.interp(b, t_pts, joules) - np.interp(a, t_pts, joules)) for a, b, _, _ in segments
    )
    running_s = sum(b - a for a, b, _, _ in segments)
    energy_j = running_j + idle_w * max(0.0, wall - running_s)
    t_curve, s_curve = _curve(segments, wall, cfg.curve_points, keep, t_pts, work)
    return PolicyResult(
        name=policy.name,
        finished=t_end is not None,
        time_to_target_s=t_end,
        wall_s=wall,
        samples=samples,
        goodput_sps=samples / wall,
        goodput_frac=samples / wall / ideal_sps,
        energy_kwh=energy_j / 3.6e6,
        cost_usd=energy_j / 3.6e6 * cfg.usd_per_kwh,
        failures=failures,
        restarts=restarts,
        lost_samples=lost,
        sdc_detected=0,
        sdc_undetected=tl.count(SDC, wall),
        throttle_episodes=tl.count(THR_ON, wall),
        checkpoint_interval_s=interval,
        curve_t_s=t_curve,
        curve_samples=s_curve,
    )


def _curve(
    segments: list[tuple[float, float, float, float]],
    wall_s: float,
    points: int,
    keep: float,
    t_pts: np.ndarray,
    work: np.ndarray,
) -> tuple[list[float], list[float]]:
    """Samples done over time: rising while running, flat (after a drop) while down."""
    grid = np.linspace(0.0, wall_s, points)
    if not segments:
        return grid.tolist(), [0.0] * points
    starts = np.array([s[0] for s in segments])
    ends = np.array([s[1] for s in segments])
    base = np.array([s[2] for s in segments])
    after = np.array([s[3] for s in segments])
    j = np.clip(np.searchsorted(starts, grid, side="right") - 1, 0, len(segments) - 1)
    running = (grid >= starts[j]) & (grid <= ends[j])
    w_grid = np.interp(grid, t_pts, work)
    w_start = np.interp(starts[j], t_pts, work)
    value = np.where(running, base[j] + keep * (w_grid - w_start), after[j])
    value = np.where(grid < starts[0], 0.0, value)
    return grid.tolist(), value.tolist()
