"""Model buffers (running statistics, counters) as one consistent state on every replica.

A layer that updates a buffer in training (BatchNorm's running mean and
variance, its batch counter, a user's moving average) updates it from the
samples this replica computed. Left alone, replicas would drift apart and
the saved model would depend on which replica wrote it. So each step:

- every attempt starts from the buffers as they were before the step (a
  retried or recomputed attempt must not update them twice);
- each participant publishes its update (new value minus the value before
  the step) weighted by its share / B, and the sum (weights add up to 1) is
  applied on every replica at the commit. For BatchNorm's running mean that
  is exactly the update the whole batch would have made; for the variance it
  leaves out the spread between slices (exact/ computes statistics over the
  global batch instead, and its buffers are left out of this sum). An
  unchanged buffer gets an update of exactly zero, so constants stay exact;
- an integer buffer (a counter) takes the update of the first participant
  with samples.

Only buffers a training forward changes are synchronised (found once, by
`trained_buffers` on one sample): a causal mask or a positional table costs
nothing per step.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch


@dataclass
class ModelBuffers:
    buffers: list[torch.Tensor]
    names: list[str] = field(default_factory=list)
    _before: list[torch.Tensor] = field(default_factory=list, init=False)
    _reduced: torch.Tensor | None = field(default=None, init=False)

    @property
    def numel(self) -> int:
        return sum(b.numel() for b in self.buffers)

    def snapshot(self) -> None:
        """Remember the buffers as the step found them."""
        if len(self._before) != len(self.buffers):
            self._before = [b.detach().clone() for b in self.buffers]
        else:
            for saved, buffer in zip(self._before, self.buffers):
                saved.copy_(buffer)

    def restore(self) -> None:
        with torch.no_grad():
            for saved, buffer in zip(self._before, self.buffers):
                buffer.copy_(saved)

    def pack(self, view: torch.Tensor, weight: float, first_computing: bool) -> None:
        """Write this replica's weighted update into the control block's buffer region."""
        self._reduced = view
        offset = 0
        for saved, buffer in zip(self._before, self.buffers):
            size = buffer.numel()
            target = view[offset : offset + size]
            delta = buffer.detach().reshape(-1).to(view.dtype) - saved.reshape(-1).to(view.dtype)
            if buffer.is_floating_point():
                target.copy_(delta * weight)
            else:
                target.copy_(delta if first_computing else torch.zeros_like(delta))
            offset += size

    def apply(self) -> None:
        """The committed step: every replica sets before + summed update."""
        if self._reduced is None:
            return
        offset = 0
        with torch.no_grad():
            for saved, buffer in zip(self._before, self.buffers):
                size = buffer.numel()
                update = self._reduced[offset : offset + size].view(buffer.shape)
                if buffer.is_floating_point():
                    buffer.copy_(saved + update.to(buffer.dtype))
                else:
                    buffer.copy_(saved + update.round().to(buffer.dtype))
                offset += size


def trained_buffers(
    model: torch.nn.Module, run_forward: Callable[[], object]
) -> list[tuple[str, torch.Tensor]]:
    """The buffers that `run_forward` (one training forward) changes; all restored after."""
    named = [(n, b) for n, b in model.named_buffers() if b.dtype != torch.bool]
    before = [b.detach().clone() for _, b in named]
    changed: list[tuple[str, torch.Tensor]] = []
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            run_forward()
    finally:
        with torch.no_grad():
            for (name, buffer), saved in zip(named, before):
                if not torch.equal(buffer, saved):
                    changed.append((name, buffer))
                buffer.copy_(saved)
    return changed
