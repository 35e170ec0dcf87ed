"""Algorithm-based fault tolerance for linear layers: a checksum per output.

For y = x W^T + b, the column sums must satisfy sum_rows(y) = sum_rows(x) W^T
+ rows * b. Checking that in float64 costs one vector-matrix product per
layer (against the layer's matrix-matrix product) and catches any corrupted
output element larger than rounding noise: the signature of a chip that
flips bits in its matmul results.
"""

from __future__ import annotations

from typing import Any

import torch

# Tolerance in units of machine epsilon of the layer's dtype, per summed term.
_EPS_FACTOR = 64.0


class AbftMonitor:
    """Forward hooks on every nn.Linear; remembers whether a check failed this step."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.failures = 0
        self.worst: float = 0.0
        self._handles = [
            module.register_forward_hook(self._check)
            for module in model.modules()
            if isinstance(module, torch.nn.Linear)
        ]

    def reset(self) -> None:
        self.failures = 0
        self.worst = 0.0

    def close(self) -> None:
        for handle in self._handles:
            handle.remove()

    @torch.no_grad()
    def _check(
        self, module: torch.nn.Linear, inputs: tuple[Any, ...], output: torch.Tensor
    ) -> None:
        x = inputs[0].detach().reshape(-1, module.in_features).double()
        y = output.detach().reshape(-1, module.out_features).double()
        weight = module.weight.detach().double()
        expected = x.sum(0) @ weight.T
        scale = x.abs().sum(0) @ weight.abs().T
        if module.bias is not None:
            bias = module.bias.detach().double()
            expected = expected + x.shape[0] * bias
            scale = scale + x.shape[0] * bias.abs()
        eps = torch.finfo(output.dtype).eps if output.dtype.is_floating_point else 0.0
        tolerance = _EPS_FACTOR * eps * module.in_features * (scale + 1e-300)
        excess = ((y.sum(0) - expected).abs() - tolerance).max()
        if not torch.isfinite(y).all() or float(excess) > 0:
            self.failures += 1
            self.worst = max(self.worst, float(excess) if torch.isfinite(excess) else float("inf"))
