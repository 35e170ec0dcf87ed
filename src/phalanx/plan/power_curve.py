"""Power-to-speed curve of a device class: what a power limit costs in speed.

Points are (power fraction of power_max_w, speed fraction of full speed),
measured or published for the chip. Between points we interpolate linearly;
(1.0, 1.0) is always on the curve. The default is a typical shape for GPUs
under a power cap (half the power keeps about 80% of the speed); replace it
with a measured one.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from phalanx.errors import UsageError

DEFAULT_CURVE: tuple[tuple[float, float], ...] = ((0.5, 0.8), (0.75, 0.94), (1.0, 1.0))


def parse_curve(value: Any, field: str) -> tuple[tuple[float, float], ...]:
    fix = "write power_curve = [[0.5, 0.8], [1.0, 1.0]] (power fraction, speed fraction)"
    if not isinstance(value, list) or not value:
        raise UsageError(
            field, "must be a list of [power_fraction, speed_fraction] pairs", fix, value
        )
    points: list[tuple[float, float]] = []
    for pair in value:
        ok = isinstance(pair, list) and len(pair) == 2
        ok = ok and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in pair)
        if not ok or not (0 < pair[0] <= 1 and 0 < pair[1] <= 1):
            raise UsageError(field, "each point must be [p, s] with 0 < p, s <= 1", fix, pair)
        points.append((float(pair[0]), float(pair[1])))
    points.sort()
    if points[-1][0] != 1.0:
        points.append((1.0, 1.0))
    speeds = [s for _, s in points]
    if any(b < a for a, b in itertools.pairwise(speeds)):
        raise UsageError(field, "speed must not fall when power rises", fix, value)
    return tuple(points)


def speed_at_power(curve: tuple[tuple[float, float], ...], power_frac: float) -> float:
    p = [x for x, _ in curve]
    s = [y for _, y in curve]
    return float(np.interp(power_frac, p, s))


def power_at_speed(curve: tuple[tuple[float, float], ...], speed_frac: float) -> float:
    """Smallest power fraction that still reaches `speed_frac` (used for throttled chips)."""
    p = [x for x, _ in curve]
    s = [y for _, y in curve]
    if speed_frac <= s[0]:
        # Below the lowest measured point, assume power falls in proportion to speed.
        return p[0] * speed_frac / s[0]
    return float(np.interp(speed_frac, s, p))


def best_energy_point(curve: tuple[tuple[float, float], ...]) -> tuple[float, float]:
    """The curve point with the fewest joules per sample: min power / speed."""
    return min(curve, key=lambda ps: (ps[0] / ps[1], -ps[0]))
