"""Emulated device memory: a scaled-down host buffer with stuck bits in bad regions.

An emulated chip may declare 80 GiB; the host cannot spend that per chip. The
window maps the chip's address range onto `tested_bytes` host bytes (scale =
size/tested), and a bad region keeps at least one host byte after scaling, so
scaling never hides a declared defect. In a bad region one bit of every byte
reads as 1 and another as 0 (stuck-at faults), whatever was written.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from phalanx.devices.config import MemoryRegion
from phalanx.devices.memory_window import MemoryWindow, Span, make_spans


class EmulatedMemoryWindow(MemoryWindow):
    def __init__(
        self,
        size_bytes: int,
        tested_bytes: int,
        bad_regions: tuple[MemoryRegion, ...],
        rng: np.random.Generator,
        span_bytes: int = 4 << 20,
    ) -> None:
        self.size_bytes = size_bytes
        self.tested_bytes = max(1, min(tested_bytes, size_bytes))
        self.buffer = torch.empty(self.tested_bytes, dtype=torch.uint8)
        self.spans = make_spans([self.tested_bytes], span_bytes)
        scale = self.scale
        self.bad: list[tuple[int, int, int, int]] = []  # (lo, hi, stuck_one, stuck_zero_mask)
        for region in bad_regions:
            lo = math.floor(region.offset_bytes / scale)
            hi = max(lo + 1, math.ceil((region.offset_bytes + region.length_bytes) / scale))
            if lo >= self.tested_bytes:
                continue  # outside the tested part of memory: the test cannot see it
            one_bit, zero_bit = rng.choice(8, size=2, replace=False)
            self.bad.append(
                (lo, min(hi, self.tested_bytes), 1 << int(one_bit), 0xFF ^ (1 << int(zero_bit)))
            )

    def write(self, span: Span, values: torch.Tensor | int) -> None:
        view = self.buffer[span.start : span.stop]
        if isinstance(values, int):
            view.fill_(values)
        else:
            view.copy_(values)

    def read(self, span: Span) -> torch.Tensor:
        data = self.buffer[span.start : span.stop]
        overlapping = [b for b in self.bad if b[0] < span.stop and b[1] > span.start]
        if not overlapping:
            return data
        data = data.clone()
        for lo, hi, stuck_one, keep_mask in overlapping:
            a, z = max(lo, span.start) - span.start, min(hi, span.stop) - span.start
            data[a:z] = (data[a:z] | stuck_one) & keep_mask
        return data

    def release(self) -> None:
        self.buffer = torch.empty(0, dtype=torch.uint8)
