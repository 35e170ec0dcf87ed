"""A short correctness probe for periodic re-screening during training.

The runtime can call this on a replica's device every N minutes: it costs a
few matmuls and catches a chip that started computing wrong answers since it
was qualified (for instance once it got hot). Any wrong element fails it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from phalanx.devices.compute import ComputeDevice
from phalanx.devices.exact_matmul import exact_matmuls


@dataclass(frozen=True)
class ProbeResult:
    checked: int
    wrong: int
    duration_s: float

    @property
    def passed(self) -> bool:
        return self.wrong == 0


def correctness_probe(
    device: ComputeDevice, *, matmuls: int = 4, seed: int = 0, dtype: str = "float32"
) -> ProbeResult:
    start_s = time.perf_counter()
    counted = exact_matmuls(device, dtype, matmuls, seed)
    return ProbeResult(counted.checked, counted.wrong, time.perf_counter() - start_s)
