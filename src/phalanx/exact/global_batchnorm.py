"""BatchNorm with statistics over the global batch, across every replica's slice.

In training, a BatchNorm layer normalises with the mean and variance of the
batch it is given. On a fleet each replica is given its slice, so the result
would depend on the split. Here each BatchNorm forward sums its slice's
per-channel (sum, sum of squares, count) and the fleet sums those (one small
allreduce through the step's `LayerStatsSync`): every replica normalises with
the global batch's statistics, as one process computing the whole batch
would. The backward needs two more global sums per channel (of the output
gradient, and of it times the normalised input) for the same reason. This is
SyncBatchNorm's arithmetic, carried by torchft's fault-tolerant collectives:
a peer dying inside one fails the step, which is retried.

Sums accumulate in float64, so the statistics do not depend on how the
batch was split beyond rounding. Running statistics are updated from the
global mean and (unbiased) variance, identically on every replica.
"""

from __future__ import annotations

import types
from typing import Any

import torch

from phalanx.exact.layer_stats import LayerStatsSync


class _GlobalBatchNorm(torch.autograd.Function):
    @staticmethod
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        weight: torch.Tensor | None,
        bias: torch.Tensor | None,
        eps: float,
        sync: LayerStatsSync,
        layer: int,
        stats_out: list[torch.Tensor],
    ) -> torch.Tensor:
        channels = x.shape[1]
        dims = [0, *range(2, x.dim())]
        local = torch.cat(
            [
                x.sum(dims, dtype=torch.float64),
                (x * x).sum(dims, dtype=torch.float64),
                torch.tensor([x.numel() / channels], dtype=torch.float64, device=x.device),
            ]
        )
        total = sync.reduce(local, layer, "forward")
        count = total[-1]
        mean = total[:channels] / count
        var = (total[channels : 2 * channels] / count - mean * mean).clamp_min(0.0)
        invstd = torch.rsqrt(var + eps)
        shape = [1, channels] + [1] * (x.dim() - 2)
        xhat = (x - mean.to(x.dtype).view(shape)) * invstd.to(x.dtype).view(shape)
        out = xhat
        if weight is not None:
            out = out * weight.view(shape)
        if bias is not None:
            out = out + bias.view(shape)
        ctx.save_for_backward(xhat, invstd, weight)
        ctx.sync, ctx.layer, ctx.count, ctx.shape = sync, layer, count, shape
        ctx.has_bias = bias is not None
        stats_out.extend([mean, var, count])
        return out

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[Any, ...]:  # type: ignore[override]
        xhat, invstd, weight = ctx.saved_tensors
        dims = [0, *range(2, grad_out.dim())]
        sum_dy = grad_out.sum(dims, dtype=torch.float64)
        sum_dy_xhat = (grad_out * xhat).sum(dims, dtype=torch.float64)
        total = ctx.sync.reduce(torch.cat([sum_dy, sum_dy_xhat]), ctx.layer, "backward")
        channels = sum_dy.numel()
        mean_dy = (total[:channels] / ctx.count).to(grad_out.dtype).view(ctx.shape)
        mean_dy_xhat = (total[channels:] / ctx.count).to(grad_out.dtype).view(ctx.shape)
        scale = invstd.to(grad_out.dtype).view(ctx.shape)
        if weight is not None:
            scale = scale * weight.view(ctx.shape)
        grad_x = scale * (grad_out - mean_dy - xhat * mean_dy_xhat)
        # Parameter gradients are this replica's part: the gradient allreduce sums them.
        grad_weight = sum_dy_xhat.to(grad_out.dtype) if weight is not None else None
        grad_bias = sum_dy.to(grad_out.dtype) if ctx.has_bias else None
        return grad_x, grad_weight, grad_bias, None, None, None, None


def _update_running(
    module: torch.nn.modules.batchnorm._BatchNorm, stats: list[torch.Tensor]
) -> None:
    mean, var, count = stats
    if not module.track_running_stats or module.running_mean is None:
        return
    with torch.no_grad():
        assert module.num_batches_tracked is not None and module.running_var is not None
        module.num_batches_tracked.add_(1)
        if module.momentum is None:  # cumulative moving average
            factor = 1.0 / float(module.num_batches_tracked)
        else:
            factor = float(module.momentum)
        unbiased = var * (count / (count - 1)) if float(count) > 1 else var
        module.running_mean.mul_(1 - factor).add_(mean.to(module.running_mean.dtype) * factor)
        module.running_var.mul_(1 - factor).add_(unbiased.to(module.running_var.dtype) * factor)


def make_global(
    module: torch.nn.modules.batchnorm._BatchNorm, sync: LayerStatsSync, layer: int
) -> None:
    """Patch one BatchNorm module's forward (the instance only: class and state unchanged)."""
    original = module.forward

    def forward(self: torch.nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> Any:
        if not (self.training and sync.active):
            return original(x)  # eval, or outside a step: PyTorch's own BatchNorm
        stats: list[torch.Tensor] = []
        out = _GlobalBatchNorm.apply(x, self.weight, self.bias, self.eps, sync, layer, stats)
        if sync.updates_running_stats:
            _update_running(self, stats)
        return out

    module.forward = types.MethodType(forward, module)  # type: ignore[method-assign]


BATCHNORMS = (torch.nn.modules.batchnorm._BatchNorm,)
