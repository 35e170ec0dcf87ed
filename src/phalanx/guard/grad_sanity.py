"""Each participant checks its own gradient contribution before it votes to commit.

The contribution of a slice of n samples is (n/B) times the slice's mean
gradient; multiplied back by B/n its norm is comparable across steps and
shares. A value that is not finite, or far above this replica's own recent
median, is a fault (a flipped exponent bit turns a gradient into ~1e300),
not training: the replica vetoes and the step is recomputed without it.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

# How far above its recent median a replica's normalised gradient norm may go.
# Real loss spikes are a few x; corrupted exponents are many orders of magnitude.
DEFAULT_FACTOR = 50.0
HISTORY = 20
MIN_HISTORY = 5


@dataclass
class GradientSanity:
    factor: float = DEFAULT_FACTOR
    _norms: deque[float] = field(default_factory=lambda: deque(maxlen=HISTORY))

    def check(self, contribution_norm: float, share: int, global_batch_size: int) -> str | None:
        """None when the contribution looks sound, else the reason for a veto."""
        if share == 0:
            return None
        if not math.isfinite(contribution_norm):
            return "non-finite gradient"
        normalised = contribution_norm * global_batch_size / share
        if len(self._norms) >= MIN_HISTORY:
            ordered = sorted(self._norms)
            median = ordered[len(ordered) // 2]
            # A small slice's mean gradient is noisier: allow more room for it.
            if median > 0 and normalised > self.factor * median * max(1.0, math.sqrt(8 / share)):
                return f"gradient norm {normalised:.3g} is {normalised / median:.0f}x this replica's median"
        return None

    def accept(self, contribution_norm: float, share: int, global_batch_size: int) -> None:
        """Remember a committed contribution's norm (vetoed ones are not learnt from)."""
        if share > 0 and math.isfinite(contribution_norm):
            self._norms.append(contribution_norm * global_batch_size / share)
