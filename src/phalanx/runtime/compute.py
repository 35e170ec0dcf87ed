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
REGIONS = 3  # per-participant scalar regions in FlatBuffer: veto, throughput, heat


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
    """One buffer per attempt: gradients, the loss, then per-participant slots.

    Layout: gradients | weighted loss | veto[N] | throughput[N] | heat[N] | fingerprint[N x W].
    Heat is the thermal guard's 1 - derate (0: no cut), see energy/thermal_guard.py.
    Each participant fills only its own slots and the sum fills them all, so
    riding the commit veto, the throughputs and the parameter fingerprints in
    the gradient allreduce costs no extra collective, and every participant
    reads the same numbers.
    """

    def __init__(
        self, params: list[torch.nn.Parameter], num_participants: int, fingerprint_width: int = 0
    ) -> None:
        self.params = params
        self.sizes = [p.numel() for p in params]
        self.grad_len = sum(self.sizes)
        self.count = num_participants
        self.width = fingerprint_width
        dtype = params[0].dtype if params else torch.float32
        device = params[0].device if params else torch.device("cpu")
        length = self.grad_len + 1 + num_participants * (REGIONS + fingerprint_width)
        self.tensor = torch.zeros(length, dtype=dtype, device=device)

    def _slot(self, region: int, slot: int) -> int:
        return self.grad_len + 1 + region * self.count + slot

    def pack(
        self,
        weighted_loss: float,
        slot: int,
        veto: bool,
        throughput_sps: float,
        fingerprint: list[float] | None = None,
        heat: float = 0.0,
    ) -> None:
        offset = 0
        for param, size in zip(self.params, self.sizes):
            view = self.tensor[offset : offset + size]
            if param.grad is None:
                view.zero_()
            else:
                view.copy_(param.grad.reshape(-1))
            offset += size
        self.tensor[self.grad_len] = weighted_loss
        self.tensor[self._slot(0, slot)] = 1.0 if veto else 0.0
        self.tensor[self._slot(1, slot)] = throughput_sps
        self.tensor[self._slot(2, slot)] = heat
        if fingerprint is not None and self.width:
            start = self._slot(REGIONS, 0) + slot * self.width
            self.tensor[start : start + self.width] = torch.tensor(
                fingerprint, dtype=self.tensor.dtype
            )

    def unpack_gradients(self) -> None:
        offset = 0
        for param, size in zip(self.params, self.sizes):
            grad = self.tensor[offset : offset + size].view_as(param).to(param.dtype)
            param.grad = grad.clone()
            offset += size

    def loss(self) -> float:
        return float(self.tensor[self.grad_len])

    def vetoes(self) -> list[bool]:
        start = self._slot(0, 0)
        return [v > 0.5 for v in self.tensor[start : start + self.count].tolist()]

    def throughputs(self) -> list[float]:
        start = self._slot(1, 0)
        return self.tensor[start : start + self.count].tolist()

    def heats(self) -> list[float]:
        start = self._slot(2, 0)
        return self.tensor[start : start + self.count].tolist()

    def fingerprints(self) -> list[tuple[float, ...]]:
        start = self._slot(REGIONS, 0)
        values = self.tensor[start : start + self.count * self.width].tolist()
        return [tuple(values[i * self.width : (i + 1) * self.width]) for i in range(self.count)]

    def finite(self) -> bool:
        return bool(torch.isfinite(self.tensor).all())


def gradient_norm(params: list[torch.nn.Parameter]) -> float:
    """Global L2 norm of the gradients now in `.grad` (0 when there are none)."""
    norms = [p.grad.detach().double().norm() for p in params if p.grad is not None]
    return float(torch.stack(norms).norm()) if norms else 0.0
