"""The samples a forward pass computes, published for layers that must depend on them.

The compute loop wraps each micro-batch in `sample_keys(...)`: the global
stream positions of its rows (unique across the run: step s covers
[s*B, (s+1)*B)). A keyed dropout draws each row's mask from its position, so
the mask is the same whichever replica computes the sample and however the
batch is split; a retried step draws the same masks again.

Outside a compute loop (a user calling the model directly) no keys are
published and the layers behave as PyTorch's own.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch


@dataclass
class SampleKeys:
    seed: int
    positions: torch.Tensor  # int64, one per row of the micro-batch
    calls: dict[int, int] = field(default_factory=dict)  # layer id -> calls this forward

    def next_call(self, layer_id: int) -> int:
        """How many times this layer already ran in this micro-batch (weight-tied reuse)."""
        count = self.calls.get(layer_id, 0)
        self.calls[layer_id] = count + 1
        return count


_current = threading.local()


def current() -> SampleKeys | None:
    keys: SampleKeys | None = getattr(_current, "keys", None)
    return keys


def publish(keys: SampleKeys | None) -> None:
    """Make `keys` this thread's (None: none); a recompute's restore (exact/recompute.py)."""
    _current.keys = keys


@contextmanager
def published(keys: SampleKeys) -> Iterator[SampleKeys]:
    """Publish keys made elsewhere in this thread (a user's own loop, runtime/own_loop.py)."""
    previous = current()
    _current.keys = keys
    try:
        yield keys
    finally:
        _current.keys = previous


@contextmanager
def sample_keys(seed: int, start: int, count: int, device: torch.device) -> Iterator[SampleKeys]:
    keys = SampleKeys(seed, torch.arange(start, start + count, dtype=torch.int64, device=device))
    previous = current()
    _current.keys = keys
    try:
        yield keys
    finally:
        _current.keys = previous
