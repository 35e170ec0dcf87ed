"""Emulated chip memory that binds: `--emulate 1:mem=2GiB` on a CPU host.

An emulated chip paces its compute like a slower chip; with a memory cap it
also refuses, as a real accelerator's allocator would, to hold more than its
memory. What a replica holds on the chip:

- weights: every parameter and buffer of the model;
- gradients: one per trainable parameter (the step's persistent buckets);
- optimizer state: measured once the optimizer has created it, estimated
  from the optimizer's kind before its first step (Adam: two moments);
- activations: the tensors autograd saves for the backward pass while a
  micro-batch's forward runs, counted once per storage (a weight saved for
  backward is already counted as a weight).

At start-up a replica measures its activations on one and on two samples;
state that does not fit, or no room for one sample beside it, ends the
replica with one line naming the chip, the need and the cap (exit code 6,
not restarted: `errors.EXIT_OUT_OF_MEMORY`). Otherwise its micro-batches are
capped at what fits (gradient accumulation does the rest; the weighted loss
keeps the result exact whatever the split). Every micro-batch is measured
again while it runs, so a sample larger than the probe's still fails as it
would on the chip.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from phalanx.emulate.memory_size import describe_bytes
from phalanx.groups.sharding import local_numel, local_tensor

# Optimizer state per trainable parameter element, in units of the parameter's own
# size, before the optimizer has made any (its first step): the tensors it will create.
_STATE_PER_PARAM = {
    "Adam": 2,
    "AdamW": 2,
    "NAdam": 2,
    "RAdam": 2,
    "Adamax": 2,
    "Adadelta": 2,
    "Adagrad": 1,
    "RMSprop": 1,
    "Rprop": 2,
    "ASGD": 1,
}
UNKNOWN_STATE_PER_PARAM = 2  # an optimizer we do not know: assume Adam's two moments
# Scalar tensors per parameter (`step`; NAdam's `mu_product`; ASGD's `eta` and `mu`): a
# few bytes each, but a cap that is met to the byte must count them.
_SCALARS_PER_PARAM = {"NAdam": 2, "ASGD": 3, "SGD": 0}


class EmulatedOutOfMemory(RuntimeError):
    """A replica needs more memory than its emulated chip has."""

    def __init__(self, message: str, need_bytes: int, cap_bytes: int) -> None:
        super().__init__(message)
        self.need_bytes = need_bytes
        self.cap_bytes = cap_bytes


def _tensor_bytes(tensors: Iterator[torch.Tensor]) -> int:
    seen: set[int] = set()
    total = 0
    for tensor in tensors:
        storage = local_tensor(tensor).untyped_storage()
        if storage.data_ptr() in seen:
            continue
        seen.add(storage.data_ptr())
        total += storage.nbytes()
    return total


def optimizer_state_bytes(optimizer: torch.optim.Optimizer | None) -> tuple[int, bool]:
    """(bytes, measured): the optimizer's state tensors, or an estimate before it has any."""
    if optimizer is None:
        return 0, True
    state = [
        local_tensor(t) for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)
    ]
    if state:
        return _tensor_bytes(iter(state)), True
    per_param = _STATE_PER_PARAM.get(type(optimizer).__name__, UNKNOWN_STATE_PER_PARAM)
    for group in optimizer.param_groups:
        if type(optimizer).__name__ == "SGD":
            per_param = 1 if group.get("momentum", 0) else 0
        elif group.get("amsgrad"):
            per_param = 3
        elif type(optimizer).__name__ == "RMSprop":
            per_param = 1 + bool(group.get("momentum", 0)) + bool(group.get("centered"))
    params = [p for g in optimizer.param_groups for p in g["params"] if p.requires_grad]
    scalars = _SCALARS_PER_PARAM.get(type(optimizer).__name__, 1) * len(params)
    scalar_bytes = 8 if torch.get_default_dtype() == torch.float64 else 4  # torch's choice
    moments = per_param * sum(local_numel(p) * p.element_size() for p in params)
    return moments + scalars * scalar_bytes, False


@dataclass
class StateBytes:
    weights: int
    gradients: int
    optimizer: int
    optimizer_measured: bool

    @property
    def total(self) -> int:
        return self.weights + self.gradients + self.optimizer


def state_bytes(model: torch.nn.Module, optimizer: torch.optim.Optimizer | None) -> StateBytes:
    weights = _tensor_bytes(iter([*model.parameters(), *model.buffers()]))
    gradients = sum(
        local_numel(p) * p.element_size() for p in model.parameters() if p.requires_grad
    )
    opt, measured = optimizer_state_bytes(optimizer)
    return StateBytes(weights, gradients, opt, measured)


