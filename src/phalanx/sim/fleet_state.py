"""From a timeline to per-row fleet states, shared by every policy's engine.

Row 0 is the fleet at t=0, row k+1 the fleet just after event k; row k holds
from t_s[k] until t_s[k+1] (the last row until the horizon).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from phalanx.plan.fleet_classes import DeviceClass
from phalanx.plan.power_curve import power_at_speed
from phalanx.sim.events import BACK, FAIL, SDC, SDC_BACK, THR_OFF, THR_ON, Timeline, state_counts
from phalanx.sim.rates import Columns


@dataclass(frozen=True)
class Rows:
    t_s: NDArray[np.float64]  # (R,) start of each row
    dt_s: NDArray[np.float64]  # (R,) how long each row holds
    used: NDArray[np.int64]  # (K,) chips of each class in the plan
    down: NDArray[np.int64]  # (R, K) failed and restarting
    quarantined: NDArray[np.int64]  # (R, K) caught corrupting data, being re-qualified
    throttled: NDArray[np.int64]  # (R, K) in a thermal episode (up or not)

    @property
    def t_points(self) -> NDArray[np.float64]:
        """Row starts plus the horizon: where cumulative curves are known exactly."""
        return np.concatenate([self.t_s, [self.t_s[-1] + self.dt_s[-1]]])


def make_rows(tl: Timeline, used: list[int]) -> Rows:
    k = len(used)
    t = np.concatenate([[0.0], tl.t_s])
    return Rows(
        t_s=t,
        dt_s=np.diff(np.concatenate([t, [tl.horizon_s]])),
        used=np.asarray(used, dtype=np.int64),
        down=state_counts(tl, k, FAIL, BACK),
        quarantined=state_counts(tl, k, SDC, SDC_BACK),
        throttled=state_counts(tl, k, THR_ON, THR_OFF),
    )


def columns(classes: tuple[DeviceClass, ...], speeds_sps: list[float]) -> Columns:
    """Columns 0..K-1: each class at full speed; K..2K-1: each class throttled."""
    s = np.asarray(speeds_sps, dtype=np.float64)
    thr = np.array([c.throttle_speed for c in classes])
    p_max = np.array([c.power_max_w for c in classes])
    p_thr = np.array(
        [c.power_max_w * power_at_speed(c.power_curve, c.throttle_speed) for c in classes]
    )
    idle = np.array([c.power_idle_w for c in classes])
    return Columns(
        speed_sps=np.concatenate([s, s * thr]),
        active_w=np.concatenate([p_max, np.maximum(p_thr, idle)]),
        idle_w=np.concatenate([idle, idle]),
    )


def split_states(up: NDArray[np.int64], throttled: NDArray[np.int64]) -> NDArray[np.int64]:
    """(R, 2K) column counts; an episode on a chip that is down changes nothing."""
    thr_up = np.minimum(np.clip(throttled, 0, None), up)
    return np.concatenate([up - thr_up, thr_up], axis=1)
