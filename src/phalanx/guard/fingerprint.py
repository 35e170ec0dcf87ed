"""A cheap, exact, vendor-neutral fingerprint of a replica's parameters.

In pure data parallelism every replica holds bit-identical parameters. The
fingerprint sums the raw bits of every tensor as integers (plus a second,
position-weighted sum): integer sums do not depend on reduction order, so two
devices of different vendors agree exactly when their bits agree. The work is
one pass over memory on the device itself: each tensor's bits are summed in
rows of ROW elements (the sum accumulates in int64 without an int64 copy of
the tensor), and the row sums, weighted by odd row numbers, give the second
word. A changed bit anywhere changes the first word; elements swapped between
rows change the second (a swap inside one row of ROW elements does not, nor
does it change the first: see docs/sdc.md). The result is split into 16-bit
chunks, which ride exactly in a float32 or float64 allreduce.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

CHUNKS_PER_WORD = 4  # an int64 as four 16-bit chunks, exact in float32
WORDS = 2  # plain sum and position-weighted sum
WIDTH = WORDS * CHUNKS_PER_WORD
ROW = 1024
_MASK64 = (1 << 64) - 1
# Bits are read as unsigned (zero-extended) integers, so that the CPU path (numpy, whose
# integer reductions are ~7x faster than torch's on the CPU) and the device path agree.
_NUMPY_UINT = {8: np.uint64, 4: np.uint32, 2: np.uint16, 1: np.uint8}
_TORCH_INT = {8: torch.int64, 4: torch.int32, 2: torch.int16, 1: torch.uint8}


def _row_sums(tensor: torch.Tensor) -> np.ndarray | torch.Tensor:
    """Sums of the tensor's raw bits (unsigned) in rows of ROW elements; the tail is a row."""
    flat = tensor.detach().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.view(torch.uint8)
    size = flat.element_size()
    full = flat.numel() // ROW * ROW
    if flat.device.type == "cpu":
        bits = flat.view(_TORCH_INT[size]).numpy().view(_NUMPY_UINT[size])
        parts = [bits[:full].reshape(-1, ROW).sum(axis=1, dtype=np.uint64)] if full else []
        if full < bits.size:
            parts.append(np.array([bits[full:].sum(dtype=np.uint64)], dtype=np.uint64))
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint64)
    wide = flat.view(_TORCH_INT[size]).to(torch.int64)
    if size < 8:
        wide = wide & ((1 << (8 * size)) - 1)
    rows = [wide[:full].view(-1, ROW).sum(dim=1)] if full else []
    if full < wide.numel():
        rows.append(wide[full:].sum().reshape(1))
    return torch.cat(rows) if rows else torch.zeros(0, dtype=torch.int64, device=flat.device)


def _words(tensor: torch.Tensor, row_base: int) -> tuple[int, int, int]:
    """(plain sum, weighted sum, rows used) of one tensor's bits, rows numbered from row_base."""
    rows = _row_sums(tensor)
    count = int(rows.shape[0])
    if count == 0:
        return 0, 0, 0
    # Integer arithmetic wraps modulo 2^64 on every backend: order does not matter.
    if isinstance(rows, np.ndarray):
        odd = np.arange(row_base, row_base + count, dtype=np.uint64) * np.uint64(2) + np.uint64(1)
        return int(rows.sum(dtype=np.uint64)), int((rows * odd).sum(dtype=np.uint64)), count
    weights = torch.arange(row_base, row_base + count, device=rows.device) * 2 + 1
    return int(rows.sum()) & _MASK64, int((rows * weights).sum()) & _MASK64, count


def fingerprint_words(tensors: Iterable[torch.Tensor]) -> tuple[int, int]:
    plain = weighted = 0
    row_base = 0
    for tensor in tensors:
        add_plain, add_weighted, rows = _words(tensor, row_base)
        plain = (plain + add_plain) & _MASK64
        weighted = (weighted + add_weighted) & _MASK64
        row_base += rows
    return plain, weighted


def fingerprint_chunks(tensors: Iterable[torch.Tensor]) -> list[float]:
    chunks: list[float] = []
    for word in fingerprint_words(tensors):
        chunks.extend(float((word >> (16 * i)) & 0xFFFF) for i in range(CHUNKS_PER_WORD))
    return chunks


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
