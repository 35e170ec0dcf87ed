"""Integrals over piecewise-constant rows: when a target is reached, energy so far."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from phalanx.sim.fleet_state import Rows


def finish_time(
    rows: Rows,
    progress: NDArray[np.float64],
    stall_s: NDArray[np.float64],
    rate_sps: NDArray[np.float64],
    target: float,
) -> float | None:
    """First time the committed samples reach `target`, or None within the horizon."""
    done = np.concatenate([[0.0], np.cumsum(progress)])
    # Rollbacks make `done` dip; the running maximum finds the first crossing.
    reached = np.flatnonzero(np.maximum.accumulate(done) >= target)
    if reached.size == 0 or not np.isfinite(target):
        return None
    k = int(reached[0]) - 1  # the row during which it is reached
    if k < 0:
        return 0.0
    return float(rows.t_s[k] + min(stall_s[k], rows.dt_s[k]) + (target - done[k]) / rate_sps[k])


def integral_until(rows: Rows, value_per_s: NDArray[np.float64], t_end_s: float) -> float:
    """Integral of a per-row constant from 0 to t_end_s."""
    span = np.clip(t_end_s - rows.t_s, 0.0, rows.dt_s)
    return float((value_per_s * span).sum())


def curve(
    rows: Rows, progress: NDArray[np.float64], t_end_s: float, points: int
) -> tuple[list[float], list[float]]:
    """Committed samples over time, sampled on an even grid for plots."""
    done = np.concatenate([[0.0], np.cumsum(progress)])
    grid = np.linspace(0.0, t_end_s, points)
    return grid.tolist(), np.interp(grid, rows.t_points, done).tolist()
