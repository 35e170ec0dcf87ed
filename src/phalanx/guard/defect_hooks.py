"""A defective emulated chip in training: bit flips in its linear layers' outputs.

The emulated chip of `fleet.toml` with `defects.flip_rate` flips random bits
of that fraction of output elements of every nn.Linear forward (the matmul
results), the way a chip with a bad multiplier would. Deterministic for a
seed, so a test can reproduce a run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from phalanx.faults.bitflip import flip_random_bits


class DefectiveLinears:
    def __init__(self, model: torch.nn.Module, flip_rate: float, seed: int) -> None:
        self.flip_rate = flip_rate
        self.flipped = 0
        self._rng = np.random.default_rng(seed)
        self._handles = [
            module.register_forward_hook(self._corrupt)
            for module in model.modules()
            if isinstance(module, torch.nn.Linear)
        ]

    @torch.no_grad()
    def _corrupt(
        self, module: torch.nn.Module, inputs: tuple[Any, ...], output: torch.Tensor
    ) -> None:
        self.flipped += flip_random_bits(output, self.flip_rate, self._rng)

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()
