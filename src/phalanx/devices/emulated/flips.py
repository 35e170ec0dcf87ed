"""Silent data corruption: flip random bits of random output elements."""

from __future__ import annotations

import numpy as np
import torch

_INT_VIEW = {
    8: (torch.int64, np.uint64, np.int64),
    4: (torch.int32, np.uint32, np.int32),
    2: (torch.int16, np.uint16, np.int16),
}


def flip_bits(out: torch.Tensor, rate: float, rng: np.random.Generator) -> int:
    """Flip one random bit in each of ~Binomial(numel, rate) elements, in place.

    Returns how many flips were made. The bit is uniform over the element's
    width, so a flip may hit the sign, exponent or any mantissa bit.
    """
    n = out.numel()
    if rate <= 0.0 or n == 0:
        return 0
    count = int(rng.binomial(n, rate))
    if count == 0:
        return 0
    torch_int, np_uint, np_int = _INT_VIEW[out.element_size()]
    width = out.element_size() * 8
    positions = torch.from_numpy(rng.integers(0, n, size=count))
    bits = rng.integers(0, width, size=count).astype(np_uint)
    masks = torch.from_numpy((np.ones(count, dtype=np_uint) << bits).view(np_int))
    flat = out.view(-1).view(torch_int)
    flat[positions] = flat[positions] ^ masks
    return count
