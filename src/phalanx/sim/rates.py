"""Step time and power of a fleet state, for many states at once.

A state is how many chips of each column are up, where the columns are each
class at full speed and each class throttled. Two ways to split the batch:

- balanced (phalanx): integer shares follow speed; the step lasts the exact
  integer makespan (plan/cost.py) plus the sync;
- equal (DDP, phalanx-nobalance): B // N samples each, the B % N left over
  to the fastest chips; the step waits for the slowest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from phalanx.plan.cost import makespan_s, sync_s
from phalanx.plan.fleet_classes import SyncParams


@dataclass(frozen=True)
class Columns:
    speed_sps: NDArray[np.float64]  # (C,) samples/s of one chip in the column
    active_w: NDArray[np.float64]  # power while computing
    idle_w: NDArray[np.float64]  # power while waiting, syncing or restarting


@dataclass(frozen=True)
class StepCosts:
    step_s: NDArray[np.float64]  # inf when no chip is up
    compute_s: NDArray[np.float64]
    power_w: NDArray[np.float64]  # of the up chips only


def _power(
    cols: Columns, counts: NDArray[np.int64], busy: NDArray[np.float64], step: NDArray[np.float64]
) -> NDArray[np.float64]:
    """Average power over a step; `busy` is per-column compute seconds per chip."""
    safe = np.where(np.isfinite(step), step, 1.0)[:, None]
    busy = np.minimum(busy, safe)
    per_chip = (cols.active_w * busy + cols.idle_w * (safe - busy)) / safe
    return (counts * per_chip).sum(axis=1)


def balanced(
    cols: Columns,
    counts: NDArray[np.int64],
    batch: int,
    bw_bytes_s: float,
    grad_bytes: float,
    sync: SyncParams,
) -> StepCosts:
    compute = makespan_s(cols.speed_sps, counts, batch)
    step = compute + sync_s(counts.sum(axis=1), bw_bytes_s, grad_bytes, sync)
    finite = np.where(np.isfinite(compute), compute, 0.0)[:, None]
    # Each chip computes the samples it can finish by the makespan, except that
    # the surplus over B is handed back by chips sitting on the breakpoint (in
    # column order, as plan/cost.split_shares does).
    base = np.floor(finite * cols.speed_sps + 1e-9)
    at_bp = (counts > 0) & (base > 0) & (base / cols.speed_sps >= finite * (1 - 1e-12))
    surplus = (counts * base).sum(axis=1) - batch
    cap = np.where(at_bp, counts, 0)
    handed_back = np.clip(surplus[:, None] - (np.cumsum(cap, axis=1) - cap), 0, cap)
    busy = (base - handed_back / np.maximum(counts, 1)) / cols.speed_sps
    return StepCosts(step_s=step, compute_s=compute, power_w=_power(cols, counts, busy, step))


def equal(
    cols: Columns,
    counts: NDArray[np.int64],
    batch: int,
    bw_bytes_s: float,
    grad_bytes: float,
    sync: SyncParams,
) -> StepCosts:
    n = counts.sum(axis=1)
    safe_n = np.maximum(n, 1)
    q = batch // safe_n
    r = batch % safe_n
    order = np.argsort(-cols.speed_sps, kind="stable")
    c_sorted = counts[:, order]
    before = np.cumsum(c_sorted, axis=1) - c_sorted
    extra = np.clip(r[:, None] - before, 0, c_sorted)  # chips with q + 1 samples
    plain = c_sorted - extra
    s_sorted = cols.speed_sps[order]
    t_extra = np.where(extra > 0, (q[:, None] + 1) / s_sorted, 0.0)
    t_plain = np.where(plain > 0, q[:, None] / s_sorted, 0.0)
    compute = np.maximum(t_extra.max(axis=1), t_plain.max(axis=1))
    compute = np.where(n > 0, compute, np.inf)
    step = compute + sync_s(n, bw_bytes_s, grad_bytes, sync)
    # Average busy time per chip of each column, for the power estimate.
    with np.errstate(invalid="ignore", divide="ignore"):
        busy_sorted = np.where(
            c_sorted > 0, (extra * t_extra + plain * t_plain) / np.maximum(c_sorted, 1), 0.0
        )
    busy = np.empty_like(busy_sorted)
    busy[:, order] = busy_sorted
    return StepCosts(step_s=step, compute_s=compute, power_w=_power(cols, counts, busy, step))


def costs_of_states(
    split: str,
    cols: Columns,
    states: NDArray[np.int64],
    batch: int,
    bw_bytes_s: float,
    grad_bytes: float,
    sync: SyncParams,
) -> StepCosts:
    """Evaluate each distinct state once and map the results back to every row."""
    uniq, inverse = unique_rows(states)
    fn = balanced if split == "balanced" else equal
    out = fn(cols, uniq, batch, bw_bytes_s, grad_bytes, sync)
    return StepCosts(
        step_s=out.step_s[inverse], compute_s=out.compute_s[inverse], power_w=out.power_w[inverse]
    )


def unique_rows(states: NDArray[np.int64]) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """np.unique(axis=0) without its slow row sort when the rows fit one int64 key."""
    lo = states.min(axis=0)
    span = states.max(axis=0) - lo + 1
    if states.size == 0 or math.prod(int(x) for x in span) >= 2**62:
        uniq, inverse = np.unique(states, axis=0, return_inverse=True)
        return uniq, inverse.reshape(-1)
    # Mixed-radix code of each row: exact, so equal codes mean equal rows.
    radix = np.concatenate([[1], np.cumprod(span[:-1])]).astype(np.int64)
    codes = ((states - lo) * radix).sum(axis=1)
    _, first, inverse = np.unique(codes, return_index=True, return_inverse=True)
    return states[first], inverse.reshape(-1)
