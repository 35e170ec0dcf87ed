"""Forward/backward of one slice, weighted for an exact global mean.

Each micro-batch's mean loss is scaled by (micro-batch size / B) before
backward. Summed over micro-batches and over participants, the gradients are
exactly the gradient of the mean loss over the whole global batch, however
the batch was split. (Dividing by the number of workers, as DDP does, would
over-weight the samples of chips that got smaller shares.)

Gradients accumulate into whatever `param.grad` holds: the step engine
points them at its persistent buffer (runtime/grad_buffer.py) and zeroes it
first. Every micro-batch runs with the global stream positions of its
samples published (exact/keys.py), so that stochastic and batch-statistics
layers can depend on the samples rather than on the split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from phalanx.data.slicing import microbatches
from phalanx.exact.keys import sample_keys
from phalanx.runtime.precision import Precision

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]


@dataclass(frozen=True)
class Workload:
    """What the user's script hands the trainer, as the step needs it."""

    model: torch.nn.Module
    loss_fn: LossFn
    dataset: Dataset
    num_samples: int
    global_batch_size: int
    max_microbatch: int | None
    device: torch.device
    seed: int
    precision: Precision = field(default_factory=Precision)


def move_to(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: move_to(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(move_to(v, device) for v in batch)
    return batch


def trainable_parameters(model: torch.nn.Module) -> list[torch.nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def slice_gradient(
    work: Workload,
    indices: Sequence[int],
    start_position: int,
    before_last_backward: Callable[[], None] | None = None,
    loss_scale: float = 1.0,
) -> float:
    """Add the weighted gradient of `indices` (stream positions from `start_position`)
    to `.grad`, multiplied by `loss_scale` (fp16-mixed); return the weighted loss.

    `before_last_backward` runs before the last micro-batch's backward (the
    step engine arms its overlap hooks there). The forward runs under the
    workload's autocast; the backward outside it, as autocast asks.
    """
    weighted_loss = 0.0
    chunks = microbatches(list(indices), work.max_microbatch)
    position = start_position
    for number, chunk in enumerate(chunks):
        # A retried step re-seeds identically, so any randomness not keyed by sample
        # (exact/) at least repeats itself on the same split.
        torch.manual_seed(work.seed * 1_000_003 + position)
        batch = move_to(default_collate([work.dataset[i] for i in chunk]), work.device)
        with sample_keys(work.seed, position, len(chunk), work.device):
            with work.precision.autocast(work.device):
                loss = work.loss_fn(work.model, batch)
            weight = len(chunk) / work.global_batch_size
            if number == len(chunks) - 1 and before_last_backward is not None:
                before_last_backward()
            if loss.element_size() < 4:  # a half-precision loss: scale it in float32
                loss = loss.float()
            (loss * (weight * loss_scale)).backward()
        weighted_loss += float(loss.detach()) * weight
        position += len(chunk)
    return weighted_loss


def accumulate_slice_gradient(
    model: torch.nn.Module,
    loss_fn: LossFn,
    dataset: Dataset,
    indices: Sequence[int],
    global_batch_size: int,
    max_microbatch: int | None,
    device: torch.device,
    rng_seed: int,
) -> float:
    """Leave the weighted gradient of `indices` in fresh `.grad` tensors (profiling, tests)."""
    for param in trainable_parameters(model):
        param.grad = None
    work = Workload(
        model,
        loss_fn,
        dataset,
        len(dataset),  # type: ignore[arg-type]
        global_batch_size,
        max_microbatch,
        device,
        rng_seed,  # type: ignore[arg-type]
    )
    return slice_gradient(work, indices, 0)
