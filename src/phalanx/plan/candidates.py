"""Which devices to use: an exact search over candidate sets, vectorised.

Why the search is small: the step time depends on the set only through the
integer split (better with faster devices) and the sync time, which depends
on how many devices take part and on the slowest host network among them.
So for a fixed network floor b and device count N, the N fastest devices
whose network is at least b form the best set. Enumerating every (b, N) —
a few floors times at most the fleet size — covers the optimum exactly, and
each candidate is one row of a numpy array.

For the cost objective (energy plus time value) we add prefixes in order of
samples per joule, the order in which a ratio objective admits devices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from phalanx.plan.cost import makespan_s, split_shares, step_energy_j, sync_s
from phalanx.plan.fleet_classes import SyncParams


@dataclass(frozen=True)
class ClassArrays:
    """Per-class inputs of the search, one entry per device class."""

    speed_sps: NDArray[np.float64]
    available: NDArray[np.int64]  # passed qualification and fits in memory
    bandwidth_bytes_s: NDArray[np.float64]
    power_max_w: NDArray[np.float64]
    power_idle_w: NDArray[np.float64]


@dataclass(frozen=True)
class Evaluated:
    counts: NDArray[np.int64]
    share_hi: NDArray[np.int64]
    n_lo: NDArray[np.int64]
    compute_s: float
    sync_s: float
    step_s: float
    throughput_sps: float
    energy_j: float
    bandwidth_bytes_s: float


def _prefix_counts(available: NDArray[np.int64], order: NDArray[np.int64]) -> NDArray[np.int64]:
    """Row N-1 holds the first N devices taken in class `order`."""
    k = available.shape[0]
    avail_sorted = available[order]
    total = int(avail_sorted.sum())
    offsets = np.concatenate([[0], np.cumsum(avail_sorted)[:-1]])
    n = np.arange(1, total + 1, dtype=np.int64)[:, None]
    taken = np.clip(n - offsets[None, :], 0, avail_sorted[None, :])
    counts = np.zeros((total, k), dtype=np.int64)
    counts[:, order] = taken
    return counts


def candidate_sets(
    arr: ClassArrays, by_efficiency: bool
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """All candidate count vectors with the network floor each was built for."""
    rows: list[NDArray[np.int64]] = []
    floors: list[NDArray[np.float64]] = []
    has = arr.available > 0
    for floor_bw in np.unique(arr.bandwidth_bytes_s[has])[::-1]:
        allowed = np.flatnonzero(has & (arr.bandwidth_bytes_s >= floor_bw))
        keys = [arr.speed_sps[allowed]]
        if by_efficiency:
            keys = [arr.speed_sps[allowed] / arr.power_max_w[allowed], *keys]
        for key in keys:
            # Stable sort, descending key, ties in fleet-file order.
            order = allowed[np.lexsort((allowed, -key))]
            avail = np.where(np.isin(np.arange(arr.available.size), allowed), arr.available, 0)
            counts = _prefix_counts(avail, order)
            rows.append(counts)
            floors.append(np.full(counts.shape[0], floor_bw))
    if not rows:
        return np.zeros((0, arr.available.size), dtype=np.int64), np.zeros(0)
    return np.concatenate(rows), np.concatenate(floors)


def score(
    arr: ClassArrays,
    counts: NDArray[np.int64],
    floors_bytes_s: NDArray[np.float64],
    batch: int,
    grad_bytes: float,
    sync: SyncParams,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(step_s, approximate energy_j per step) of every candidate row."""
    compute = makespan_s(arr.speed_sps, counts, batch)
    step = compute + sync_s(counts.sum(axis=1), floors_bytes_s, grad_bytes, sync)
    # Each device is busy for the share it can finish by `compute` (exact up
    # to the few samples handed back at the breakpoint).
    busy = np.minimum(np.floor(compute[:, None] * arr.speed_sps) / arr.speed_sps, compute[:, None])
    per_dev = arr.power_max_w * busy + arr.power_idle_w * (step[:, None] - busy)
    return step, (counts * per_dev).sum(axis=1)


def evaluate(
    arr: ClassArrays, counts: NDArray[np.int64], batch: int, grad_bytes: float, sync: SyncParams
) -> Evaluated:
    """Exact prediction for one device set; devices left with no sample are dropped."""
    counts = counts.astype(np.int64).copy()
    compute, share_hi, n_lo = split_shares(arr.speed_sps, counts, batch)
    # A device whose share rounds to zero only adds sync cost: leave it out.
    counts = np.where(share_hi == 0, 0, counts)
    zero_lo = (share_hi == 1) & (n_lo > 0)
    counts = np.where(zero_lo, counts - n_lo, counts)
    n_lo = np.where(zero_lo | (share_hi == 0), 0, n_lo)
    share_hi = np.where(counts > 0, share_hi, 0)
    used = counts > 0
    bw = float(arr.bandwidth_bytes_s[used].min())
    sync_time = float(sync_s(int(counts.sum()), bw, grad_bytes, sync))
    step = compute + sync_time
    speeds = np.where(used, arr.speed_sps, 1.0)
    energy = step_energy_j(step, speeds, share_hi, counts, n_lo, arr.power_max_w, arr.power_idle_w)
    return Evaluated(
        counts=counts,
        share_hi=share_hi,
        n_lo=n_lo,
        compute_s=compute,
        sync_s=sync_time,
        step_s=step,
        throughput_sps=batch / step,
        energy_j=energy,
        bandwidth_bytes_s=bw,
    )


def best_set(
    arr: ClassArrays,
    batch: int,
    grad_bytes: float,
    sync: SyncParams,
    usd_per_j: float,
    time_value_usd_per_h: float | None,
) -> NDArray[np.int64]:
    """Counts per class of the best candidate (throughput, or cost when time is priced)."""
    by_cost = time_value_usd_per_h is not None
    counts, floors = candidate_sets(arr, by_efficiency=by_cost)
    step, energy = score(arr, counts, floors, batch, grad_bytes, sync)
    if by_cost:
        assert time_value_usd_per_h is not None
        objective = usd_per_j * energy + time_value_usd_per_h / 3600.0 * step
        return counts[int(np.argmin(objective))]
    # argmin of step time: the first (smallest) set wins ties.
    return counts[int(np.argmin(step))]
