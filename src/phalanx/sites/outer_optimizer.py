"""The outer optimizer: Nesterov SGD on the anchor, once per outer round.

The anchor is the model's parameters at the last outer step, the same on
every site. An outer round gives one pseudo-gradient g (the sample-weighted
average of anchor - params over the sites); the step is torch's SGD with
momentum m and learning rate lr, written out so that every site can apply it
identically and so its state goes into checkpoints and heals:

    buffer <- m * buffer + g          (buffer = g on the first step)
    update <- g + m * buffer          (Nesterov; plain momentum: update = buffer)
    anchor <- anchor - lr * update

The operations are torch's own, in this order, element by element on CPU
tensors: the same inputs give bit-identical anchors on any site, and the
result equals `torch.optim.SGD(..., nesterov=True, foreach=False)` bit for
bit. With m = 0 and lr = 1 the new anchor is the weighted average of the
sites' parameters (up to rounding): plain model averaging.

DiLoCo's defaults (lr 0.7, momentum 0.9, Nesterov) are the defaults here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from phalanx.errors import UsageError

DILOCO_OUTER_LR = 0.7
DILOCO_OUTER_MOMENTUM = 0.9


@dataclass(frozen=True)
class OuterSettings:
    """How the anchor moves per outer round; validated when built."""

    lr: float = DILOCO_OUTER_LR
    momentum: float = DILOCO_OUTER_MOMENTUM
    nesterov: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.lr, bool) or not isinstance(self.lr, (int, float)) or not self.lr > 0:
            raise UsageError(
                "outer_lr",
                "must be a positive number",
                f"use e.g. {DILOCO_OUTER_LR} (DiLoCo), or 1.0 with outer_momentum 0 to average",
                self.lr,
            )
        momentum_ok = isinstance(self.momentum, (int, float)) and not isinstance(
            self.momentum, bool
        )
        if not momentum_ok or not 0 <= self.momentum < 1:
            raise UsageError(
                "outer_momentum",
                "must be a number in [0, 1)",
                f"use e.g. {DILOCO_OUTER_MOMENTUM} (DiLoCo), or 0 for no momentum",
                self.momentum,
            )


class OuterOptimizer:
    """Holds the anchor and the momentum buffers; `step` moves the anchor by one round."""

    def __init__(self, anchor: Sequence[torch.Tensor], settings: OuterSettings) -> None:
        self.settings = settings
        self.anchor = [t.detach().clone() for t in anchor]
        self.momentum_buffers: list[torch.Tensor] | None = None
        self.rounds = 0

    def step(self, pseudo_gradient: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Apply one round's pseudo-gradient; return the new anchor (copy it into the model)."""
        _check_like(self.anchor, pseudo_gradient, "pseudo-gradient")
        lr, momentum = self.settings.lr, self.settings.momentum
        updates: list[torch.Tensor] = []
        if momentum == 0:
            updates = [g.detach() for g in pseudo_gradient]
        else:
            if self.momentum_buffers is None:
                self.momentum_buffers = [g.detach().clone() for g in pseudo_gradient]
            else:
                for buffer, g in zip(self.momentum_buffers, pseudo_gradient):
                    buffer.mul_(momentum).add_(g)
            for buffer, g in zip(self.momentum_buffers, pseudo_gradient):
                updates.append(g.add(buffer, alpha=momentum) if self.settings.nesterov else buffer)
        for anchor, update in zip(self.anchor, updates):
            anchor.add_(update, alpha=-lr)
        self.rounds += 1
        return [a.clone() for a in self.anchor]

    def state_dict(self) -> dict[str, Any]:
        """Everything a healing or resumed site needs to step identically next round."""
        buffers = self.momentum_buffers
        return {
            "lr": self.settings.lr,
            "momentum": self.settings.momentum,
            "nesterov": self.settings.nesterov,
            "rounds": self.rounds,
            "anchor": [a.clone() for a in self.anchor],
            "momentum_buffers": None if buffers is None else [b.clone() for b in buffers],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_like(self.anchor, state["anchor"], "checkpointed anchor")
        if state["momentum_buffers"] is not None:
            _check_like(self.anchor, state["momentum_buffers"], "checkpointed momentum")
        self.settings = OuterSettings(state["lr"], state["momentum"], state["nesterov"])
        self.rounds = int(state["rounds"])
        self.anchor = [a.clone() for a in state["anchor"]]
        buffers = state["momentum_buffers"]
        self.momentum_buffers = None if buffers is None else [b.clone() for b in buffers]


def _check_like(
    reference: Sequence[torch.Tensor], tensors: Sequence[torch.Tensor], what: str
) -> None:
    if len(reference) != len(tensors):
        raise ValueError(f"{what} has {len(tensors)} tensors, the anchor {len(reference)}")
    for index, (ref, tensor) in enumerate(zip(reference, tensors)):
        if ref.shape != tensor.shape or ref.dtype != tensor.dtype:
            raise ValueError(
                f"{what} tensor {index} is {tuple(tensor.shape)} {tensor.dtype}, "
                f"the anchor's is {tuple(ref.shape)} {ref.dtype}"
            )
