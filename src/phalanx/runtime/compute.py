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
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch
from torch.utils.data import default_collate

from phalanx.data.feed import MicroBatch
from phalanx.data.loader_workers import fetch_seed
from phalanx.data.slicing import microbatches
from phalanx.exact.keys import sample_keys
from phalanx.runtime.precision import Precision

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]


@dataclass(frozen=True)
class Workload:
    """What the user's script hands the trainer, as the step needs it."""

    model: torch.nn.Module
    loss_fn: LossFn
    dataset: Any  # map-style, or an iterable for a stream (read through `feed`)
    num_samples: int | None  # None: a stream of unknown length
    global_batch_size: int
    max_microbatch: int | None
    device: torch.device
    seed: int
    precision: Precision = field(default_factory=Precision)
    feed: Any = None  # data/feed.py BatchFeed: the step engine's source of micro-batches
    # An emulated chip's memory (emulate/memory.py ChipMemory): each forward is measured
    # against it and fails as the chip would. None: nothing to enforce.
    memory: Any = None


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
    """`batches_gradient` of dataset `indices` read here (tests; the step uses the feed)."""
    batches = []
    position = start_position
    for chunk in microbatches(list(indices), work.max_microbatch):
        torch.manual_seed(fetch_seed(work.seed, position))
        batch = default_collate([work.dataset[i] for i in chunk])
        batches.append(MicroBatch(position, len(chunk), batch))
        position += len(chunk)
    return batches_gradient(work, batches, before_last_backward, loss_scale)


class ComputeStopped(Exception):
    """`stop()` said the work is no longer wanted (a speculative step's quorum moved)."""


def batches_gradient(
    work: Workload,
    batches: Sequence[MicroBatch],
    before_last_backward: Callable[[], None] | None = None,
    loss_scale: float = 1.0,
    stop: Callable[[], bool] | None = None,
) -> float:
    """Add the weighted gradient of `batches` to `.grad`, multiplied by `loss_scale`
    (fp16-mixed); return the weighted loss.

    `before_last_backward` runs before the last micro-batch's backward (the
    step engine arms its overlap hooks there). The forward runs under the
    workload's autocast; the backward outside it, as autocast asks. `stop` is
    asked before each forward and each backward (before the hooks are armed):
    True raises ComputeStopped, leaving `.grad` partial (the caller discards it).
    """
    weighted_loss = 0.0
    for number, micro in enumerate(batches):
        if stop is not None and stop():
            raise ComputeStopped()
        # A retried step re-seeds identically, so any randomness not keyed by sample
        # (exact/) at least repeats itself on the same split.
        torch.manual_seed(work.seed * 1_000_003 + micro.position)
        batch = move_to(micro.batch, work.device)
        with sample_keys(work.seed, micro.position, micro.count, work.device):
            with work.precision.autocast(work.device), _memory_guard(work, micro.count):
                loss = work.loss_fn(work.model, batch)
            weight = micro.count / work.global_batch_size
            if stop is not None and stop():
                raise ComputeStopped()
            if number == len(batches) - 1 and before_last_backward is not None:
                before_last_backward()
            if loss.element_size() < 4:  # a half-precision loss: scale it in float32
                loss = loss.float()
            (loss * (weight * loss_scale)).backward()
        weighted_loss += float(loss.detach()) * weight
    return weighted_loss


def _memory_guard(work: Workload, samples: int) -> AbstractContextManager[object]:
    """Around a forward: an emulated chip's memory check (emulate/memory.py), if any."""
    return work.memory.guard(samples) if work.memory is not None else nullcontext()
