"""A stretch of device memory that a memory test can write and read back.

Real devices allocate the bytes for real, in chunks (one huge allocation
fails on fragmented memory) and are read back in spans small enough that the
comparison's temporaries fit next to them. Emulated chips implement the same
interface over a scaled-down host buffer (see emulated/memory.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CHUNK_BYTES = 1 << 30
SPAN_BYTES = 64 << 20


@dataclass(frozen=True)
class Span:
    chunk: int
    start: int
    stop: int
    tested_offset: int  # offset of `start` within the tested bytes

    @property
    def nbytes(self) -> int:
        return self.stop - self.start


def make_spans(chunk_sizes: list[int], span_bytes: int) -> list[Span]:
    spans = []
    offset = 0
    for chunk, size in enumerate(chunk_sizes):
        for start in range(0, size, span_bytes):
            stop = min(start + span_bytes, size)
            spans.append(Span(chunk, start, stop, offset + start))
        offset += size
    return spans


class MemoryWindow:
    """`size_bytes` of device memory, tested through `tested_bytes` real bytes."""

    size_bytes: int
    tested_bytes: int
    spans: list[Span]

    @property
    def scale(self) -> float:
        return self.size_bytes / self.tested_bytes if self.tested_bytes else 1.0

    def device_offset(self, span: Span, index: int) -> int:
        return int((span.tested_offset + index) * self.scale)

    def write(self, span: Span, values: torch.Tensor | int) -> None:
        raise NotImplementedError

    def read(self, span: Span) -> torch.Tensor:
        raise NotImplementedError

    def release(self) -> None:
        return None


class TorchMemoryWindow(MemoryWindow):
    """Real device memory: up to `size_bytes` allocated as uint8 chunks.

    After an out-of-memory error the chunk size halves, down to one span, so
    the window covers nearly all it was asked for even when the last free
    gigabyte is fragmented; then it stops. The window may be smaller than
    asked: `size_bytes` says how much was really covered (and the verdict caps
    the device's usable memory at that).
    """

    def __init__(self, device: torch.device, size_bytes: int, span_bytes: int = SPAN_BYTES) -> None:
        self.chunks: list[torch.Tensor] = []
        remaining = size_bytes
        chunk_bytes = CHUNK_BYTES
        while remaining > 0:
            n = min(remaining, chunk_bytes)
            try:
                self.chunks.append(torch.empty(n, dtype=torch.uint8, device=device))
            except (torch.OutOfMemoryError, RuntimeError, MemoryError):
                if chunk_bytes <= span_bytes:
                    break
                chunk_bytes //= 2
                continue
            remaining -= n
        self.size_bytes = self.tested_bytes = sum(c.numel() for c in self.chunks)
        self.spans = make_spans([c.numel() for c in self.chunks], span_bytes)

    def write(self, span: Span, values: torch.Tensor | int) -> None:
        view = self.chunks[span.chunk][span.start : span.stop]
        if isinstance(values, int):
            view.fill_(values)
        else:
            view.copy_(values)

    def read(self, span: Span) -> torch.Tensor:
        return self.chunks[span.chunk][span.start : span.stop]

    def release(self) -> None:
        self.chunks.clear()
