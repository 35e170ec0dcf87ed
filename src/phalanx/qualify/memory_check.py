"""Memory: write patterns over a large part of free memory and read them back.

Fixed patterns (all zeros, all ones, two checkerboards) find bits stuck at
either value; a random block finds faults that depend on neighbouring data.
Every byte is written before any is read back, so a fault that corrupts
other addresses (a bad address line) shows up too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from phalanx.devices.compute import ComputeDevice
from phalanx.qualify.levels import Level

PATTERNS: tuple[int | str, ...] = (0x00, 0xFF, 0x55, 0xAA, "random")


@dataclass
class MemoryResult:
    checked_bytes: int  # device bytes covered
    tested_bytes: int  # bytes actually written and read (fewer on emulated chips)
    bad_bytes: int = 0
    first_bad_offset: int | None = None
    first_bad_pattern: str | None = None

    @property
    def scale(self) -> float:
        return self.checked_bytes / self.tested_bytes if self.tested_bytes else 1.0


def memory_budget_bytes(device: ComputeDevice, level: Level) -> int:
    free = device.free_memory_bytes() or 0
    budget = int(free * level.memory_fraction)
    if device.config.kind == "cpu":
        budget = min(budget, level.host_memory_cap_bytes)  # host RAM is shared with everything else
    return budget


def check_memory(
    device: ComputeDevice, level: Level, seed: int, progress: Callable[[str], None]
) -> MemoryResult:
    size = memory_budget_bytes(device, level)
    max_tested = level.emulated_tested_bytes if device.config.emulated else size
    window = device.memory_window(size, max_tested)
    result = MemoryResult(checked_bytes=window.size_bytes, tested_bytes=window.tested_bytes)
    try:
        longest = max((s.nbytes for s in window.spans), default=0)
        g = torch.Generator().manual_seed(seed)
        random_block = torch.randint(0, 256, (longest,), dtype=torch.uint8, generator=g)
        for pattern in PATTERNS:
            name = pattern if isinstance(pattern, str) else f"0x{pattern:02X}"
            if isinstance(pattern, int):
                block = torch.full(
                    (longest,), pattern, dtype=torch.uint8, device=device.tensor_device
                )
            else:
                block = random_block.to(device.tensor_device)
            for span in window.spans:
                window.write(span, block[: span.nbytes])
            for span in window.spans:
                data = window.read(span)
                expected = block[: span.nbytes]
                if torch.equal(data, expected):  # one pass, no temporaries
                    continue
                bad = data != expected
                result.bad_bytes += int(bad.sum().item())
                if result.first_bad_offset is None:
                    first = int(bad.nonzero()[0, 0].item())
                    result.first_bad_offset = window.device_offset(span, first)
                    result.first_bad_pattern = name
            del block
            progress(f"pattern {name}: {result.bad_bytes} bad bytes so far")
    finally:
        device.release_memory(window)
    return result
