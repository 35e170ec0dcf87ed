"""Memory: write patterns over a large part of free memory and read them back.

Fixed patterns (all zeros, all ones, two checkerboards) find bits stuck at
either value; a random block finds faults that depend on neighbouring data.
Every byte is written before any is read back, so a fault that corrupts
other addresses (a bad address line) shows up too.

How much is tested is the level's `memory_fraction` of the free memory; the
verdict caps the device's usable memory at what was tested (verdict.py), so
untested memory never trains.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from phalanx.devices.compute import ComputeDevice
from phalanx.devices.kinds import uses_host_memory
from phalanx.devices.memory_window import SPAN_BYTES
from phalanx.qualify.levels import Level

PATTERNS: tuple[int | str, ...] = (0x00, 0xFF, 0x55, 0xAA, "random")
# Left free on a real device for the check's own tensors: the pattern block and
# the comparison's temporaries, each one span long.
CHECK_RESERVE_BYTES = 4 * SPAN_BYTES


@dataclass
class MemoryResult:
    checked_bytes: int  # device bytes covered
    tested_bytes: int  # bytes actually written and read (fewer on emulated chips)
    bad_bytes: int = 0
    first_bad_offset: int | None = None
    first_bad_pattern: str | None = None
    device_memory_bytes: int | None = None  # all of the device's memory, when known
    host_memory: bool = False  # the host's RAM (cpu, mps): tested in part, never capped

    @property
    def scale(self) -> float:
        return self.checked_bytes / self.tested_bytes if self.tested_bytes else 1.0

    @property
    def usable_bytes(self) -> int | None:
        """What training may use: the tested bytes. None: host RAM (not capped) or failed."""
        if self.host_memory or self.bad_bytes or not self.checked_bytes:
            return None
        return self.checked_bytes

    @property
    def tested_fraction(self) -> float | None:
        """Share of the device's memory that was checked (None when its size is unknown)."""
        if not self.device_memory_bytes:
            return None
        return min(1.0, self.checked_bytes / self.device_memory_bytes)


def memory_budget_bytes(device: ComputeDevice, level: Level) -> int:
    free = device.free_memory_bytes() or 0
    budget = int(free * level.memory_fraction)
    if uses_host_memory(device.config.kind):
        budget = min(budget, level.host_memory_cap_bytes)  # host RAM is shared with everything else
    elif not device.config.emulated:
        budget = min(budget, free - CHECK_RESERVE_BYTES)  # else the check's own tensors do not fit
    return max(0, budget)


def device_memory_bytes(device: ComputeDevice) -> int | None:
    """The device's whole memory: as the fleet file declares it, else as the driver reports it."""
    if device.config.memory_bytes:
        return device.config.memory_bytes
    info = device.telemetry.memory()
    return info.total_bytes if info is not None else None


def check_memory(
    device: ComputeDevice, level: Level, seed: int, progress: Callable[[str], None]
) -> MemoryResult:
    size = memory_budget_bytes(device, level)
    max_tested = level.emulated_tested_bytes if device.config.emulated else size
    window = device.memory_window(size, max_tested)
    result = MemoryResult(
        checked_bytes=window.size_bytes,
        tested_bytes=window.tested_bytes,
        device_memory_bytes=device_memory_bytes(device),
        host_memory=uses_host_memory(device.config.kind),
    )
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
