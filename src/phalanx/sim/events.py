"""The random side of the simulator: when chips fail, come back, throttle, corrupt.

One `Timeline` per seed is shared by every policy (common random numbers),
so policies differ only by how they react, never by luck. Each class and
each process draws from its own generator keyed by (seed, class, process),
so changing one class's rates leaves the other classes' events unchanged.

- failures: a renewal process per chip with Weibull gaps whose mean is
  mtbf_h (shape 1 is memoryless); a failed chip is back restart_s later and
  as good as new.
- thermal episodes: Poisson arrivals per class (throttle_per_h per chip),
  exponential lengths with mean throttle_s.
- silent data corruption: Poisson arrivals per class (sdc_rate per chip-hour);
  a detected one keeps the chip out for requalify_s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from phalanx.errors import UsageError
from phalanx.plan.fleet_classes import DeviceClass

FAIL, BACK, THR_ON, THR_OFF, SDC, SDC_BACK = range(6)
KIND_NAMES = ("fail", "back", "throttle_on", "throttle_off", "sdc", "sdc_back")
_FAIL_PROC, _THERMAL_PROC, _SDC_PROC = 1, 2, 3


@dataclass(frozen=True)
class Timeline:
    horizon_s: float
    t_s: NDArray[np.float64]  # event times, sorted
    cls: NDArray[np.int64]  # class index of each event
    kind: NDArray[np.int8]
    back_s: NDArray[np.float64]  # FAIL events: when the chip is back; nan otherwise

    def count(self, kind: int, before_s: float = math.inf) -> int:
        return int(np.count_nonzero((self.kind == kind) & (self.t_s < before_s)))


def _rng(seed: int, cls_index: int, process: int) -> np.random.Generator:
    return np.random.default_rng([seed, cls_index, process])


def _failures(
    c: DeviceClass, n: int, horizon_s: float, rng: np.random.Generator
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    if n == 0 or math.isinf(c.mtbf_h):
        return np.zeros(0), np.zeros(0)
    # Weibull with shape k and scale lam has mean lam * Gamma(1 + 1/k).
    scale_s = c.mtbf_h * 3600.0 / math.gamma(1.0 + 1.0 / c.weibull_shape)
    clock = np.zeros(n)
    fails: list[NDArray[np.float64]] = []
    alive = np.arange(n)
    # One round per failure of the unluckiest chip: few rounds, each vectorised.
    while alive.size:
        t_fail = clock[alive] + scale_s * rng.weibull(c.weibull_shape, alive.size)
        keep = t_fail < horizon_s
        alive, t_fail = alive[keep], t_fail[keep]
        fails.append(t_fail)
        clock[alive] = t_fail + c.restart_s
    t = np.concatenate(fails) if fails else np.zeros(0)
    return t, t + c.restart_s


def _episodes(
    rate_per_h: float, n: int, horizon_s: float, rng: np.random.Generator
) -> NDArray[np.float64]:
    """Poisson arrival times of a class-wide process (n chips, rate_per_h each)."""
    if n == 0 or rate_per_h <= 0:
        return np.zeros(0)
    m = rng.poisson(n * rate_per_h * horizon_s / 3600.0)
    return np.sort(rng.uniform(0.0, horizon_s, m))


MAX_EVENTS = 20_000_000


def _check_event_budget(
    classes: tuple[DeviceClass, ...], used: list[int], horizon_s: float
) -> None:
    """Refuse rates that would make the event list, not the fleet, the problem."""
    hours = horizon_s / 3600.0
    for c, n in zip(classes, used, strict=True):
        per_chip = 2 * hours / (c.mtbf_h + c.restart_s / 3600.0) + 2 * hours * (
            c.throttle_per_h + c.sdc_rate
        )
        if n * per_chip > MAX_EVENTS:
            raise UsageError(
                f"{c.where}.mtbf_h",
                f"with these failure, throttle and SDC rates {n:,} chips make about {n * per_chip:,.0f} events",
                f"check the rates (per chip-hour), or simulate fewer days; the limit is {MAX_EVENTS:,} events",
            )


def make_timeline(
    classes: tuple[DeviceClass, ...],
    used: list[int],
    horizon_s: float,
    seed: int,
    requalify_s: float,
) -> Timeline:
    """Every event of the run, for the `used` chips of each class."""
    _check_event_budget(classes, used, horizon_s)
    t_parts, cls_parts, kind_parts, back_parts = [], [], [], []

    def add(
        t: NDArray[np.float64], c: int, kind: int, back: NDArray[np.float64] | None = None
    ) -> None:
        t_parts.append(t)
        cls_parts.append(np.full(t.size, c, dtype=np.int64))
        kind_parts.append(np.full(t.size, kind, dtype=np.int8))
        back_parts.append(np.full(t.size, np.nan) if back is None else back)

    for c, (dc, n) in enumerate(zip(classes, used, strict=True)):
        t_fail, t_back = _failures(dc, n, horizon_s, _rng(seed, c, _FAIL_PROC))
        add(t_fail, c, FAIL, t_back)
        add(t_back[t_back < horizon_s], c, BACK)
        rng = _rng(seed, c, _THERMAL_PROC)
        t_on = _episodes(dc.throttle_per_h, n, horizon_s, rng)
        t_off = t_on + rng.exponential(dc.throttle_s, t_on.size)
        add(t_on, c, THR_ON)
        add(t_off[t_off < horizon_s], c, THR_OFF)
        t_sdc = _episodes(dc.sdc_rate, n, horizon_s, _rng(seed, c, _SDC_PROC))
        add(t_sdc, c, SDC)
        t_sdc_back = t_sdc + requalify_s
        add(t_sdc_back[t_sdc_back < horizon_s], c, SDC_BACK)

    t = np.concatenate(t_parts) if t_parts else np.zeros(0)
    order = np.argsort(t, kind="stable")
    return Timeline(
        horizon_s=horizon_s,
        t_s=t[order],
        cls=np.concatenate(cls_parts)[order] if cls_parts else np.zeros(0, dtype=np.int64),
        kind=np.concatenate(kind_parts)[order] if kind_parts else np.zeros(0, dtype=np.int8),
        back_s=np.concatenate(back_parts)[order] if back_parts else np.zeros(0),
    )


def state_counts(tl: Timeline, n_classes: int, up_kind: int, down_kind: int) -> NDArray[np.int64]:
    """Per-class running count of a +1/-1 process, one row per event plus the start.

    Row 0 is the state at t=0; row k+1 the state just after event k.
    """
    delta = np.zeros((tl.t_s.size + 1, n_classes), dtype=np.int64)
    rows = np.arange(1, tl.t_s.size + 1)
    on = tl.kind == up_kind
    off = tl.kind == down_kind
    np.add.at(delta, (rows[on], tl.cls[on]), 1)
    np.add.at(delta, (rows[off], tl.cls[off]), -1)
    return np.cumsum(delta, axis=0)
