"""Bit flips: the one implementation behind every injected corruption.

Used by the fault injector (`--fault sdc:...`: one flip, planned), by a
defective emulated chip in training (guard/defect_hooks.py: flips in its
linear layers' outputs) and by the emulated chip's qualification kernels
(devices/emulated/chip.py). Flips act on the raw bits in place, on any
device, for every floating dtype.
"""

from __future__ import annotations

import numpy as np
import torch

_INT_VIEW = {8: torch.int64, 4: torch.int32, 2: torch.int16}
# The highest exponent bit of each floating width: flipping it in a value of
# magnitude below 2 multiplies it by 2^(2^(exponent bits - 1)), e.g. 2^1024.
_TOP_EXPONENT_BIT = {torch.float64: 62, torch.float32: 30, torch.float16: 14, torch.bfloat16: 14}


def flip_bit(tensor: torch.Tensor, bit: int | None = None) -> int:
    """Flip one bit of the element of largest magnitude; by default its top exponent bit.

    The largest element is the one a corruption matters most for; flipping the top
    exponent bit of a non-zero value below 2 makes it astronomically large (of an
    exact zero, it makes a plain 2.0, which no norm check can tell from training).
    Returns the flipped element's index.
    """
    chosen = _TOP_EXPONENT_BIT[tensor.dtype] if bit is None else int(bit)
    flat = tensor.detach().view(-1)
    index = int(flat.abs().argmax())
    _xor(flat, torch.tensor([index], device=flat.device), torch.tensor([chosen]))
    return index


def flip_random_bits(tensor: torch.Tensor, rate: float, rng: np.random.Generator) -> int:
    """Flip one uniformly random bit in each of ~Binomial(numel, rate) elements, in place.

    Returns how many flips were made. A flip may hit the sign, the exponent or
    any mantissa bit. Deterministic for a seeded `rng`.
    """
    flat = tensor.detach().reshape(-1)
    count = int(rng.binomial(flat.numel(), rate)) if rate > 0 and flat.numel() else 0
    if count == 0 or flat.element_size() not in _INT_VIEW:
        return 0
    positions = torch.from_numpy(rng.integers(0, flat.numel(), size=count)).to(flat.device)
    bits = torch.from_numpy(rng.integers(0, flat.element_size() * 8, size=count))
    _xor(flat, positions, bits)
    return count


def _xor(flat: torch.Tensor, positions: torch.Tensor, bits: torch.Tensor) -> None:
    words = flat.view(_INT_VIEW[flat.element_size()])
    one = torch.ones(len(bits), dtype=words.dtype)
    masks = one.bitwise_left_shift(bits.to(words.dtype)).to(words.device)
    words[positions] = words[positions] ^ masks
