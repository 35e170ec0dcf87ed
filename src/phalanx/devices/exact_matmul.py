"""Exact integer matmuls on a device: every output element has one right value.

The kernel behind qualification's compute check (qualify/compute_check.py)
and the runtime's periodic re-screen (devices/probe.py): integer-valued
operands whose products are exact in each dtype, so any wrong element is a
fault, not rounding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from phalanx.devices.compute import ComputeDevice
from phalanx.devices.operands import SEEDS_PER_DTYPE, exact_operands

Progress = Callable[[str], None]


def is_host_compute(device: ComputeDevice) -> bool:
    return device.tensor_device.type == "cpu"


def exact_side(device: ComputeDevice) -> int:
    """Side of the square output of exact matmuls: 1 Mi outputs on a CPU, 16 Mi elsewhere."""
    return 1024 if is_host_compute(device) else 4096


@dataclass
class ExactCount:
    checked: int = 0
    wrong: int = 0


def exact_matmuls(
    device: ComputeDevice,
    dtype: str,
    count: int,
    seed: int,
    progress: Progress | None = None,
    first_variant: int = 0,
) -> ExactCount:
    """Run `count` exact matmuls in `dtype`; count output elements that are wrong."""
    result = ExactCount()
    side = exact_side(device)
    on_device: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = {}
    for i in range(count):
        variant = seed * SEEDS_PER_DTYPE + (first_variant + i) % SEEDS_PER_DTYPE
        if variant not in on_device:
            a, b, ref = exact_operands(dtype, side, variant)
            on_device[variant] = (
                a.to(device.tensor_device),
                b.to(device.tensor_device),
                ref.to(device.tensor_device),
            )
        a, b, ref = on_device[variant]
        out = device.matmul(a, b)
        result.checked += out.numel()
        if not torch.equal(out, ref):  # the common case costs one pass and no temporaries
            result.wrong += int((out != ref).sum().item())
        if progress is not None and (i + 1) % 4 == 0:
            progress(f"{dtype} exact {i + 1}/{count}")
    return result
