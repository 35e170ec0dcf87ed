"""Compute correctness: exact integer matmuls, plus random-input matmul and conv.

The exact part is what catches silent bit flips: every output element is
compared to its one right value, in each of the device's dtypes, over enough
elements that a rate of 1e-6 per element shows up many times. The random
part catches gross numerical faults (a broken kernel, a bad tensor core) that
integer inputs might not exercise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from phalanx.devices.compute import ComputeDevice
from phalanx.devices.exact_matmul import ExactCount, exact_matmuls, exact_side
from phalanx.devices.operands import (
    TOLERANCE,
    random_operands,
    relative_error,
)
from phalanx.qualify.levels import Level

Progress = Callable[[str], None]


@dataclass
class ComputeResult:
    exact: dict[str, ExactCount] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)  # tolerance failures, one line each

    @property
    def elements_checked(self) -> int:
        return sum(c.checked for c in self.exact.values())

    @property
    def wrong_elements(self) -> int:
        return sum(c.wrong for c in self.exact.values())


def check_compute(
    device: ComputeDevice, level: Level, seed: int, progress: Progress
) -> ComputeResult:
    result = ComputeResult()
    side = exact_side(device)
    for dtype in device.config.effective_dtypes:
        per_matmul = side * side
        count = max(1, math.ceil(level.exact_elements / per_matmul))
        result.exact[dtype] = exact_matmuls(device, dtype, count, seed, progress)
        worst: dict[str, list[float]] = {}
        for repeat in range(level.tolerance_repeats):
            for op, error in _relative_errors(device, dtype, seed * 101 + repeat).items():
                worst.setdefault(op, []).append(error)
        for op, errors in worst.items():
            bad = [e for e in errors if e > TOLERANCE[dtype]]
            if bad:
                result.errors.append(
                    f"{op} {dtype}: relative error up to {max(bad):.1e} (limit {TOLERANCE[dtype]:.0e}) in {len(bad)} of {len(errors)} random-input checks"
                )
        progress(f"{dtype}: {result.exact[dtype].wrong} wrong of {result.exact[dtype].checked:,}")
    return result


def _relative_errors(device: ComputeDevice, dtype: str, seed: int) -> dict[str, float]:
    """Random-input matmul and conv against float64: relative error of each."""
    host = random_operands(dtype, seed)
    ops = {k: v.to(device.tensor_device) for k, v in host.items() if not k.endswith("_ref")}
    return {
        "matmul": relative_error(device.matmul(ops["a"], ops["b"]), host["matmul_ref"]),
        "conv2d": relative_error(device.conv2d(ops["x"], ops["w"]), host["conv_ref"]),
    }