class ChipMemory:
    """One emulated chip's memory: the replica's state, its activations, the cap."""

    def __init__(
        self,
        chip: str,
        cap_bytes: int,
        model: torch.nn.Module,
        optimizer: torch.optim.Optimizer | None,
    ) -> None:
        self.chip = chip
        self.cap_bytes = cap_bytes
        self.model = model
        self.optimizer = optimizer
        # A replica group's rank holds its shard (groups/sharding.py); the weights it
        # gathers for a forward are saved for backward and count as activations.
        self._param_storages = {
            local_tensor(p).untyped_storage().data_ptr() for p in model.parameters()
        }
        self.fixed_bytes = 0  # activations that do not grow with the micro-batch
        self.per_sample_bytes = 0
        self.peak_bytes = 0  # the most it held while a micro-batch ran
        self.on_peak: Callable[[int], None] | None = None  # told of each new peak

    # ------------------------------------------------------------ measure
    @contextmanager
    def counting(self) -> Iterator[list[int]]:
        """Count the bytes autograd saves for backward inside the block: [bytes]."""
        seen: set[int] = set(self._param_storages)
        total = [0]

        def pack(tensor: torch.Tensor) -> torch.Tensor:
            storage = tensor.untyped_storage()
            if storage.data_ptr() not in seen and storage.device.type != "meta":
                seen.add(storage.data_ptr())
                total[0] += storage.nbytes()
            return tensor

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
            yield total

    def probe(self, forward_of: Callable[[int], object], most_samples: int) -> None:
        """Activations of one and of two samples (`forward_of(n)`: a training forward)."""
        sizes = [n for n in (1, 2) if n <= most_samples]
        measured: list[int] = []
        for n in sizes:
            with torch.enable_grad(), self.counting() as saved:
                forward_of(n)
            measured.append(saved[0])
        if len(measured) == 2:
            self.per_sample_bytes = max(measured[1] - measured[0], 0)
            self.fixed_bytes = max(measured[0] - self.per_sample_bytes, 0)
        else:
            self.per_sample_bytes, self.fixed_bytes = measured[0], 0

    # -------------------------------------------------------------- check
    def need_bytes(self, samples: int) -> tuple[StateBytes, int]:
        state = state_bytes(self.model, self.optimizer)
        return state, self.fixed_bytes + samples * self.per_sample_bytes

    def max_microbatch(self) -> int:
        """The most samples a micro-batch may hold here (0: not even one)."""
        state, fixed = self.need_bytes(0)
        free = self.cap_bytes - state.total - fixed
        if free < self.per_sample_bytes or free < 0:
            return 0
        return int(free // self.per_sample_bytes) if self.per_sample_bytes else 1 << 30

    def out_of_memory(self, samples: int, activations: int | None = None) -> EmulatedOutOfMemory:
        state, predicted = self.need_bytes(samples)
        acts = predicted if activations is None else activations
        estimated = "" if state.optimizer_measured else " estimated"
        return EmulatedOutOfMemory(
            f"{self.chip} (emulated, {describe_bytes(self.cap_bytes)}): out of memory: needs "
            f"{describe_bytes(state.total + acts)} (weights {describe_bytes(state.weights)}, "
            f"gradients {describe_bytes(state.gradients)}, optimizer state"
            f"{estimated} {describe_bytes(state.optimizer)}, activations of {samples} "
            f"sample{'s' if samples != 1 else ''} {describe_bytes(acts)}), has "
            f"{describe_bytes(self.cap_bytes)}. Fix: give the chip more memory (mem=), or "
            "train this model on a chip that holds it",
            state.total + acts,
            self.cap_bytes,
        )

    def check(self, samples: int, activations: int) -> None:
        """After a micro-batch's forward: does what the replica holds fit?"""
        state, _ = self.need_bytes(samples)
        held = state.total + activations
        if held > self.cap_bytes:
            raise self.out_of_memory(samples, activations)
        if held > self.peak_bytes:
            self.peak_bytes = held
            if self.on_peak is not None:
                self.on_peak(held)

    @contextmanager
    def guard(self, samples: int) -> Iterator[None]:
        """Around one micro-batch's forward: fail as the chip would if it does not fit."""
        with self.counting() as saved:
            yield
        self.check(samples, saved[0])
