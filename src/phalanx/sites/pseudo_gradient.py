"""The outer round's pseudo-gradient: per-site (anchor - params), weighted by samples.

Sites run at different speeds, so in one round a fast site may process twice
the samples of a slow one. Averaging by site count would give the slow site's
samples twice the weight of the fast site's (the same error as DDP's divide by
world size, one level up); weighting each site by the samples it processed
since the last outer step gives every sample the same weight:

    g = sum_i (n_i / N) * delta_i,   N = sum_i n_i,   delta_i = anchor - params_i

A site with n_i = 0 (cut off before its first inner step, or dead) is left
out and the others' weights renormalised; its delta is never read.

Summation order is fixed: ascending site index, whatever order the caller
lists the sites in, so every site computes a bit-identical g. With one
contributing site the weight is exactly 1.0 and g equals its delta.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class SiteDelta:
    """One site's contribution to a round: its index, samples since the last outer step, delta."""

    site: int
    samples: int
    delta: Sequence[torch.Tensor]  # anchor - params, tensor by tensor


def site_delta(
    anchor: Sequence[torch.Tensor], params: Sequence[torch.Tensor]
) -> list[torch.Tensor]:
    """anchor - params, tensor by tensor, in the anchor's dtype (the direction to descend)."""
    if len(anchor) != len(params):
        raise ValueError(f"anchor has {len(anchor)} tensors, the parameters {len(params)}")
    return [a - p.detach().to(a.dtype) for a, p in zip(anchor, params)]


def weighted_pseudo_gradient(deltas: Sequence[SiteDelta]) -> list[torch.Tensor]:
    """The sample-weighted average of the sites' deltas, summed in ascending site order."""
    _check_sites(deltas)
    contributing = sorted((d for d in deltas if d.samples > 0), key=lambda d: d.site)
    if not contributing:
        raise ValueError(
            "no site processed a sample this round: there is nothing to average "
            "(skip the outer step and keep the anchor)"
        )
    _check_shapes(contributing)
    total = sum(d.samples for d in contributing)
    result: list[torch.Tensor] | None = None
    for contribution in contributing:
        weight = contribution.samples / total  # one float64 division per site
        if result is None:
            result = [t.detach() * weight for t in contribution.delta]
        else:
            for acc, t in zip(result, contribution.delta):
                acc.add_(t.detach(), alpha=weight)
    assert result is not None
    return result


def _check_sites(deltas: Sequence[SiteDelta]) -> None:
    seen: set[int] = set()
    for d in deltas:
        if isinstance(d.samples, bool) or not isinstance(d.samples, int) or d.samples < 0:
            raise ValueError(f"site {d.site}: samples must be an integer >= 0, got {d.samples!r}")
        if d.site in seen:
            raise ValueError(f"site {d.site} contributes twice to one round")
        seen.add(d.site)


def _check_shapes(contributing: Sequence[SiteDelta]) -> None:
    first = contributing[0]
    for other in contributing[1:]:
        if len(other.delta) != len(first.delta) or any(
            a.shape != b.shape or a.dtype != b.dtype for a, b in zip(first.delta, other.delta)
        ):
            raise ValueError(
                f"site {other.site}'s delta does not match site {first.site}'s "
                "(tensor count, shapes or dtypes): the sites hold different models"
            )
