"""A defective emulated chip in training: bit flips in its linear layers' outputs.

The emulated chip of `fleet.toml` with `defects.flip_rate` flips random bits
of that fraction of output elements of every nn.Linear forward (the matmul
results), the way a chip with a bad multiplier would. Deterministic for a
seed, so a test can reproduce a run.
"""

from __future__ import annotations

from typing import Any

import torch

_INT_VIEW = {
    torch.float64: torch.int64,
    torch.float32: torch.int32,
    torch.float16: torch.int16,
    torch.bfloat16: torch.int16,
}


def flip_random_bits(tensor: torch.Tensor, rate: float, generator: torch.Generator) -> int:
    """Flip one random bit in each of ~rate*numel elements, in place; return how many."""
    flat = tensor.detach().reshape(-1)
    count = int(
        torch.binomial(torch.tensor(float(flat.numel())), torch.tensor(rate), generator=generator)
    )
    if count == 0 or flat.dtype not in _INT_VIEW:
        return 0
    bits = flat.view(_INT_VIEW[flat.dtype])
    width = bits.element_size() * 8
    positions = torch.randint(0, flat.numel(), (count,), generator=generator)
    bit = torch.randint(0, width, (count,), generator=generator)
    masks = torch.ones(count, dtype=bits.dtype).bitwise_left_shift(bit.to(bits.dtype))
    bits[positions] = bits[positions] ^ masks
    return count


class DefectiveLinears:
    def __init__(self, model: torch.nn.Module, flip_rate: float, seed: int) -> None:
        self.flip_rate = flip_rate
        self.flipped = 0
        self._generator = torch.Generator().manual_seed(seed)
        self._handles = [
            module.register_forward_hook(self._corrupt)
            for module in model.modules()
            if isinstance(module, torch.nn.Linear)
        ]

    @torch.no_grad()
    def _corrupt(
        self, module: torch.nn.Module, inputs: tuple[Any, ...], output: torch.Tensor
    ) -> None:
        self.flipped += flip_random_bits(output, self.flip_rate, self._generator)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
