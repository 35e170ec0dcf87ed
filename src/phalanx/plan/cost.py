"""The cost model: compute time of integer shares, sync time, energy of a step.

Everything here works on per-class arrays (devices of a class are identical),
vectorised over many candidate fleets at once, so the planner can weigh
10,000 candidate device sets in one numpy pass.

Compute time: the batch B is split into integer shares; a device of speed s
with share x is busy x / s seconds and the step waits for the slowest. The
best split is the smallest T with sum_i floor(T * s_i) >= B (give each device
as many samples as it can finish by T); we find T by bisection, then snap it
to the exact breakpoint k / s.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

from phalanx.plan.fleet_classes import SyncParams

# Guards floor(k / s * s) against landing on k - 1 by one ulp.
_EPS = 1e-9
_BISECT_ROUNDS = 44  # relative precision ~1e-13 before snapping to the exact breakpoint


def makespan_s(speeds_sps: ArrayLike, counts: ArrayLike, batch: int) -> NDArray[np.float64]:
    """Compute time of the best integer split of `batch` over devices.

    speeds_sps, counts: (..., K) arrays, one column per device class. Rows with
    no device get inf.
    """
    s = np.asarray(speeds_sps, dtype=np.float64)
    n = np.asarray(counts, dtype=np.float64)
    s, n = np.broadcast_arrays(s, n)
    total_sps = (s * n).sum(axis=-1)
    total_n = n.sum(axis=-1)
    empty = total_sps <= 0
    safe = np.where(empty, 1.0, total_sps)
    lo = batch / safe
    # floor(x) > x - 1, so at T = (B + N) / S every device's floor sums past B.
    hi = (batch + total_n) / safe
    for _ in range(_BISECT_ROUNDS):
        mid = 0.5 * (lo + hi)
        done = (n * np.floor(mid[..., None] * s + _EPS)).sum(axis=-1) >= batch
        hi = np.where(done, mid, hi)
        lo = np.where(done, lo, mid)
    k = np.floor(hi[..., None] * s + _EPS)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.where(n > 0, k / np.where(s > 0, s, 1.0), 0.0).max(axis=-1)
    return np.where(empty, np.inf, t)


def split_shares(
    speeds_sps: ArrayLike, counts: ArrayLike, batch: int
) -> tuple[float, NDArray[np.int64], NDArray[np.int64]]:
    """Integer shares per class for one fleet: (compute_s, share_hi, n_lo).

    In class c, counts[c] - n_lo[c] devices get share_hi[c] samples and n_lo[c]
    devices get share_hi[c] - 1; all shares sum to exactly `batch`.
    """
    s = np.asarray(speeds_sps, dtype=np.float64)
    n = np.asarray(counts, dtype=np.int64)
    t = float(makespan_s(s, n, batch))
    if not np.isfinite(t):
        raise ValueError("no device to split the batch over")
    share_hi = np.where(n > 0, np.floor(t * s + _EPS), 0).astype(np.int64)
    excess = int((n * share_hi).sum()) - batch
    # Only devices sitting exactly on the breakpoint T can give a sample back
    # without becoming the new bottleneck; minimality of T guarantees enough.
    with np.errstate(divide="ignore", invalid="ignore"):
        at_bp = (n > 0) & (share_hi > 0) & (share_hi / s >= t * (1 - 1e-12))
    n_lo = np.zeros_like(n)
    for c in np.flatnonzero(at_bp):
        if excess <= 0:
            break
        take = min(int(n[c]), excess)
        n_lo[c] = take
        excess -= take
    if excess > 0:  # pragma: no cover - would mean the bisection lost its breakpoint
        raise AssertionError("share split could not reach the batch exactly")
    return t, share_hi, n_lo


def sync_s(
    n_devices: ArrayLike, bandwidth_bytes_s: ArrayLike, grad_bytes: float, sync: SyncParams
) -> NDArray[np.float64]:
    """Time of one step's gradient allreduce plus the control plane.

    Hierarchical allreduce: devices of a host reduce locally (assumed free),
    then hosts run a ring in which each sends and receives ~2x the gradient
    bytes through its NIC, so the slowest NIC in the fleet bounds it. The
    latency term grows with log2(N) (tree/ring-of-rings schedules). A single
    device has nothing to synchronise.
    """
    n = np.asarray(n_devices, dtype=np.float64)
    bw = np.asarray(bandwidth_bytes_s, dtype=np.float64)
    transfer_s = (1.0 - sync.overlap) * 2.0 * grad_bytes / bw
    latency = 2.0 * sync.latency_s * np.log2(np.maximum(n, 1.0))
    return np.where(n > 1, sync.overhead_s + transfer_s + latency, 0.0)


def step_energy_j(
    step_s: float,
    speeds_sps: NDArray[np.float64],
    share_hi: NDArray[np.int64],
    counts: NDArray[np.int64],
    n_lo: NDArray[np.int64],
    power_max_w: NDArray[np.float64],
    power_idle_w: NDArray[np.float64],
) -> float:
    """Joules of one step: full power while computing, idle power while waiting."""
    busy_hi = share_hi / speeds_sps
    busy_lo = np.maximum(share_hi - 1, 0) / speeds_sps
    n_hi = counts - n_lo

    def dev_j(busy: NDArray[np.float64]) -> NDArray[np.float64]:
        return power_max_w * busy + power_idle_w * (step_s - busy)

    return float((n_hi * dev_j(busy_hi) + n_lo * dev_j(busy_lo)).sum())
