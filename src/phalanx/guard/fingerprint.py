"""A cheap, exact, vendor-neutral fingerprint of a replica's parameters.

In pure data parallelism every replica holds bit-identical parameters. The
fingerprint sums the raw bits of every tensor as integers (plus a second,
position-weighted sum): integer sums do not depend on reduction order, so two
devices of different vendors agree exactly when their bits agree, and the
work is one pass over memory on the device itself. The result is split into
16-bit chunks, which ride exactly in a float32 or float64 allreduce.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

CHUNKS_PER_WORD = 4  # an int64 as four 16-bit chunks, exact in float32
WORDS = 2  # plain sum and position-weighted sum
WIDTH = WORDS * CHUNKS_PER_WORD
_MASK64 = (1 << 64) - 1

_weights: dict[tuple[int, torch.device], torch.Tensor] = {}


def _integer_view(tensor: torch.Tensor) -> torch.Tensor:
    flat = tensor.detach().reshape(-1)
    if flat.dtype in (torch.float64, torch.int64):
        return flat.view(torch.int64)
    if flat.dtype in (torch.float32, torch.int32):
        return flat.view(torch.int32).to(torch.int64)
    if flat.dtype in (torch.float16, torch.bfloat16, torch.int16):
        return flat.view(torch.int16).to(torch.int64)
    return flat.to(torch.int64)


def _position_weights(count: int, device: torch.device) -> torch.Tensor:
    key = (count, device)
    if key not in _weights:
        # Odd multipliers: a swapped pair of elements changes the weighted sum.
        _weights[key] = torch.arange(count, device=device, dtype=torch.int64) * 2 + 1
    return _weights[key]


def fingerprint_words(tensors: Iterable[torch.Tensor]) -> tuple[int, int]:
    plain = 0
    weighted = 0
    for tensor in tensors:
        bits = _integer_view(tensor)
        # int64 sums wrap modulo 2^64 on every backend: order does not matter.
        plain = (plain + int(bits.sum())) & _MASK64
        weighted = (
            weighted + int((bits * _position_weights(bits.numel(), bits.device)).sum())
        ) & _MASK64
    return plain, weighted


def fingerprint_chunks(tensors: Iterable[torch.Tensor]) -> list[float]:
    chunks: list[float] = []
    for word in fingerprint_words(tensors):
        chunks.extend(float((word >> (16 * i)) & 0xFFFF) for i in range(CHUNKS_PER_WORD))
    return chunks


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [
        v
        for state in optimizer.state.values()
        for v in state.values()
        if isinstance(v, torch.Tensor)
    ]


def majority(
    fingerprints: dict[str, tuple[float, ...]],
) -> tuple[tuple[float, ...] | None, list[str]]:
    """(the value a strict majority holds, the replicas that differ from it).

    With no strict majority (e.g. two replicas that disagree) returns
    (None, everyone): the caller must break the tie another way.
    """
    counts: dict[tuple[float, ...], int] = {}
    for value in fingerprints.values():
        counts[value] = counts.get(value, 0) + 1
    value, count = max(counts.items(), key=lambda item: item[1])
    if count * 2 <= len(fingerprints):
        return None, sorted(fingerprints)
    return value, sorted(name for name, v in fingerprints.items() if v != value)
