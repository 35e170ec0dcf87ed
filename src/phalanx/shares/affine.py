"""Step time as fixed cost + per-sample cost, and shares that make every chip finish together.

A chip's compute time for n samples is close to a + b*n: a fixed part (kernel
launches, weight-gradient passes, Python) and a per-sample part. Shares
proportional to measured samples/s are unstable when a > 0: a chip given
fewer samples measures fewer samples/s, gets fewer again, and sinks to one
sample. Fitting (a, b) per chip from its recent (n, t) pairs and solving for
equal finishing times avoids that, and lands on the balance in a step or two.
Everything here is pure and deterministic: replicas agree without talking.
"""

from __future__ import annotations

import itertools
import math
import statistics
from collections.abc import Sequence

# Pairs of (samples, seconds) kept per chip.
HISTORY = 16
# Timings whose median says what the chip takes now (robust to one slow step).
RECENT = 5
# The relative noise of one timing assumed before there are many (a shared host's),
# and how many timings that assumption is worth.
PRIOR_NOISE = 0.10
PRIOR_WEIGHT = 2
# A fitted per-sample cost below this fraction of the plain t/n is noise (two
# nearby sizes, one slow step), not a chip made of fixed cost: do not trust it.
_MIN_SLOPE_FRACTION = 0.25
# A line is fitted only through sizes this far apart (largest / smallest). Between
# nearby sizes the slope is the timings' noise over a small difference: a chip that ran
# 8 and 9 samples (a fleet that lost a member) was fitted 75% fixed cost, given 12,
# and took 30% longer than predicted (bench, 4 emulated chips, a kill).
_MIN_SIZE_SPREAD = 1.5


def record_timing(history: list[list[float]], samples: int, seconds: float) -> list[list[float]]:
    return [*history, [float(samples), float(seconds)]][-HISTORY:]


def fit_cost(history: list[list[float]], previous: Sequence[float] | None) -> tuple[float, float]:
    """(fixed_s, per_sample_s) from a chip's recent timings.

    Sizes far enough apart and a sane slope: a least-squares line (a >= 0).
    Otherwise keep the previous fixed cost and rescale the per-sample cost to
    the recent times (a chip that slowed down shows up at once). Nothing known
    yet: a proportional model, a = 0.
    """
    points = [(n, t) for n, t in history if n > 0 and t > 0]
    if not points:
        raise ValueError("no timings")
    recent_n = points[-1][0]
    slope: float | None = None
    sizes = [n for n, _ in points]
    if max(sizes) >= _MIN_SIZE_SPREAD * min(sizes):
        mean_n = statistics.fmean(n for n, _ in points)
        mean_t = statistics.fmean(t for _, t in points)
        var_n = sum((n - mean_n) ** 2 for n, _ in points)
        slope = sum((n - mean_n) * (t - mean_t) for n, t in points) / var_n
    recent_t = _recent_time(points, recent_n, slope, previous)
    plain_b = recent_t / recent_n
    floor_b = _MIN_SLOPE_FRACTION * plain_b
    if slope is not None and slope >= floor_b:
        # Anchor the line on what the chip does now, at its newest size.
        fixed = min(max(0.0, mean_t - slope * mean_n), recent_t)
        return fixed, max((recent_t - fixed) / recent_n, floor_b)
    if previous is not None:
        fixed = min(float(previous[0]), recent_t)
        return fixed, max((recent_t - fixed) / recent_n, floor_b)
    return 0.0, plain_b


def _recent_time(
    points: list[tuple[float, float]],
    recent_n: float,
    slope: float | None,
    previous: Sequence[float] | None,
) -> float:
    """What the chip takes now for `recent_n` samples: the median of its last RECENT
    timings, each moved to that size along the current line.

    One measurement alone (the first after a share change) would let a single slow
    step from a neighbouring process move the shares; a real change of speed wins
    the median within a few steps.
    """
    if slope is None or slope <= 0:
        slope = float(previous[1]) if previous is not None else None
    recent = points[-RECENT:]
    if slope is None:  # nothing known about the line yet: proportional
        moved = [t * recent_n / n for n, t in recent]
    else:
        moved = [t + slope * (recent_n - n) for n, t in recent]
    return max(statistics.median(moved), 1e-9)


def relative_uncertainty(history: list[list[float]], cost: Sequence[float]) -> float:
    """How far off the fitted line's predictions may be, relative: twice the standard
    error of the median of the recent timings the prediction is anchored on.

    The noise of one measurement comes from the differences between consecutive
    measured/predicted ratios (their median absolute value, as a robust sigma): a
    chip that really changed speed shows one large difference, which the median
    ignores, so its shares still move at once. A share change that promises a gain
    below this is noise, not balance.
    """
    points = [(n, t) for n, t in history if n > 0 and t > 0]
    if not points:
        return 0.0
    fixed, per_sample = cost
    ratios = [t / max(fixed + per_sample * n, 1e-12) for n, t in points]
    steps = sorted(abs(b - a) for a, b in itertools.pairwise(ratios))
    measured = steps[len(steps) // 2] * 1.4826 / math.sqrt(2) if steps else PRIOR_NOISE
    # Few timings say little about the noise: lean on a prior until they are many (the
    # first fits after a start would otherwise move shares on a lucky quiet pair); the
    # prior only ever widens the band.
    shrunk = (measured * len(steps) + PRIOR_NOISE * PRIOR_WEIGHT) / (len(steps) + PRIOR_WEIGHT)
    # The prediction is anchored on the median of the last RECENT timings
    # (`_recent_time`): its standard error is about 1.25 sigma / sqrt(RECENT).
    anchored = min(len(points), RECENT)
    return 2.0 * 1.25 * max(measured, shrunk) / math.sqrt(anchored)


def equal_time_weights(
    total: int, costs: Sequence[tuple[float, float]], caps: Sequence[int | None]
) -> list[float]:
    """Real-valued shares (>= 0, <= cap) summing to `total` with equal finishing times.

    A chip whose fixed cost exceeds the common finishing time gets 0.
    """

    def shares_at(time_s: float) -> list[float]:
        out = []
        for (fixed, per_sample), cap in zip(costs, caps):
            n = (time_s - fixed) / per_sample if per_sample > 0 else total
            upper = total if cap is None else cap
            out.append(min(max(n, 0.0), float(upper)))
        return out

    low = 0.0
    high = max(f + b * total for f, b in costs) + 1.0
    for _ in range(100):  # bisection on the common finishing time
        middle = (low + high) / 2
        if sum(shares_at(middle)) < total:
            low = middle
        else:
            high = middle
    weights = shares_at(high)
    return [w if math.isfinite(w) else 1.0 for w in weights]


def predicted_time_s(shares: Sequence[int], costs: Sequence[tuple[float, float]]) -> float:
    return max((f + b * n for n, (f, b) in zip(shares, costs) if n > 0), default=0.0)
