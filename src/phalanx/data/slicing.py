"""Global sample order and per-step slices.

The global sample stream is the concatenation of seeded per-epoch
permutations of the dataset (data/permutation.py). Step s covers stream positions [s*B, (s+1)*B);
participant k takes the contiguous sub-range that follows the shares of the
participants before it. Because everything is a function of (seed, step,
shares), every replica derives the same slices without talking, a retried
step reuses the same samples, and an epoch's samples are used exactly once.
"""

from __future__ import annotations

from phalanx.data.permutation import epoch_indices, epoch_permutation

__all__ = [
    "epoch_permutation",
    "microbatches",
    "participant_ranges",
    "position_to_sample",
    "sample_indices",
    "step_range",
]


def step_range(step: int, global_batch_size: int) -> tuple[int, int]:
    """Stream positions [start, end) that step `step` covers."""
    return step * global_batch_size, (step + 1) * global_batch_size


def participant_ranges(
    step: int, global_batch_size: int, shares: list[int]
) -> list[tuple[int, int]]:
    """Contiguous stream ranges, one per participant, in participant order."""
    if sum(shares) != global_batch_size:
        raise ValueError(f"shares {shares} do not sum to the global batch {global_batch_size}")
    start, _ = step_range(step, global_batch_size)
    ranges = []
    for share in shares:
        ranges.append((start, start + share))
        start += share
    return ranges


def position_to_sample(position: int, seed: int, num_samples: int) -> tuple[int, int]:
    """(epoch, dataset index) of one stream position."""
    epoch, offset = divmod(position, num_samples)
    return epoch, epoch_indices(seed, epoch, num_samples, range(offset, offset + 1))[0]


def sample_indices(start: int, end: int, seed: int, num_samples: int) -> list[int]:
    """Dataset indices of stream positions [start, end), across epoch boundaries."""
    indices: list[int] = []
    position = start
    while position < end:
        epoch, offset = divmod(position, num_samples)
        take = min(end - position, num_samples - offset)
        indices.extend(epoch_indices(seed, epoch, num_samples, range(offset, offset + take)))
        position += take
    return indices


def microbatches(indices: list[int], max_microbatch: int | None) -> list[list[int]]:
    """Split a slice into micro-batches no larger than `max_microbatch`."""
    if not indices:
        return []
    size = max_microbatch if max_microbatch else len(indices)
    return [indices[i : i + size] for i in range(0, len(indices), size)]
