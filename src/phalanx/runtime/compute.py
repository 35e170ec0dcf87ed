"""Forward/backward of one participant's slice, weighted for an exact global mean.

Each micro-batch's mean loss is scaled by (micro-batch size / B) before
backward. Summed over micro-batches and over participants, the gradients are
exactly the gradient of the mean loss over the whole global batch, however
the batch was split. (Dividing by the number of workers, as DDP does, would
over-weight the samples of chips that got smaller shares.)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, default_collate

from phalanx.data.slicing import microbatches

LossFn = Callable[[torch.nn.Module, Any], torch.Tensor]


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
    """Leave the weighted gradient of `indices` in `.grad`; return the weighted loss."""
    for param in trainable_parameters(model):
        param.grad = None
    weighted_loss = 0.0
    for position, chunk in enumerate(microbatches(list(indices), max_microbatch)):
        # A retried step re-seeds identically, so stochastic layers repeat themselves.
        torch.manual_seed(rng_seed + position)
        batch = move_to(default_collate([dataset[i] for i in chunk]), device)
        loss = loss_fn(model, batch)
        weight = len(chunk) / global_batch_size
        (loss * weight).backward()
        weighted_loss += float(loss.detach()) * weight
    return weighted_loss


class FlatBuffer:
    """One buffer per step: gradients, then the loss, a veto count and one throughput slot each.

    Riding the throughputs and the commit veto in the gradient allreduce
    costs no extra collective and gives every participant the same numbers.
    """

    def __init__(self, params: list[torch.nn.Parameter], num_participants: int) -> None:
        self.params = params
        self.sizes = [p.numel() for p in params]
        self.grad_len = sum(self.sizes)
        self.num_participants = num_participants
        dtype = params[0].dtype if params else torch.float32
        device = params[0].device if params else torch.device("cpu")
        self.tensor = torch.zeros(self.grad_len + 2 + num_participants, dtype=dtype, device=device)

    @property
    def loss_slot(self) -> int:
        return self.grad_len

    @property
    def veto_slot(self) -> int:
        return self.grad_len + 1

    def pack(self, weighted_loss: float, veto: bool, slot: int, throughput_sps: float) -> None:
        offset = 0
        for param, size in zip(self.params, self.sizes):
            view = self.tensor[offset : offset + size]
            if param.grad is None:
                view.zero_()
            else:
                view.copy_(param.grad.reshape(-1))
            offset += size
        self.tensor[self.loss_slot] = weighted_loss
        self.tensor[self.veto_slot] = 1.0 if veto else 0.0
        self.tensor[self.grad_len + 2 + slot] = throughput_sps

    def unpack_gradients(self) -> None:
        offset = 0
        for param, size in zip(self.params, self.sizes):
            grad = self.tensor[offset : offset + size].view_as(param).to(param.dtype)
            param.grad = grad.clone()
            offset += size

    def loss(self) -> float:
        return float(self.tensor[self.loss_slot])

    def vetoes(self) -> int:
        return round(float(self.tensor[self.veto_slot]))

    def throughputs(self) -> list[float]:
        return self.tensor[self.grad_len + 2 :].tolist()

    def finite(self) -> bool:
        return bool(torch.isfinite(self.tensor).all())
