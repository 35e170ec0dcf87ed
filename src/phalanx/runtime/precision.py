"""Mixed precision: autocast on each replica's device, and one loss scale for the fleet.

`Trainer(precision=...)`:

- "32": full precision (the default);
- "bf16-mixed": forward and backward under `torch.autocast` in bfloat16 (its
  range is float32's, no scaling needed);
- "fp16-mixed": autocast in float16 with a dynamic loss scale, for chips
  without bfloat16 (pre-Ampere NVIDIA, many older accelerators).

The loss scale is part of the replicated fleet state, so every replica
scales by the same factor, and the decision to shrink it is global: a
replica whose scaled gradient overflows says so in the step's control block
(runtime/control.py), every participant then halves the scale and the
attempt is recomputed at once with the same samples (no sample is skipped,
unlike PyTorch's GradScaler, which drops the batch). After `GROWTH_INTERVAL`
steps without overflow the scale doubles. It travels in checkpoints and
heals with the rest of the state. Parameters and the control block stay in
full precision whatever the autocast dtype.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

PRECISIONS = ("32", "bf16-mixed", "fp16-mixed")
INITIAL_SCALE = 2.0**16  # torch.amp.GradScaler's defaults
GROWTH_INTERVAL = 2000
# Below this scale an overflow is not a scale problem: the guard treats it as a fault.
MIN_SCALE = 1.0
MAX_OVERFLOW_RETRIES = 24  # 2^16 down to 2^-8 before giving the step up


@dataclass(frozen=True)
class Precision:
    name: str = "32"

    @property
    def scaled(self) -> bool:
        return self.name == "fp16-mixed"

    @property
    def autocast_dtype(self) -> torch.dtype | None:
        return {"bf16-mixed": torch.bfloat16, "fp16-mixed": torch.float16}.get(self.name)

    def autocast(self, device: torch.device) -> Any:
        dtype = self.autocast_dtype
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=dtype)


def initial_scale(precision: Precision) -> float:
    return INITIAL_SCALE if precision.scaled else 1.0


def after_good_step(scale: float, good_steps: int) -> tuple[float, int]:
    """(scale, steps since the last change) after a step applied without overflow."""
    good_steps += 1
    if good_steps >= GROWTH_INTERVAL:
        return scale * 2.0, 0
    return scale, good_steps


def after_overflow(scale: float) -> float:
    return scale * 0.5


def missing_support(device: str, precision: str) -> str | None:
    """Why `device` cannot run `precision` (None when it can).

    Pre-Ampere NVIDIA cards (compute capability below 8.0) have no bfloat16
    arithmetic; torch would emulate it slowly or fail inside a kernel, so the
    run refuses before it starts. Other vendors report what they support.
    """
    if precision != "bf16-mixed":
        return None
    target = torch.device(device)
    if target.type == "cuda":
        index = target.index or 0
        if torch.cuda.get_device_capability(index) < (8, 0):
            return f"{device} ({torch.cuda.get_device_name(index)}) has no bfloat16"
        return None
    module = getattr(torch, target.type, None)
    check = getattr(module, "is_bf16_supported", None) if target.type != "cpu" else None
    if check is not None and not check():
        return f"{device} has no bfloat16"
    return None
