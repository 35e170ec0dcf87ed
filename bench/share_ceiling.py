"""The best heterogeneous efficiency whole samples allow.

A chip computes whole samples. With speeds 1, 1, 0.5, 0.5, 0.25, 0.25, 0.125,
0.125 and a batch of 64, an even split of time would give each chip 17.07 time
units of work; no integer split does better than 18 (the 0.125 chips hold 2
samples = 16 units, one more would be 24), so even a perfect runtime stops at
17.07 / 18 = 0.95 of the ideal. Scenario 1's goal is measured against the ideal
of split samples; this says how much of the gap the batch itself leaves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

_EPS = 1e-9


def whole_sample_ceiling(speeds: Sequence[float], batch: int) -> float:
    """Throughput / ideal of the best integer split of `batch` over chips of `speeds`,
    each chip holding at least one sample (as phalanx gives every participant).

    Times are in sample-times of a speed-1 chip (a chip of speed s takes 1/s each).
    """
    if batch < len(speeds) or not speeds or min(speeds) <= 0:
        raise ValueError("positive speeds and at least one sample per chip are needed")
    even_time = batch / sum(speeds)  # every chip busy for the same time (split samples)
    # The step lasts as long as its slowest chip: the least such time that whole
    # samples can fill is one of the chips' n / speed.
    candidates = sorted({n / s for s in speeds for n in range(1, batch + 1)})
    for step_time in candidates:
        holds = [math.floor(step_time * s + _EPS) for s in speeds]
        if min(holds) >= 1 and sum(holds) >= batch:
            return even_time / step_time
    raise AssertionError("unreachable: the batch on the fastest chip alone always fits")
