"""Is a slice's gradient plausible? One allowance per slice, whoever computes it.

A participant's contribution for a slice of n samples is (n/B) times the
slice's mean gradient; multiplied back by B/n its norm is the norm of that
mean (the slice's *normalised norm*). Its scale is set by the fleet, not by
the chip: the reference is the median norm of the last committed global
gradients (the summed buffer, identical on every replica and kept in the
replicated fleet state), and a slice of n samples may exceed it by
`FACTOR * sqrt(B/n)`, the room a mean over fewer samples needs. So the same
samples get the same verdict on any chip, with any share: a small slice's
outlier is judged as it would be if a fast chip computed it.

A veto only says the numbers are implausible. Whether the chip or the data
is to blame is decided by evidence that differs between chips
(`reproduces`): the vetoing chip's own rerun of the slice, and a peer's
recomputation of the same slice (see runtime/step.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# How far above the fleet's median global gradient norm a slice's normalised norm may go,
# before the sqrt(B/n) room for small slices. Real loss spikes are a few x; a flipped
# exponent bit is hundreds of orders of magnitude.
FACTOR = 50.0
HISTORY = 20  # committed global norms kept in the fleet state
MIN_HISTORY = 5  # below this, only non-finite gradients are vetoed
# Two computations of one slice agree when their normalised norms are this close: loose
# enough for different kernels (another vendor, non-deterministic reductions), far
# tighter than any corruption that could cause a veto.
AGREE_RTOL = 1e-3


@dataclass(frozen=True)
class SliceVerdict:
    vetoed: bool
    norm: float  # normalised norm of the slice's gradient (inf/nan when not finite)
    reason: str = ""


def reference_norm(history: list[float]) -> float | None:
    """The median committed global gradient norm; None while too few are known."""
    finite = sorted(v for v in history if math.isfinite(v) and v > 0)
    if len(finite) < MIN_HISTORY:
        return None
    return finite[len(finite) // 2]


def remember_global_norm(history: list[float], norm: float) -> list[float]:
    """The history after a committed step (non-finite norms are never committed)."""
    return [*history, float(norm)][-HISTORY:] if math.isfinite(norm) else list(history)


def allowance(reference: float, samples: int, global_batch_size: int) -> float:
    return FACTOR * reference * math.sqrt(global_batch_size / samples)


def judge(
    contribution_norm: float,
    samples: int,
    global_batch_size: int,
    history: list[float],
    abft_failures: int = 0,
) -> SliceVerdict:
    """The verdict on one slice's weighted contribution (its norm, as it will be summed)."""
    normalised = contribution_norm * global_batch_size / samples if samples else 0.0
    if samples == 0:
        return SliceVerdict(False, 0.0)
    if abft_failures:
        return SliceVerdict(
            True, normalised, f"ABFT checksum failed in {abft_failures} linear layer output(s)"
        )
    if not math.isfinite(normalised):
        return SliceVerdict(True, normalised, "non-finite gradient")
    reference = reference_norm(history)
    if reference is None:
        return SliceVerdict(False, normalised)
    limit = allowance(reference, samples, global_batch_size)
    if normalised > limit:
        return SliceVerdict(
            True,
            normalised,
            f"gradient norm {normalised:.3g} of {samples} samples is "
            f"{normalised / reference:.0f}x the fleet's median {reference:.3g} "
            f"(allowed {limit / reference:.0f}x for {samples} of {global_batch_size})",
        )
    return SliceVerdict(False, normalised)


def reproduces(first: SliceVerdict, second: SliceVerdict) -> bool:
    """Do two computations of the same slice agree (same verdict, same norm)?"""
    if first.vetoed != second.vetoed:
        return False
    a, b = first.norm, second.norm
    if not (math.isfinite(a) and math.isfinite(b)):
        # Both non-finite is agreement (the data overflows on any chip); one is not.
        return not math.isfinite(a) and not math.isfinite(b)
    return abs(a - b) <= AGREE_RTOL * max(abs(a), abs(b))
